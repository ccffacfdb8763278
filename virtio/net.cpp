#include "virtio/net.hpp"

#include <linux/if_tun.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>

#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/io_bus.hpp"

namespace minivmm {

namespace {
// Frames moved per lock hold before the RX thread sends an interrupt and
// lets a reset in: bounds both interrupt latency and reset latency.
constexpr unsigned kRxBatch = 64;
// The transport features a vhost backend implements; the net-specific rest
// (offloads, MAC, status) is the tap's or the VMM's business.
constexpr uint64_t kVhostFeatures = virtio::kFVersion1 | virtio::kFEventIdx | virtio::kFIndirectDesc | net::kMrgRxbuf;
}  // namespace

VirtioNet::VirtioNet(const GuestMemory& mem, std::unique_ptr<Tap> tap, const Mac& mac,
                     std::unique_ptr<VhostBackend> vhost)
    : mem_(mem), tap_(std::move(tap)), mac_(mac), vhost_(std::move(vhost)) {
    // With VERSION_1 the header always has num_buffers: 12 bytes both ways.
    tap_->set_vnet_header_size(net::kHeaderLen);
    tap_->set_offload(0);
    wake_fd_ = Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_fd_) throw sys_error("eventfd");
    if (!vhost_) rx_thread_ = std::thread([this] { rx_loop(); });
}

VirtioNet::~VirtioNet() {
    reset();
    quit_ = true;
    wake();
    if (rx_thread_.joinable()) rx_thread_.join();
}

uint64_t VirtioNet::features() const {
    using namespace net;
    return virtio::kFVersion1 | virtio::kFIndirectDesc | virtio::kFEventIdx | kCsum | kGuestCsum | kMac |
           kGuestTso4 | kGuestTso6 | kGuestEcn | kHostTso4 | kHostTso6 | kHostEcn | kMrgRxbuf | kStatus;
}

void VirtioNet::config_read(uint64_t off, uint8_t* data, uint32_t size) {
    // mac[6], status (link up), max_virtqueue_pairs (one pair).
    uint8_t cfg[10] = {};
    std::memcpy(cfg, mac_.data(), 6);
    le_store(cfg + 6, 2, 1);
    le_store(cfg + 8, 2, 1);
    for (uint32_t i = 0; i < size; i++) data[i] = off + i < sizeof cfg ? cfg[off + i] : 0;
}

void VirtioNet::wake() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_.get(), &one, sizeof one);
}

void VirtioNet::activate(uint64_t features, const std::vector<QueueConfig>& queues, VirtioTransport& t) {
    std::lock_guard g(dp_);
    features_ = features;
    transport_ = &t;
    active_ = true;
    for (uint16_t i = 0; i < 2; i++) {
        const QueueConfig& q = queues[i];
        if (!q.enabled) continue;  // a queue the driver does not use stays off
        queues_[i].emplace(mem_, q.size, q.desc, q.driver, q.device);
        queues_[i]->set_event_idx(features & virtio::kFEventIdx);
        if (!queues_[i]->valid()) return broken("queue " + std::to_string(i) + ": bad size or ring address");
    }
    // The tap may now hand over frames with partial checksums or GSO, as the
    // guest agreed to take them.
    unsigned off = 0;
    if (features & net::kGuestCsum) {
        off |= TUN_F_CSUM;
        if (features & net::kGuestTso4) off |= TUN_F_TSO4;
        if (features & net::kGuestTso6) off |= TUN_F_TSO6;
        if (features & net::kGuestEcn) off |= TUN_F_TSO_ECN;
    }
    tap_->set_offload(off);
    if (vhost_) {
        try {
            activate_vhost(queues, t);
        } catch (const std::exception& e) {
            broken(std::string("vhost: ") + e.what());
        }
        return;
    }
    wake();
}

void VirtioNet::activate_vhost(const std::vector<QueueConfig>& queues, VirtioTransport& t) {
    uint64_t want = features_ & kVhostFeatures;
    if (want & ~vhost_->get_features()) return broken("the vhost backend lacks features the driver took");
    vhost_->set_features(want);
    std::vector<VhostRegion> regions;
    for (const MemRegion& r : mem_.regions()) regions.push_back({r.gpa, r.size, reinterpret_cast<uint64_t>(r.hva)});
    vhost_->set_mem_table(regions);
    for (unsigned i = 0; i < 2; i++) {
        if (!queues_[i]) continue;
        const QueueConfig& q = queues[i];
        int kick = t.kick_eventfd(static_cast<uint16_t>(i)), call = t.call_eventfd(static_cast<uint16_t>(i)),
            err = t.error_eventfd(static_cast<uint16_t>(i));
        if (kick < 0 || call < 0 || err < 0) return broken("the transport has no KVM eventfds for vhost");
        vhost_->set_vring_num(i, q.size);
        vhost_->set_vring_base(i, 0);
        // Ring placement was checked above (queues_[i]->valid()).
        auto hva = [&](uint64_t gpa) { return reinterpret_cast<uint64_t>(mem_.ptr(gpa, 1)); };
        vhost_->set_vring_addr(i, {hva(q.desc), hva(q.driver), hva(q.device), q.device, false});
        vhost_->set_vring_kick(i, kick);
        vhost_->set_vring_call(i, call);
        vhost_->set_vring_err(i, err);
        vhost_->set_backend(i, tap_->fd());
        vhost_running_[i] = true;
    }
}

