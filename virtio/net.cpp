#include "virtio/net.hpp"

#include <linux/if_tun.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <system_error>

#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/io_bus.hpp"
#include "vmm/seccomp.hpp"
#include "vmm/thread_guard.hpp"

namespace minivmm {

namespace {
// Frames moved per lock hold before the RX thread sends an interrupt and
// lets a reset in: bounds both interrupt latency and reset latency.
constexpr unsigned kRxBatch = 64, kTxBatch = 256;
// The transport features a vhost backend implements; the net-specific rest
// (offloads, MAC, status, control queue) is the tap's or the VMM's business.
constexpr uint64_t kVhostFeatures = virtio::kFVersion1 | virtio::kFEventIdx | virtio::kFIndirectDesc | net::kMrgRxbuf;
}  // namespace

VirtioNet::VirtioNet(const GuestMemory& mem, std::unique_ptr<NetPort> port, const Mac& mac,
                     std::unique_ptr<VhostBackend> vhost, const std::string& label)
    : mem_(mem), port_(std::move(port)), vhost_(std::move(vhost)), label_(label), mac_(mac) {
    if (port_->queues() < 1 || port_->queues() > kMaxPairs) throw UserError("--net: bad number of queue pairs");
    port_->set_offload(0);
    for (unsigned k = 0; k < port_->queues(); k++) {
        auto p = std::make_unique<Pair>();
        p->wake = Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!p->wake) throw internal_error("eventfd");
        pairs_.push_back(std::move(p));
    }
    ctrl_wake_ = Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!ctrl_wake_) throw internal_error("eventfd");
    std::string name = label_ + "-ctrl";
    try {
        ctrl_thread_ = std::thread([this, name] {
            guarded(name, [&] {
                enter_thread(ThreadKind::NetCtrl, name);  // also names it, for ps -L and top -H
                ctrl_loop();
            });
        });
        for (unsigned k = 0; !vhost_ && k < pairs_.size(); k++) {
            name = label_ + "-io" + std::to_string(k);
            pairs_[k]->thread = std::thread([this, k, name] {
                guarded(name, [&] {
                    enter_thread(ThreadKind::NetIo, name);
                    io_loop(k);
                });
            });
        }
    } catch (const std::system_error& e) {
        // The destructor will not run: stop the threads already started.
        stop_threads();
        throw InternalError("cannot start thread " + name + ": " + e.code().message());
    }
}

VirtioNet::~VirtioNet() {
    reset();
    stop_threads();
}

void VirtioNet::stop_threads() {
    quit_ = true;
    for (auto& p : pairs_) {
        wake(*p);
        if (p->thread.joinable()) p->thread.join();
    }
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(ctrl_wake_.get(), &one, sizeof one);
    if (ctrl_thread_.joinable()) ctrl_thread_.join();
}

uint64_t VirtioNet::features() const {
    using namespace net;
    uint64_t f = virtio::kFVersion1 | virtio::kFIndirectDesc | virtio::kFEventIdx | kMac | kMrgRxbuf | kStatus |
                 kCtrlVq | kCtrlRx | kCtrlMacAddr;
    // Checksum and segmentation offloads need a port whose frames carry the
    // virtio-net header: without it partial checksums and GSO frames could
    // not be described to the other side.
    if (port_->vnet_header())
        f |= kCsum | kGuestCsum | kGuestTso4 | kGuestTso6 | kGuestEcn | kHostTso4 | kHostTso6 | kHostEcn;
    return pairs_.size() > 1 ? f | kMq : f;
}

void VirtioNet::config_read(uint64_t off, uint8_t* data, uint32_t size) {
    // mac[6], status (link up), max_virtqueue_pairs.
    uint8_t cfg[10] = {};
    {
        auto g = lock_ctrl();
        std::memcpy(cfg, mac_.data(), 6);
    }
    le_store(cfg + 6, 2, 1);
    le_store(cfg + 8, 2, pairs_.size());
    for (uint32_t i = 0; i < size; i++) data[i] = off + i < sizeof cfg ? cfg[off + i] : 0;
}

