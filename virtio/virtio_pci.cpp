#include "virtio/virtio_pci.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "vmm/error.hpp"
#include "vmm/kvm.hpp"
#include "vmm/seccomp.hpp"
#include "vmm/thread_guard.hpp"

namespace minivmm {

namespace {
constexpr uint8_t kVendorCap = 0x09;
// Configuration structure types (4.1.4).
constexpr uint8_t kTypeCommon = 1, kTypeNotify = 2, kTypeIsr = 3, kTypeDevice = 4, kTypePciCfg = 5;
constexpr uint32_t kBar0Size = 0x4000, kBar1Size = 0x1000, kCommonLen = 0x38;

std::vector<uint8_t> vendor_cap(uint8_t type, uint8_t bar, uint32_t off, uint32_t len, size_t extra) {
    std::vector<uint8_t> b(14 + extra);
    b[0] = static_cast<uint8_t>(16 + extra);  // cap_len counts the ID and next bytes too
    b[1] = type;
    b[2] = bar;
    le_store(&b[6], 4, off);
    le_store(&b[10], 4, len);
    return b;
}
}  // namespace

VirtioPci::VirtioPci(std::unique_ptr<VirtioDevice> dev, Msix::Deliver deliver, const KvmHooks* kvm)
    : PciDevice(0x1af4, static_cast<uint16_t>(0x1040 + dev->device_id()), dev->pci_class(),
                1),  // revision 1: a modern-only device
      dev_(std::move(dev)),
      msix_(static_cast<uint16_t>(dev_->num_queues() + 1), std::move(deliver)),
      queues_(dev_->num_queues()),
      vectors_(new std::atomic<uint16_t>[dev_->num_queues()]) {
    le_store(&cfg_[0x2c], 2, 0x1af4);  // subsystem vendor
    le_store(&cfg_[0x2e], 2, 0x1100);  // subsystem ID: >= 0x40 marks a modern device
    add_bar(0, kBar0Size);
    add_bar(1, kBar1Size);
    add_capability(kVendorCap, vendor_cap(kTypeCommon, 0, kCommon, kCommonLen, 0));
    auto notify = vendor_cap(kTypeNotify, 0, kNotify, kNotifyMultiplier * dev_->num_queues(), 4);
    le_store(&notify[14], 4, kNotifyMultiplier);
    add_capability(kVendorCap, notify);
    add_capability(kVendorCap, vendor_cap(kTypeIsr, 0, kIsr, 1, 0));
    add_capability(kVendorCap, vendor_cap(kTypeDevice, 0, kDeviceCfg, 0x100, 0));
    // The spec requires this window into the BARs through config space (for
    // firmware); Linux does not use it, but it is served below.
    pci_cfg_cap_ = add_capability(kVendorCap, vendor_cap(kTypePciCfg, 0, 0, 0, 4));
    msix_cap_ = add_capability(Msix::kCapId, msix_.capability(1, kMsixTable, kMsixPba));
    for (uint16_t i = 0; i < dev_->num_queues(); i++) vectors_[i] = Msix::kNoVector;
    fds_.resize(dev_->num_queues());
    if (kvm) {
        kvm_ = std::make_unique<KvmHooks>(*kvm);
        watch_fd_ = Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!watch_fd_) throw internal_error("eventfd");
        // irqfds follow the guest's MSI-X table: a masked vector's irqfd is
        // detached, and the watcher turns its calls into pending bits.
        msix_.set_observer([this](uint16_t v) {
            for (uint16_t q = 0; q < fds_.size(); q++)
                if (vectors_[q] == v) refresh_irqfd(q);
        });
        watcher_ = Thread([this] {
            guarded("MSI-X watcher", [this] {
                enter_thread(ThreadKind::MsixWatcher, "MSI-X watcher");
                watch();
            });
        });
    }
    reset_locked();
}

// Nothing here throws: a destructor that did would end the process
// (std::terminate) on its way out, whatever the device's state.
VirtioPci::~VirtioPci() {
    try {
        dev_->reset();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "minivmm: virtio device %u: reset at exit: %s\n", dev_->device_id(), e.what());
    }
    teardown_fds();
    if (watcher_.joinable()) {
        quit_ = true;
        poke_watcher();
        watcher_.join();
    }
}

namespace {
// A failure (the fd limit) is told and answered with no fd: the eventfd
// getters run on vCPU threads too, and their callers take -1 as "this
// transport has none" (the device is then marked broken).
Fd new_eventfd(unsigned device, uint16_t q) {
    Fd fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd)
        std::fprintf(stderr, "minivmm: virtio device %u: queue %u: eventfd: %s\n", device, q, std::strerror(errno));
    return fd;
}
void drain(int fd) {
    uint64_t v;
    [[maybe_unused]] ssize_t n = ::read(fd, &v, sizeof v);
}
}  // namespace

