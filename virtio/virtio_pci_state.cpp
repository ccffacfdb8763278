// The virtio-pci function's saved state, and stopping its device in place
// for it. A loaded state is checked as the registers check the driver: what
// the driver could not have written is refused, never used.
#include <unistd.h>

#include "virtio/virtio_pci.hpp"
#include "virtio/virtqueue.hpp"
#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"

namespace minivmm {

void VirtioPci::quiesce() {
    std::lock_guard g(lock_);
    if (quiesced_) return;
    dev_->quiesce();
    quiesced_ = true;
    if (kvm_) collect_calls();
}

// A backend's call on a queue whose irqfd is detached (its vector masked)
// reaches the guest through the watcher, as a pending bit: one it has not
// handled yet is raised here, so the saved MSI-X state holds it.
void VirtioPci::collect_calls() {
    std::lock_guard g(irq_lock_);
    for (uint16_t q = 0; q < fds_.size(); q++) {
        QueueFds& f = fds_[q];
        uint64_t n = 0;
        if (f.call && !f.attached && ::read(f.call.get(), &n, sizeof n) == sizeof n && n) msix_.raise(vectors_[q]);
    }
}

void VirtioPci::resume() {
    std::lock_guard g(lock_);
    if (!quiesced_) return;
    quiesced_ = false;
    dev_->resume();
}

bool VirtioPci::quiesced() const {
    std::lock_guard g(lock_);
    return quiesced_;
}

bool VirtioPci::capability_loadable(uint32_t reg, uint32_t v) const {
    // Message Control's enable and function mask bits are the guest's; the
    // rest (ID, next, table size) is not. The PCI-cfg window's registers
    // take anything.
    if (reg == msix_cap_) return (v & ~(3u << 30)) == (le_load(&cfg_[reg], 4) & ~(3u << 30));
    return true;
}

namespace {
constexpr uint8_t kStatusBits = virtio::kAcknowledge | virtio::kDriver | virtio::kDriverOk | virtio::kFeaturesOk |
                                virtio::kNeedsReset | virtio::kFailed;
}

void VirtioPci::save(state::Writer& w) const {
    std::lock_guard g(lock_);
    if ((status_ & virtio::kDriverOk) && !quiesced_)
        throw InternalError(dev_->label() + ": state saved while the device runs (quiesce it first)");
    save_config(w);
    msix_.save(w);
    w.u8(status_);
    w.u8(isr_);
    w.u32(device_feature_select_);
    w.u32(driver_feature_select_);
    w.u64(driver_features_);
    w.u16(queue_select_);
    w.u16(config_vector_);
    w.u8(0);  // config_generation: the device config never changes under the driver
    w.u16(static_cast<uint16_t>(queues_.size()));
    for (uint16_t i = 0; i < queues_.size(); i++) {
        const QueueConfig& q = queues_[i];
        w.u16(q.size);
        w.u64(q.desc);
        w.u64(q.driver);
        w.u64(q.device);
        w.boolean(q.enabled);
        w.u16(vectors_[i]);
    }
    dev_->save(w);
}

void VirtioPci::load(state::Reader& r, const MemView& ram) {
    std::lock_guard g(lock_);
    const std::string who = dev_->label();
    if (status_ || quiesced_) throw InternalError(who + ": state loaded into a device already in use");
    load_config(r, who);
    msix_.load(r, who);
    // Message Control in config space is a view of the table's state.
    if (le_load(&cfg_[msix_cap_], 4) != (Msix::kCapId | uint32_t(msix_.control()) << 16))
        r.fail(who + " MSI-X: Message Control and the table's state disagree");

    uint8_t status = r.u8(), isr = r.u8();
    uint32_t dfs = r.u32(), gfs = r.u32();
    uint64_t features = r.u64();
    uint16_t qsel = r.u16(), config_vector = r.u16();
    uint8_t generation = r.u8();
    uint16_t n = r.u16();
    auto vector_ok = [&](uint16_t v) { return v < msix_.size() || v == Msix::kNoVector; };
    if (status & ~kStatusBits) r.fail(who + " device status: undefined bits set");
    if (features & ~dev_->features()) r.fail(who + " driver features: bits this device does not offer");
    driver_features_ = features;  // merge_status() judges FEATURES_OK by them
    // What writing the status over a fresh device leaves: FEATURES_OK only
    // for a feature set the device takes, DRIVER_OK only after it.
    if (merge_status(status, 0) != status) r.fail(who + " device status: not a combination the driver can set");
    if (isr & ~3u) r.fail(who + " ISR: bits other than queue and config interrupt");
    if (!vector_ok(config_vector)) r.fail(who + " config vector: beyond the MSI-X table");
    if (generation != 0) r.fail(who + " config generation: this device's never changes");
    if (n != queues_.size())
        r.fail(who + ": " + std::to_string(n) + " queues saved, this device has " + std::to_string(queues_.size()));
    std::vector<QueueConfig> qs(n);
    for (uint16_t i = 0; i < n; i++) {
        QueueConfig& q = qs[i];
        q.size = r.u16();
        q.desc = r.u64();
        q.driver = r.u64();
        q.device = r.u64();
        q.enabled = r.boolean();
        q.msix_vector = r.u16();
        std::string at = who + " queue " + std::to_string(i) + ": ";
        if (!q.size || (q.size & (q.size - 1)) || q.size > dev_->max_queue_size())
            r.fail(at + "size " + std::to_string(q.size) + " is not a power of two up to " +
                   std::to_string(dev_->max_queue_size()));
        if (!vector_ok(q.msix_vector)) r.fail(at + "MSI-X vector beyond the table");
        // An enabled queue's rings are the device's to use: whole, aligned, in RAM.
        if (q.enabled && !SplitQueue(ram, q.size, q.desc, q.driver, q.device).valid())
            r.fail(at + "rings outside guest RAM or misaligned");
        if (q.enabled && !(status & virtio::kFeaturesOk)) r.fail(at + "enabled before FEATURES_OK");
    }
    status_ = status;
    isr_ = isr;
    device_feature_select_ = dfs;
    driver_feature_select_ = gfs;
    queue_select_ = qsel;
    config_vector_ = config_vector;
    queues_ = qs;
    for (uint16_t i = 0; i < n; i++) vectors_[i] = qs[i].msix_vector;
    bool driver_ok = status & virtio::kDriverOk;
    dev_->load(r, {features, queues_, driver_ok, driver_ok && (status & virtio::kNeedsReset)}, *this);
}

// A kick or an interrupt of the last moments before the save may not be in
// the state: the guest's kick taken by the old process's ioeventfd after its
// rings stopped, or an interrupt its backend raised (or that a starting
// datapath here raised) where no driver would see it. With EVENT_IDX each
// side then waits for the other for ever: the driver kicks only past the
// avail event the device last set, the device interrupts only past the used
// event the driver last set. So every served queue is kicked and its vector
// raised once: the device reads its available ring again, the driver its
// used ring, and both set their events afresh. The spec lets either happen
// at any time (a kick with nothing new, a spurious interrupt).
void VirtioPci::restart_after_load() {
    uint8_t s = status_;
    if (!(s & virtio::kDriverOk) || (s & virtio::kNeedsReset)) return;
    for (uint16_t q = 0; q < queues_.size(); q++) {
        if (!queues_[q].enabled) continue;
        dev_->notify(q);
        signal_queue(q);
    }
}

}  // namespace minivmm