void VirtioNet::wake(Pair& p) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(p.wake.get(), &one, sizeof one);
}

void VirtioNet::activate(uint64_t features, const std::vector<QueueConfig>& queues, VirtioTransport& t) {
    auto c = lock_ctrl();
    // Without MQ the device has one pair and the control queue follows it (5.1.2).
    bool mq = features & net::kMq;
    unsigned usable = mq ? pairs() : 1;
    uint16_t ctrl_index = static_cast<uint16_t>(mq ? 2 * pairs() : 2);
    {
        std::vector<std::unique_lock<std::mutex>> held;
        for (auto& p : pairs_) held.emplace_back(p->lock);
        features_ = features;
        transport_ = &t;
        config_ = queues;
        for (unsigned k = 0; k < usable; k++) {
            Pair& p = *pairs_[k];
            for (uint16_t i : {uint16_t(2 * k), uint16_t(2 * k + 1)}) {
                const QueueConfig& q = queues[i];
                if (!q.enabled) continue;  // a queue the driver does not use stays off
                auto& sq = i % 2 ? p.tx : p.rx;
                sq.emplace(mem_, q.size, q.desc, q.driver, q.device);
                sq->set_event_idx(features & virtio::kFEventIdx);
                if (!sq->valid()) return broken("queue " + std::to_string(i) + ": bad size or ring address");
            }
        }
        if ((features & net::kCtrlVq) && queues[ctrl_index].enabled) {
            const QueueConfig& q = queues[ctrl_index];
            ctrl_.emplace(mem_, q.size, q.desc, q.driver, q.device);
            ctrl_->set_event_idx(features & virtio::kFEventIdx);
            if (!ctrl_->valid()) return broken("control queue: bad size or ring address");
            ctrl_index_ = ctrl_index;
        }
        // The tap may now hand over frames with partial checksums or GSO, as
        // the guest agreed to take them.
        unsigned off = 0;
        if (features & net::kGuestCsum) {
            off |= TUN_F_CSUM;
            if (features & net::kGuestTso4) off |= TUN_F_TSO4;
            if (features & net::kGuestTso6) off |= TUN_F_TSO6;
            if (features & net::kGuestEcn) off |= TUN_F_TSO_ECN;
        }
        port_->set_offload(off);
        active_ = true;
    }
    if (vhost_) {
        try {
            uint64_t want = features_ & kVhostFeatures;
            // A port without headers: vhost adds and strips them itself.
            if (!port_->vnet_header()) want |= vhost::kFNetVirtioNetHdr;
            if (want & ~vhost_->get_features()) return broken("the vhost backend lacks features the driver took");
            vhost_->set_features(want);
            std::vector<VhostRegion> regions;
            for (const MemRegion& r : mem_.regions())
                regions.push_back({r.gpa, r.size, reinterpret_cast<uint64_t>(r.hva)});
            vhost_->set_mem_table(regions);
            for (unsigned k = 0; k < usable; k++) activate_vhost(k);
        } catch (const std::exception& e) {
            return broken(std::string("vhost: ") + e.what());
        }
    }
    // Until the driver sets the number of pairs, it uses the first (5.1.6.5.5).
    set_pairs_in_use(1);
}

// Gives vhost the rings of pair k; its backend comes when the pair is in use.
void VirtioNet::activate_vhost(unsigned k) {
    Pair& p = *pairs_[k];
    std::lock_guard g(p.lock);
    for (unsigned i : {2 * k, 2 * k + 1}) {
        if (!(i % 2 ? p.tx : p.rx)) continue;
        const QueueConfig& q = config_[i];
        auto qi = static_cast<uint16_t>(i);
        int kick = transport_->kick_eventfd(qi), call = transport_->call_eventfd(qi), err = transport_->error_eventfd(qi);
        if (kick < 0 || call < 0 || err < 0) throw InternalError("the transport has no KVM eventfds for vhost");
        vhost_->set_vring_num(i, q.size);
        vhost_->set_vring_base(i, 0);
        // Ring placement was checked at activation (SplitQueue::valid).
        auto hva = [&](uint64_t gpa) { return reinterpret_cast<uint64_t>(mem_.ptr(gpa, 1)); };
        vhost_->set_vring_addr(i, {hva(q.desc), hva(q.driver), hva(q.device), q.device, false});
        vhost_->set_vring_kick(i, kick);
        vhost_->set_vring_call(i, call);
        vhost_->set_vring_err(i, err);
    }
}