void VirtioPci::poke_watcher() {
    uint64_t one = 1;
    if (watch_fd_) [[maybe_unused]] ssize_t n = ::write(watch_fd_.get(), &one, sizeof one);
}

int VirtioPci::kick_eventfd(uint16_t q) {
    if (!kvm_ || q >= fds_.size()) return -1;
    std::lock_guard g(irq_lock_);
    QueueFds& f = fds_[q];
    if (!f.kick) {
        f.kick = new_eventfd(dev_->device_id(), q);
        if (!f.kick) return -1;
        arm_kick(q);
    }
    return f.kick.get();
}

// The address is the guest's choice, so KVM may refuse it: BAR 0 moved over
// another device's (the guest's own mess: that device takes the kicks
// there), or KVM's I/O bus full. Otherwise a refused kick still works, only
// slower: it exits, bar_write hands it to the device, and a vhost device
// forwards it to the kick fd. So a refusal is counted and told once, never
// thrown into the vCPU thread that moved the BAR or started the device.
void VirtioPci::arm_kick(uint16_t q) {
    QueueFds& f = fds_[q];
    if (!notify_base_) return;
    // The driver writes the 16-bit queue index at the queue's notify address.
    uint64_t at = notify_base_ + uint64_t(kNotifyMultiplier) * q;
    try {
        kvm_->vm.ioeventfd(at, 2, f.kick.get(), true);
        f.kick_addr = at;
    } catch (const std::exception& e) {
        if (kick_failures_++ == 0)
            std::fprintf(stderr, "minivmm: virtio device %u: queue %u's kicks at 0x%llx exit to minivmm: %s "
                         "(further such failures are only counted)\n", dev_->device_id(), q,
                         static_cast<unsigned long long>(at), e.what());
    }
}

void VirtioPci::disarm_kick(uint16_t q) {
    QueueFds& f = fds_[q];
    if (!f.kick_addr) return;
    try {
        kvm_->vm.ioeventfd(f.kick_addr, 2, f.kick.get(), false);
    } catch (const std::exception& e) {
        // KVM has no such entry: a bookkeeping bug, with nothing to undo.
        std::fprintf(stderr, "minivmm: virtio device %u: queue %u's kick ioeventfd: %s\n", dev_->device_id(), q,
                     e.what());
    }
    f.kick_addr = 0;
}

// Kick ioeventfds follow what PciBus decodes, so a kick reaches the device
// the same way with or without them. Linux sizes a BAR with memory decoding
// off: they go when decoding does and come back at the restored address
// when it returns. A guest sizing with decoding on leaves the size mask,
// outside the window, in BAR 0 meanwhile: they go too, as kicks there would
// not decode. Writes that change nothing (a BAR rewritten with its value,
// other command bits) make no KVM calls.
void VirtioPci::decoding_changed() {
    if (!kvm_) return;
    uint64_t base = decoded_address(0);
    if (base) base += kNotify;
    std::lock_guard g(irq_lock_);
    if (base == notify_base_) return;
    // All out before any in, so that old and new places never collide.
    for (uint16_t q = 0; q < fds_.size(); q++) disarm_kick(q);
    notify_base_ = base;
    for (uint16_t q = 0; q < fds_.size(); q++)
        if (fds_[q].kick) arm_kick(q);
}

int VirtioPci::call_eventfd(uint16_t q) {
    if (!kvm_ || q >= fds_.size()) return -1;
    {
        std::lock_guard g(irq_lock_);
        QueueFds& f = fds_[q];
        if (f.call) return f.call.get();
        f.call = new_eventfd(dev_->device_id(), q);
        if (!f.call) return -1;
        try {
            f.gsi = kvm_->router.add_msi({0, 0});
            f.routed = true;
        } catch (const std::exception& e) {
            irqfd_refused(q, e);  // unrouted: the watcher raises its calls
        }
    }
    refresh_irqfd(q);
    return fds_[q].call.get();
}

int VirtioPci::error_eventfd(uint16_t q) {
    if (!kvm_ || q >= fds_.size()) return -1;
    std::lock_guard g(irq_lock_);
    if (!fds_[q].err) fds_[q].err = new_eventfd(dev_->device_id(), q);
    poke_watcher();
    return fds_[q].err ? fds_[q].err.get() : -1;
}