void VirtioNet::reset() {
    std::lock_guard g(dp_);
    for (unsigned i = 0; i < 2; i++) {
        if (!vhost_running_[i]) continue;
        vhost_running_[i] = false;
        try {
            // Stop in the order the kernel wants: detach the tap, then read
            // where the ring stopped (which also stops it).
            vhost_->set_backend(i, -1);
            vhost_->get_vring_base(i);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "minivmm: stopping vhost: %s\n", e.what());
        }
    }
    active_ = false;
    transport_ = nullptr;
    features_ = 0;
    queues_[0].reset();
    queues_[1].reset();
    rx_.drop();  // a frame held for buffers that will never come
    tap_->set_offload(0);
}

void VirtioNet::broken(const std::string& why) {
    // Called with dp_ held. The device stops until the driver resets it.
    active_ = false;
    if (transport_) transport_->mark_broken(why);
}

void VirtioNet::interrupt(uint16_t q) {
    if (queues_[q]->need_interrupt() && transport_->signal_queue(q)) stats_[q].interrupts++;
}

void VirtioNet::notify(uint16_t q) {
    stats_[q].notifications++;
    if (vhost_) {
        // A kick that missed the ioeventfd (an unusual write width): forward it.
        std::lock_guard g(dp_);
        int fd = transport_ && vhost_running_[q % 2] ? transport_->kick_eventfd(q) : -1;
        uint64_t one = 1;
        if (fd >= 0) [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
        return;
    }
    if (q == net::kRxQueue) {
        wake();  // buffers for a frame that waits, or the first ones
        return;
    }
    std::lock_guard g(dp_);
    if (active_ && queues_[net::kTxQueue]) tx_all();
}

void VirtioNet::tx_all() {
    SplitQueue& q = *queues_[net::kTxQueue];
    std::string why;
    for (;;) {
        Work w = net_tx(q, mem_, tap_->fd(), stats_[net::kTxQueue], 256, why);
        if (w == Work::Broken) return broken("tx: " + why);
        if (w == Work::Idle && !q.enable_notify()) break;  // else more arrived while we looked
    }
    interrupt(net::kTxQueue);
}

void VirtioNet::rx_loop() {
    bool want_frames = false;  // poll the tap: active, with no frame waiting for buffers
    while (!quit_) {
        pollfd fds[2] = {{wake_fd_.get(), POLLIN, 0}, {tap_->fd(), short(want_frames ? POLLIN : 0), 0}};
        if (poll(fds, 2, -1) < 0) continue;
        uint64_t n;
        if (fds[0].revents) [[maybe_unused]] ssize_t r = ::read(wake_fd_.get(), &n, sizeof n);
        std::lock_guard g(dp_);
        want_frames = false;
        if (!active_ || !queues_[net::kRxQueue]) continue;
        SplitQueue& q = *queues_[net::kRxQueue];
        std::string why;
        Work w;
        do {
            w = rx_.run(q, mem_, tap_->fd(), features_ & net::kMrgRxbuf, stats_[net::kRxQueue], kRxBatch, why);
            // Out of buffers: ask for a kick, unless they arrived meanwhile.
        } while (w == Work::NeedBuffers && q.enable_notify());
        if (w == Work::Broken) {
            broken("rx: " + why);
            continue;
        }
        interrupt(net::kRxQueue);
        want_frames = w != Work::NeedBuffers;
        if (want_frames) q.disable_notify();
    }
}

void VirtioNet::print_stats(std::FILE* f, const std::string& label) const {
    std::fprintf(f, "minivmm: %s (tap %s, vhost=%s):\n", label.c_str(), tap_->name().c_str(), datapath());
    for (uint16_t q : {net::kRxQueue, net::kTxQueue}) {
        const char* name = q == net::kRxQueue ? "rx" : "tx";
        const QueueStats* st = vhost_ ? vhost_->stats(q) : &stats_[q];
        if (st)
            st->print(f, name);
        else
            std::fprintf(f, "  %s: served by the kernel's vhost-net (its counters are not visible here)\n", name);
    }
}

}  // namespace minivmm
