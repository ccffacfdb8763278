// The modern virtio-over-PCI transport (virtio 1.x, 4.1): a PCI function
// whose vendor capabilities point at the common, notify, ISR and device
// configuration structures in BAR 0, with MSI-X in BAR 1.
#pragma once
#include <atomic>
#include <exception>
#include <memory>
#include <mutex>

#include "virtio/device.hpp"
#include "vmm/kvm.hpp"
#include "vmm/kvm_bypass.hpp"
#include "vmm/msix.hpp"
#include "vmm/pci.hpp"
#include "vmm/thread.hpp"

namespace minivmm {

class MemView;

class VirtioPci : public PciDevice, public VirtioTransport {
public:
    // With kvm, the transport can hand vhost backends KVM ioeventfds and
    // irqfds; without, every kick and interrupt goes through it. The real
    // Vm and GsiRouter in minivmm, fakes in unit tests.
    struct KvmHooks {
        KvmEventfds& vm;
        MsiRoutes& router;
    };
    // BAR 0 layout: one page per structure.
    static constexpr uint32_t kCommon = 0x0000, kIsr = 0x1000, kDeviceCfg = 0x2000, kNotify = 0x3000;
    static constexpr uint32_t kNotifyMultiplier = 4;
    static constexpr uint32_t kMsixTable = 0x0000, kMsixPba = 0x800;  // in BAR 1

    VirtioPci(std::unique_ptr<VirtioDevice> dev, Msix::Deliver deliver, const KvmHooks* kvm = nullptr);
    ~VirtioPci() override;

    void bar_read(int bar, uint64_t off, uint8_t* data, uint32_t size) override;
    void bar_write(int bar, uint64_t off, const uint8_t* data, uint32_t size) override;
    bool signal_queue(uint16_t queue) override;
    void mark_broken(const std::string& why) override;
    void signal_config() override;
    int kick_eventfd(uint16_t queue) override;
    int call_eventfd(uint16_t queue) override;
    int error_eventfd(uint16_t queue) override;

    VirtioDevice& device() { return *dev_; }
    uint8_t status() const;
    const Msix& msix() const { return msix_; }
    // Kick ioeventfds KVM refused (their kicks exit to minivmm instead).
    uint64_t kick_ioeventfd_failures() const { return kick_failures_; }
    // irqfds and MSI routes KVM refused (their interrupts go through the watcher).
    uint64_t irqfd_failures() const { return irqfd_failures_; }

    // Snapshots and migration (virtio_pci_state.cpp), with the vCPUs paused.
    // quiesce(): the device's datapaths stop where they are (nothing touches
    // guest memory or raises interrupts; an interrupt a backend raised
    // meanwhile is in the MSI-X pending bits). resume(): they carry on from
    // exactly there, as for a snapshot the VM outlives or a failed migration.
    void quiesce();
    void resume();
    bool quiesced() const;
    // The function's whole state: config space, MSI-X, the common
    // configuration, then the device's. Only while quiesced, or before the
    // driver set DRIVER_OK.
    void save(state::Writer& w) const;
    // Into a function fresh from construction (same device and queues),
    // after guest RAM (ram: where enabled queues' rings must lie). A device
    // the driver had started runs again at once, each queue at its saved
    // position; one not yet started stays configured but inactive. Throws
    // state::Error, naming the device and field, for a bad field.
    void load(state::Reader& r, const MemView& ram);
    // Once the whole machine has loaded, before its vCPUs run: each queue
    // the device serves is kicked and its vector raised, once.
    void restart_after_load();

protected:
    bool capability_writable(uint32_t reg) const override;
    bool capability_loadable(uint32_t reg, uint32_t v) const override;
    void capability_written(uint32_t reg) override;
    void capability_reading(uint32_t reg) override;
    void decoding_changed() override;

private:
    void common_read(uint64_t off, uint8_t* data, uint32_t size);
    void common_write(uint64_t off, uint64_t v, uint32_t size);
    void set_status(uint8_t s);
    uint8_t merge_status(uint8_t s, uint8_t old) const;  // what writing s over old leaves
    void reset_locked();

    // Per-queue eventfds for vhost. irq_lock_ guards them; it is taken
    // after PciBus's lock (config writes reach decoding_changed() and the
    // MSI-X observer under it) and before the MSI-X table's, never the
    // other way round.
    struct QueueFds {
        Fd kick, call, err;
        uint64_t kick_addr = 0;  // where KVM signals kick; 0: nowhere, kicks exit
        uint32_t gsi = 0;
        bool routed = false, attached = false;
    };
    void arm_kick(uint16_t q);     // ioeventfd at the queue's notify address, if decoded
    void disarm_kick(uint16_t q);
    void refresh_irqfd(uint16_t q);  // irqfd attached iff the vector is live and KVM takes it
    void detach_irqfd(uint16_t q);
    void irqfd_refused(uint16_t q, const std::exception& e);
    void teardown_fds();
    void collect_calls();  // quiesce(): calls the watcher has not raised yet
    void watch();                    // thread: errors, and calls while masked
    void poke_watcher();
    std::unique_ptr<KvmHooks> kvm_;
    std::mutex irq_lock_;
    std::vector<QueueFds> fds_;
    uint64_t notify_base_ = 0;  // the notify structure as PciBus decodes it; 0: not decoded
    std::atomic<uint64_t> kick_failures_{0}, irqfd_failures_{0};
    uint64_t generation_ = 0;  // bumped when fds close
    Fd watch_fd_;
    std::atomic<bool> quit_{false};
    Thread watcher_;

    std::unique_ptr<VirtioDevice> dev_;
    Msix msix_;
    // The common configuration, written by any vCPU. The datapath never takes
    // it: reset() waits for the datapath, which may be raising an interrupt
    // or marking the device broken meanwhile (those use the atomics below).
    mutable std::mutex lock_;
    std::atomic<uint8_t> status_{0}, isr_{0};
    uint32_t device_feature_select_ = 0, driver_feature_select_ = 0;
    uint64_t driver_features_ = 0;
    uint16_t queue_select_ = 0;
    std::atomic<uint16_t> config_vector_{Msix::kNoVector};
    std::vector<QueueConfig> queues_;
    std::unique_ptr<std::atomic<uint16_t>[]> vectors_;  // queues_[i].msix_vector, for the datapath
    bool quiesced_ = false;  // under lock_
    uint8_t msix_cap_ = 0, pci_cfg_cap_ = 0;
};

}  // namespace minivmm