// Like a refused kick, a refused irqfd or route costs speed, not interrupts:
// a call fd with no irqfd attached is the watcher's, which raises the vector
// itself. This runs on the vCPU that wrote the MSI-X table or a queue's
// vector, so it is counted and told once, never thrown.
void VirtioPci::irqfd_refused(uint16_t q, const std::exception& e) {
    if (irqfd_failures_++ == 0)
        std::fprintf(stderr, "minivmm: virtio device %u: queue %u's interrupts go through minivmm: %s "
                     "(further such failures are only counted)\n", dev_->device_id(), q, e.what());
}

void VirtioPci::refresh_irqfd(uint16_t q) {
    std::lock_guard g(irq_lock_);
    QueueFds& f = fds_[q];
    if (!f.call) return;
    MsiMessage m{};
    bool live = f.routed && msix_.live(vectors_[q], m);
    if (live) {
        try {
            kvm_->router.update_msi(f.gsi, m);
            if (!f.attached) kvm_->vm.irqfd(f.call.get(), f.gsi, true);
            f.attached = true;
        } catch (const std::exception& e) {
            irqfd_refused(q, e);
            live = false;  // an attached irqfd would go on sending the route's old message
        }
    }
    if (!live && f.attached) detach_irqfd(q);
    poke_watcher();  // the set of fds it watches changed
}

// Whatever KVM answers, the call fd is the watcher's from now on: at worst
// an interrupt comes twice, never not at all.
void VirtioPci::detach_irqfd(uint16_t q) {
    QueueFds& f = fds_[q];
    try {
        kvm_->vm.irqfd(f.call.get(), f.gsi, false);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "minivmm: virtio device %u: queue %u's irqfd: %s\n", dev_->device_id(), q, e.what());
    }
    f.attached = false;
}

// Runs at reset (a vCPU thread) and in the destructor: failures are told,
// never thrown, and the fds are closed either way.
void VirtioPci::teardown_fds() {
    std::lock_guard g(irq_lock_);
    for (uint16_t q = 0; q < fds_.size(); q++) {
        QueueFds& f = fds_[q];
        disarm_kick(q);
        if (f.attached) detach_irqfd(q);
        if (f.routed) {
            try {
                kvm_->router.remove(f.gsi);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "minivmm: virtio device %u: queue %u's MSI route: %s\n", dev_->device_id(),
                             q, e.what());
            }
        }
        f = QueueFds{};
    }
    generation_++;
    poke_watcher();
}

void VirtioPci::watch() {
    enum Kind { kErr, kCall };
    while (!quit_) {
        std::vector<pollfd> pfds{{watch_fd_.get(), POLLIN, 0}};
        std::vector<std::pair<Kind, uint16_t>> who{{kErr, 0}};
        uint64_t gen;
        {
            std::lock_guard g(irq_lock_);
            gen = generation_;
            for (uint16_t q = 0; q < fds_.size(); q++) {
                if (fds_[q].err) pfds.push_back({fds_[q].err.get(), POLLIN, 0}), who.push_back({kErr, q});
                if (fds_[q].call && !fds_[q].attached)
                    pfds.push_back({fds_[q].call.get(), POLLIN, 0}), who.push_back({kCall, q});
            }
        }
        if (poll(pfds.data(), pfds.size(), -1) < 0) continue;
        if (pfds[0].revents) drain(watch_fd_.get());
        std::lock_guard g(irq_lock_);
        if (gen != generation_) continue;  // fds were closed meanwhile: numbers may be reused
        for (size_t i = 1; i < pfds.size(); i++) {
            if (!(pfds[i].revents & POLLIN)) continue;
            drain(pfds[i].fd);
            if (who[i].first == kErr)
                mark_broken("vhost backend reported a bad ring on queue " + std::to_string(who[i].second));
            else
                msix_.raise(vectors_[who[i].second]);  // masked: becomes pending
        }
    }
}

uint8_t VirtioPci::status() const { return status_; }

bool VirtioPci::capability_writable(uint32_t reg) const {
    // MSI-X Message Control; the PCI-cfg window's BAR/offset/length and data.
    return reg == msix_cap_ || (reg >= pci_cfg_cap_ + 4u && reg < pci_cfg_cap_ + 20u);
}

