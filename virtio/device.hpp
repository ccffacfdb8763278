// What a virtio device model offers its transport, and what the transport
// offers back (interrupts, the broken-device signal).
#pragma once
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "virtio/queue_stats.hpp"
#include "vmm/dirty_bitmap.hpp"
#include "vmm/state_stream.hpp"

namespace minivmm {

namespace virtio {
// Device status bits (virtio 1.x, 2.1).
constexpr uint8_t kAcknowledge = 1, kDriver = 2, kDriverOk = 4, kFeaturesOk = 8, kNeedsReset = 64,
                  kFailed = 128;
// Transport-level feature bits (6).
constexpr uint64_t kFIndirectDesc = 1ull << 28, kFEventIdx = 1ull << 29, kFVersion1 = 1ull << 32;
}  // namespace virtio

// One virtqueue as the driver configured it.
struct QueueConfig {
    uint16_t size = 0;
    uint64_t desc = 0, driver = 0, device = 0;  // descriptor table, avail ring, used ring
    bool enabled = false;
    uint16_t msix_vector = 0xffff;
};

class VirtioTransport {
public:
    virtual ~VirtioTransport() = default;
    // Raises the queue's interrupt; returns whether a message went out
    // (false while masked: it is then pending).
    virtual bool signal_queue(uint16_t queue) = 0;
    // The driver broke the rules: set DEVICE_NEEDS_RESET and tell it.
    virtual void mark_broken(const std::string& why) = 0;
    // The device's configuration changed (a status bit the driver is to
    // act on): raises the configuration change interrupt.
    virtual void signal_config() = 0;

    // For vhost backends, eventfds that bypass minivmm's userspace, valid from
    // activate() until reset(); -1 where the transport cannot provide them.
    // kick: signalled by KVM when the guest writes the queue's notify address.
    virtual int kick_eventfd(uint16_t queue) { (void)queue; return -1; }
    // call: signalling it interrupts the guest on the queue's MSI-X vector
    // (through KVM; held pending while the vector is masked).
    virtual int call_eventfd(uint16_t queue) { (void)queue; return -1; }
    // error: signalling it marks the device DEVICE_NEEDS_RESET.
    virtual int error_eventfd(uint16_t queue) { (void)queue; return -1; }
};

// What VirtioPci::load() hands the device: the transport's registers as
// loaded, each already checked (rings of enabled queues inside RAM, sizes,
// vectors, features a subset of the offer, a status the driver could set).
struct LoadedTransport {
    uint64_t features;                       // the driver's (negotiated once FEATURES_OK)
    const std::vector<QueueConfig>& queues;
    bool driver_ok;  // the driver had started the device
    bool broken;     // and the device had stopped since (DEVICE_NEEDS_RESET)
};

class VirtioDevice {
public:
    virtual ~VirtioDevice() = default;
    virtual uint16_t device_id() const = 0;
    // PCI class code (base, sub, interface): how a guest without the virtio
    // driver still sees what the device is. Unclassified by default.
    virtual uint32_t pci_class() const { return 0xff0000; }
    // For the user: "net0" and a line on what the device is attached to.
    virtual std::string label() const { return "virtio" + std::to_string(device_id()); }
    virtual std::string describe() const { return {}; }
    // --stats, SIGUSR1 and the control socket: the device's counters, if it
    // keeps any, and their printed form.
    virtual std::optional<DeviceStats> stats() const { return std::nullopt; }
    void print_stats(std::FILE* f) const {
        if (auto s = stats()) print_device_stats(f, *s);
    }
    virtual uint64_t features() const = 0;  // offered, transport bits included
    virtual uint16_t num_queues() const = 0;
    virtual uint16_t max_queue_size() const { return 256; }
    virtual void config_read(uint64_t off, uint8_t* data, uint32_t size) = 0;
    virtual void config_write(uint64_t, const uint8_t*, uint32_t) {}
    // DRIVER_OK: run with these queues and features until reset().
    virtual void activate(uint64_t features, const std::vector<QueueConfig>& queues, VirtioTransport& t) = 0;
    // Returns only when the device no longer touches guest memory or raises
    // interrupts: the driver may free the rings right after.
    virtual void reset() = 0;
    // The driver kicked this queue (only between activate and reset).
    virtual void notify(uint16_t queue) = 0;

    // Snapshots and migration, with the vCPUs paused. quiesce(): every
    // datapath stops where it is; when it returns nothing of the device
    // touches guest memory or raises interrupts, and each queue's position
    // is known. resume(): they carry on from exactly there. Kicks that come
    // in between are kept for resume(). A device that does no work on
    // threads of its own (or runs nothing) needs neither.
    virtual void quiesce() {}
    virtual void resume() {}
    // The device's own state: its config space, what the driver set through
    // it, and each queue's position in virtio's terms (the next avail entry
    // it takes; the used index is in guest RAM), whatever serves the queue.
    // Only while quiesced, or not started.
    virtual void save(state::Writer& w) const {
        (void)w;
        throw state::Error(label() + ": this device's state cannot be saved");
    }
    // Into a device fresh from construction (same configuration), with guest
    // RAM already loaded. t.driver_ok && !t.broken: start as activate()
    // would, but with every queue at its saved position. Throws state::Error,
    // naming the field, for anything the guest could not have brought about.
    virtual void load(state::Reader& r, const LoadedTransport& t, VirtioTransport& transport) {
        (void)t, (void)transport;
        r.fail(label() + ": this device's state cannot be loaded");
    }
    // Live migration. Every write the device's datapaths make to guest
    // memory is marked in log until it is set empty again; KVM sees only
    // the vCPUs' writes. A device that writes guest memory must override it.
    virtual void set_dirty_log(const DirtyBitmap& log) { (void)log; }
    // Lets go of (false) or takes back (true) the device's host side, so
    // that a destination on the same host can take it over (a tap's queues).
    virtual void set_host_attached(bool attached) { (void)attached; }
    // The machine has just been restored or has arrived from a migration,
    // and the network does not know where it now is: a device whose driver
    // can announce it (virtio-net's GUEST_ANNOUNCE) asks the driver to.
    // Called once the whole machine has loaded, before the vCPUs run; a
    // device that is not running, or whose driver took no such feature,
    // does nothing.
    virtual void announce() {}
};

}  // namespace minivmm