// Pairs [0, n) receive and send; the rest get no frames: their tap queues
// are detached (the kernel hashes flows over attached queues only) and
// their vhost rings have no backend.
void VirtioNet::set_pairs_in_use(unsigned n) {
    for (unsigned k = 0; k < pairs_.size(); k++) {
        Pair& p = *pairs_[k];
        std::lock_guard g(p.lock);
        bool on = k < n && active_;
        if (on && !p.attached) port_->set_queue_attached(k, p.attached = true);
        if (vhost_ && p.vhost_running != on) {
            try {
                for (unsigned i : {2 * k, 2 * k + 1})
                    if (i % 2 ? p.tx : p.rx) vhost_->set_backend(i, on ? port_->fd(k) : -1);
                p.vhost_running = on;
            } catch (const std::exception& e) {
                broken(std::string("vhost: ") + e.what());
            }
        }
        if (!on && p.attached && k > 0) port_->set_queue_attached(k, p.attached = false);
        p.enabled = on;
        wake(p);
    }
    in_use_ = n;
}

void VirtioNet::reset() {
    auto c = lock_ctrl();
    std::vector<std::unique_lock<std::mutex>> held;
    for (auto& p : pairs_) held.emplace_back(p->lock);
    active_ = false;
    for (unsigned k = 0; k < pairs_.size(); k++) {
        Pair& p = *pairs_[k];
        for (unsigned i : {2 * k, 2 * k + 1}) {
            if (!vhost_ || !(i % 2 ? p.tx : p.rx)) continue;
            try {
                // Stop in the order the kernel wants: detach the tap, then
                // read where the ring stopped (which also stops it).
                if (p.vhost_running) vhost_->set_backend(i, -1);
                vhost_->get_vring_base(i);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "minivmm: %s: stopping vhost: %s\n", label_.c_str(), e.what());
            }
        }
        p.vhost_running = false;
        p.tx_kicked = false;
        p.enabled = false;
        p.rx.reset();
        p.tx.reset();
        p.held.drop();  // a frame held for buffers that will never come
    }
    ctrl_.reset();
    ctrl_index_ = kNoCtrl;
    transport_ = nullptr;
    features_ = 0;
    in_use_ = 1;
    promisc_ = allmulti_ = false;
    port_->set_offload(0);
}

void VirtioNet::broken(const std::string& why) {
    // The device stops until the driver resets it.
    active_ = false;
    if (transport_) transport_->mark_broken(why);
}

void VirtioNet::interrupt(std::optional<SplitQueue>& q, uint16_t index, QueueStats& st) {
    if (q->need_interrupt() && transport_->signal_queue(index)) st.interrupts++;
}