void VirtioPci::capability_written(uint32_t reg) {
    if (reg == msix_cap_) {
        uint32_t v = static_cast<uint32_t>(le_load(&cfg_[reg], 4));
        msix_.control_written(static_cast<uint16_t>(v >> 16));
        // Keep the read-only parts (ID, next, table size) as they were; next
        // is 0 because MSI-X is the last capability in the list.
        le_store(&cfg_[reg], 4, Msix::kCapId | uint32_t(msix_.control()) << 16);
        return;
    }
    if (reg != pci_cfg_cap_ + 16u) {
        cfg_[pci_cfg_cap_ + 2] = 20, cfg_[pci_cfg_cap_ + 3] = kTypePciCfg;  // keep cap_len/type read-only
        return;
    }
    // A data write through the window: BAR, offset and length say where.
    uint8_t bar = cfg_[pci_cfg_cap_ + 4];
    uint32_t off = static_cast<uint32_t>(le_load(&cfg_[pci_cfg_cap_ + 8], 4));
    uint32_t len = static_cast<uint32_t>(le_load(&cfg_[pci_cfg_cap_ + 12], 4));
    if (bar <= 1 && (len == 1 || len == 2 || len == 4)) bar_write(bar, off, &cfg_[reg], len);
}

void VirtioPci::capability_reading(uint32_t reg) {
    if (reg != pci_cfg_cap_ + 16u) return;
    uint8_t bar = cfg_[pci_cfg_cap_ + 4];
    uint32_t off = static_cast<uint32_t>(le_load(&cfg_[pci_cfg_cap_ + 8], 4));
    uint32_t len = static_cast<uint32_t>(le_load(&cfg_[pci_cfg_cap_ + 12], 4));
    uint8_t v[4] = {};
    if (bar <= 1 && (len == 1 || len == 2 || len == 4)) bar_read(bar, off, v, len);
    std::memcpy(&cfg_[reg], v, 4);
}

void VirtioPci::reset_locked() {
    dev_->reset();
    quiesced_ = false;
    if (kvm_) teardown_fds();
    status_ = 0;
    isr_ = 0;
    device_feature_select_ = driver_feature_select_ = 0;
    driver_features_ = 0;
    queue_select_ = 0;
    config_vector_ = Msix::kNoVector;
    for (uint16_t i = 0; i < queues_.size(); i++) {
        queues_[i] = QueueConfig{};
        queues_[i].size = dev_->max_queue_size();
        vectors_[i] = Msix::kNoVector;
    }
}

void VirtioPci::set_status(uint8_t s) {
    if (s == 0) {
        reset_locked();
        return;
    }
    // Other threads set DEVICE_NEEDS_RESET (mark_broken) without lock_, so
    // the new status is swapped in only over the value it was computed
    // from: a plain store could drop a bit set in between, leaving the
    // device dead without the driver ever seeing why.
    uint8_t old = status_.load(), next;
    do {
        next = merge_status(s, old);
    } while (!status_.compare_exchange_weak(old, next));
    if ((next & virtio::kDriverOk) && !(old & virtio::kDriverOk))
        dev_->activate(driver_features_, queues_, *this);
}

uint8_t VirtioPci::merge_status(uint8_t s, uint8_t old) const {
    // Only a reset clears bits (3.1.1); a driver trying otherwise would make
    // the device start twice on the same rings. The bits it had stay set,
    // DEVICE_NEEDS_RESET among them.
    s |= old;
    if ((s & virtio::kFeaturesOk) && !(old & virtio::kFeaturesOk)) {
        // Only a subset of what was offered, and always the modern interface;
        // otherwise FEATURES_OK does not stick and the driver gives up (3.1.1).
        bool ok = !(driver_features_ & ~dev_->features()) && (driver_features_ & virtio::kFVersion1);
        if (!ok) s &= ~virtio::kFeaturesOk;
    }
    if ((s & virtio::kDriverOk) && !(s & virtio::kFeaturesOk)) s &= ~virtio::kDriverOk;  // too early: ignored
    return s;
}

void VirtioPci::common_read(uint64_t off, uint8_t* data, uint32_t size) {
    uint8_t r[kCommonLen] = {};
    {
        std::lock_guard g(lock_);
        uint64_t f = dev_->features();
        le_store(&r[0], 4, device_feature_select_);
        le_store(&r[4], 4, device_feature_select_ < 2 ? f >> (32 * device_feature_select_) : 0);
        le_store(&r[8], 4, driver_feature_select_);
        le_store(&r[12], 4, driver_feature_select_ < 2 ? driver_features_ >> (32 * driver_feature_select_) : 0);
        le_store(&r[16], 2, config_vector_);
        le_store(&r[18], 2, queues_.size());
        r[20] = status_;
        r[21] = 0;  // config_generation: the device config never changes under the driver
        le_store(&r[22], 2, queue_select_);
        if (queue_select_ < queues_.size()) {
            const QueueConfig& q = queues_[queue_select_];
            le_store(&r[24], 2, q.size);
            le_store(&r[26], 2, vectors_[queue_select_]);
            le_store(&r[28], 2, q.enabled);
            le_store(&r[30], 2, queue_select_);  // notify offset, in multiplier units
            le_store(&r[32], 8, q.desc);
            le_store(&r[40], 8, q.driver);
            le_store(&r[48], 8, q.device);
        }
    }
    if (off + size <= kCommonLen) std::memcpy(data, r + off, size);
}

void VirtioPci::common_write(uint64_t off, uint64_t v, uint32_t size) {
    std::lock_guard g(lock_);
    auto vector_ok = [&](uint64_t vec) { return static_cast<uint16_t>(vec < msix_.size() ? vec : Msix::kNoVector); };
    switch (off) {
        case 0: device_feature_select_ = static_cast<uint32_t>(v); return;
        case 8: driver_feature_select_ = static_cast<uint32_t>(v); return;
        case 12:
            if (driver_feature_select_ < 2 && !(status_ & virtio::kFeaturesOk)) {
                unsigned shift = 32 * driver_feature_select_;
                driver_features_ = (driver_features_ & ~(0xffff'ffffull << shift)) | (v & 0xffff'ffffull) << shift;
            }
            return;
        // An out-of-range vector reads back NO_VECTOR, telling the driver it
        // could not be assigned (4.1.5.1.2).
        case 16: config_vector_ = vector_ok(v); return;
        case 20: set_status(static_cast<uint8_t>(v)); return;
        case 22: queue_select_ = static_cast<uint16_t>(v); return;
    }
    if (queue_select_ >= queues_.size()) return;
    QueueConfig& q = queues_[queue_select_];
    if (off == 26) {
        vectors_[queue_select_] = q.msix_vector = vector_ok(v);
        if (kvm_) refresh_irqfd(queue_select_);
        return;
    }
    if (status_ & virtio::kDriverOk) return;  // the rest is fixed while the device runs
    auto set64 = [&](uint64_t& field, uint64_t base) {
        if (size == 8) field = v;
        else if (off == base) field = (field & ~0xffff'ffffull) | (v & 0xffff'ffffull);
        else field = (field & 0xffff'ffffull) | v << 32;
    };
    switch (off) {
        case 24: q.size = static_cast<uint16_t>(v); break;  // checked at activation
        case 28: if (v == 1) q.enabled = true; break;
        case 32: case 36: set64(q.desc, 32); break;
        case 40: case 44: set64(q.driver, 40); break;
        case 48: case 52: set64(q.device, 48); break;
    }
}

void VirtioPci::bar_read(int bar, uint64_t off, uint8_t* data, uint32_t size) {
    std::memset(data, 0, size);
    if (bar == 1) {
        if (off >= kMsixPba) msix_.pba_read(off - kMsixPba, data, size);
        else msix_.table_read(off - kMsixTable, data, size);
    } else if (off >= kDeviceCfg && off < kNotify) {
        dev_->config_read(off - kDeviceCfg, data, size);
    } else if (off >= kIsr && off < kDeviceCfg) {
        if (off == kIsr) data[0] = isr_.exchange(0);  // reading clears it (4.1.4.5)
    } else if (off < kCommonLen) {
        common_read(off, data, size);
    }
}

void VirtioPci::bar_write(int bar, uint64_t off, const uint8_t* data, uint32_t size) {
    if (bar == 1) {
        if (off < kMsixPba) msix_.table_write(off - kMsixTable, data, size);
        return;  // the PBA is read-only
    }
    if (off >= kNotify) {
        uint64_t q = (off - kNotify) / kNotifyMultiplier;
        // Kicks before DRIVER_OK, after a reset, or on a broken device go nowhere.
        uint8_t s = status_;
        if (q < queues_.size() && (s & virtio::kDriverOk) && !(s & virtio::kNeedsReset))
            dev_->notify(static_cast<uint16_t>(q));
    } else if (off >= kDeviceCfg) {
        dev_->config_write(off - kDeviceCfg, data, size);
    } else if (off < kCommonLen && (size == 1 || size == 2 || size == 4 || size == 8)) {
        common_write(off, le_load(data, size), size);
    }
}

bool VirtioPci::signal_queue(uint16_t q) {
    isr_ |= 1;
    return q < queues_.size() && msix_.raise(vectors_[q]);
}

void VirtioPci::signal_config() {
    isr_ |= 2;
    msix_.raise(config_vector_);
}

void VirtioPci::mark_broken(const std::string& why) {
    if (status_.fetch_or(virtio::kNeedsReset) & virtio::kNeedsReset) return;  // once per reset
    std::fprintf(stderr, "minivmm: virtio device %u needs reset: %s\n", dev_->device_id(), why.c_str());
    signal_config();
}

}  // namespace minivmm