void VirtioNet::notify(uint16_t q) {
    if (q == ctrl_index_) return ctrl_all();
    if (q / 2u >= pairs_.size()) return;
    Pair& p = *pairs_[q / 2];
    (q % 2 ? p.tx_stats : p.rx_stats).notifications++;
    if (vhost_) {
        // A kick that missed the ioeventfd (an unusual write width): forward
        // it, to a ring the backend serves. Asking for any other ring's kick
        // fd would make one, and its ioeventfd, from this vCPU thread.
        std::lock_guard g(p.lock);
        bool served = transport_ && p.vhost_running && (q % 2 ? p.tx : p.rx);
        int fd = served ? transport_->kick_eventfd(q) : -1;
        uint64_t one = 1;
        if (fd >= 0) [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
        return;
    }
    // The kick exited to us; the pair's thread does the work, as QEMU's
    // userspace datapath does, so the vCPU goes back to the guest at once
    // and the guest does not kick again (EVENT_IDX, or NO_NOTIFY below) for
    // what it queues while the thread sends. Sending inside the exit made
    // every frame a kick and an exit.
    if (q % 2) p.tx_kicked = true;
    wake(p);  // RX: buffers for a frame that waits, or the first ones
}

bool VirtioNet::tx_some(Pair& p, uint16_t q) {
    std::string why;
    p.tx->disable_notify();
    Work w = net_tx(*p.tx, mem_, port_->fd(q / 2), p.tx_stats, kTxBatch, why, port_->vnet_header());
    if (w == Work::Broken) {
        broken("tx: " + why);
        return false;
    }
    bool more = w != Work::Idle || p.tx->enable_notify();  // more may have come while we looked
    interrupt(p.tx, q, p.tx_stats);
    return more;
}

void VirtioNet::io_loop(unsigned k) {
    Pair& p = *pairs_[k];
    int fd = port_->fd(k);
    bool want_frames = false;  // poll the tap: in use, with no frame waiting for buffers
    while (!quit_) {
        pollfd fds[2] = {{p.wake.get(), POLLIN, 0}, {fd, short(want_frames ? POLLIN : 0), 0}};
        if (poll(fds, 2, -1) < 0) continue;
        uint64_t n;
        if (fds[0].revents) [[maybe_unused]] ssize_t r = ::read(p.wake.get(), &n, sizeof n);
        std::lock_guard g(p.lock);
        want_frames = false;
        // A batch at a time, then the receive side: ACKs keep flowing under a
        // send, and the rest of the send comes round again at once. A pair
        // out of use (VQ_PAIRS_SET) sends nothing, as a vhost ring without a
        // backend; its kick is kept, and served when the pair is put back.
        if (active_ && p.enabled && p.tx && p.tx_kicked.exchange(false) &&
            tx_some(p, static_cast<uint16_t>(2 * k + 1))) {
            p.tx_kicked = true;
            wake(p);
        }
        if (!active_ || !p.enabled || !p.rx) continue;
        SplitQueue& q = *p.rx;
        std::string why;
        Work w;
        do {
            w = p.held.run(q, mem_, fd, features_ & net::kMrgRxbuf, p.rx_stats, kRxBatch, why, {},
                           port_->vnet_header());
            // Out of buffers: ask for a kick, unless they arrived meanwhile.
        } while (w == Work::NeedBuffers && q.enable_notify());
        if (w == Work::Broken) {
            broken("rx: " + why);
            continue;
        }
        interrupt(p.rx, static_cast<uint16_t>(2 * k), p.rx_stats);
        want_frames = w != Work::NeedBuffers;
        if (want_frames) q.disable_notify();
    }
}

std::string VirtioNet::describe() const {
    Mac m;
    {
        auto g = lock_ctrl();
        m = mac_;
    }
    char mac[18];
    std::snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    return "virtio-net, " + port_->describe() + ", mac " + mac + ", vhost=" + datapath() + ", " +
           std::to_string(pairs()) + " queue pair" + (pairs() > 1 ? "s" : "");
}

void VirtioNet::print_stats(std::FILE* f, const std::string& label) const {
    std::fprintf(f, "minivmm: %s (%s, vhost=%s, %zu queue pair%s, %u in use):\n", label.c_str(),
                 port_->describe().c_str(), datapath(), pairs_.size(), pairs_.size() > 1 ? "s" : "", in_use_.load());
    for (unsigned i = 0; i < 2 * pairs_.size(); i++) {
        std::string name = (i % 2 ? "tx" : "rx") + std::to_string(i / 2);
        const Pair& p = *pairs_[i / 2];
        const QueueStats* st = vhost_ ? vhost_->stats(i) : i % 2 ? &p.tx_stats : &p.rx_stats;
        if (st)
            st->print(f, name.c_str());
        else
            std::fprintf(f, "  %s: served by the kernel's vhost-net (its counters are not visible here)\n",
                         name.c_str());
    }
    ctrl_stats_.print(f, "ctrl");
}

}  // namespace minivmm
