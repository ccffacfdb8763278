#include "virtio/net.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <system_error>

#include "vmm/bytes.hpp"
#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/seccomp.hpp"
#include "vmm/thread_guard.hpp"

namespace minivmm {

VirtioNet::VirtioNet(const GuestMemory& mem, std::unique_ptr<NetBackend> backend, const Mac& mac,
                     const std::string& label)
    : mem_(mem), backend_(std::move(backend)), label_(label), mtu_(backend_->mtu()), mac_(mac),
      coalesce_(2 * backend_->pairs(), [this](unsigned q, const Coalesce& c) { backend_->set_coalesce(q, c); }) {
    if (pairs() < 1 || pairs() > kMaxPairs) throw UserError("--net: bad number of queue pairs");
    ctrl_wake_ = Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!ctrl_wake_) throw internal_error("eventfd");
    std::string name = label_ + "-ctrl";
    try {
        ctrl_thread_ = Thread([this, name] {
            guarded(name, [&] {
                enter_thread(ThreadKind::NetCtrl, name);  // also names it, for ps -L and top -H
                ctrl_loop();
            });
        });
    } catch (const std::system_error& e) {
        throw InternalError("cannot start thread " + name + ": " + e.code().message());
    }
}

VirtioNet::~VirtioNet() {
    reset();
    stop_ctrl_thread();
    // Its threads ask running(): they stop before the device's state goes.
    backend_.reset();
}

void VirtioNet::stop_ctrl_thread() {
    quit_ = true;
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(ctrl_wake_.get(), &one, sizeof one);
    if (ctrl_thread_.joinable()) ctrl_thread_.join();
}

uint64_t VirtioNet::features() const {
    using namespace net;
    // GUEST_ANNOUNCE with the control queue its acknowledgement needs: the
    // device model alone serves both, whatever the datapath.
    uint64_t f = virtio::kFVersion1 | virtio::kFIndirectDesc | virtio::kFEventIdx | kMac | kMrgRxbuf | kStatus |
                 kCtrlVq | kCtrlRx | kCtrlMacAddr | kGuestAnnounce;
    // Checksum and segmentation offloads need a port whose frames carry the
    // virtio-net header: without it partial checksums and GSO frames could
    // not be described to the other side.
    if (backend_->vnet_header())
        f |= kCsum | kGuestCsum | kGuestTso4 | kGuestTso6 | kGuestEcn | kHostTso4 | kHostTso6 | kHostEcn;
    // UDP GSO frames pass only a port that takes them (a tap of Linux 6.2
    // or later): with another the tap would refuse the guest's, and could
    // not hand any over.
    if (backend_->vnet_header() && backend_->uso()) f |= kHostUso | kGuestUso4 | kGuestUso6;
    // The link's MTU, so the guest's matches the host side's (a guest
    // sending larger frames would have them dropped there).
    if (mtu_ >= kMinMtu && mtu_ <= kMaxMtu) f |= kMtu;
    // RSS only with pairs to steer between (the port steers only then).
    if (pairs() > 1 && backend_->rss()) f |= kRss;
    // Coalescing needs a datapath that raises the interrupts itself (not vhost-net).
    if (backend_->coalescing()) f |= kNotfCoal | kVqNotfCoal;
    return pairs() > 1 ? f | kMq : f;
}

void VirtioNet::config_read(uint64_t off, uint8_t* data, uint32_t size) {
    // mac[6], status (link up, an announcement asked for),
    // max_virtqueue_pairs, mtu, then RSS's fields after speed and duplex
    // (net_rss.hpp).
    uint8_t cfg[net::kConfigSizeWithRss] = {};
    {
        auto g = lock_ctrl();
        std::memcpy(cfg, mac_.data(), 6);
        le_store(cfg + 6, 2, net::kStatusLinkUp | (announcing_ ? net::kStatusAnnounce : 0));
    }
    le_store(cfg + 8, 2, pairs());
    if (features() & net::kMtu) le_store(cfg + 10, 2, mtu_);
    if (features() & net::kRss) net::put_rss_config_space(cfg);
    for (uint32_t i = 0; i < size; i++) data[i] = off + i < sizeof cfg ? cfg[off + i] : 0;
}

// The pairs' rings are checked here, once for every backend: those that
// serve them may then take their placement as given.
bool VirtioNet::rings_valid(const std::vector<QueueConfig>& queues, unsigned usable) {
    for (unsigned i = 0; i < 2 * usable; i++) {
        const QueueConfig& q = queues[i];
        if (!q.enabled) continue;  // a queue the driver does not use stays off
        if (!SplitQueue(mem_, q.size, q.desc, q.driver, q.device).valid())
            return needs_reset("queue " + std::to_string(i) + ": bad size or ring address"), false;
    }
    return true;
}

void VirtioNet::activate(uint64_t features, const std::vector<QueueConfig>& queues, VirtioTransport& t) {
    auto c = lock_ctrl();
    start(features, queues, t, nullptr);
}

bool VirtioNet::start(uint64_t features, const std::vector<QueueConfig>& queues, VirtioTransport& t,
                      const std::vector<uint16_t>* positions) {
    // Without MQ or RSS the device has one pair and the control queue follows it (5.1.2).
    unsigned usable = net::usable_pairs(features, pairs());
    uint16_t ctrl_index = net::ctrl_queue(features, pairs());
    features_ = features;
    transport_ = &t;
    config_ = queues;
    usable_pairs_ = usable;
    if (!rings_valid(queues, usable)) return false;
    if ((features & net::kCtrlVq) && queues[ctrl_index].enabled) {
        const QueueConfig& q = queues[ctrl_index];
        ctrl_.emplace(mem_, q.size, q.desc, q.driver, q.device);
        ctrl_->set_event_idx(features & virtio::kFEventIdx);
        log_ctrl();
        if (!ctrl_->valid()) return needs_reset("control queue: bad size or ring address"), false;
        if (positions) ctrl_->resume((*positions)[ctrl_index]);
        ctrl_index_ = ctrl_index;
    }
    active_ = true;
    backend_started_ = true;  // even if it fails: its rings may have been handed over
    if (!backend_->activate({mem_, features, config_, usable, t, *this, positions})) return false;
    // Until the driver sets the number of pairs, it uses the first (5.1.6.5.5).
    set_pairs_in_use(1);
    return true;
}

void VirtioNet::set_pairs_in_use(unsigned n) {
    backend_->set_pairs_in_use(n);
    in_use_ = n;
}

void VirtioNet::reset() {
    auto c = lock_ctrl();
    active_ = false;
    backend_->reset();
    ctrl_.reset();
    ctrl_index_ = kNoCtrl;
    transport_ = nullptr;
    features_ = 0;
    config_.clear();
    usable_pairs_ = 0;
    in_use_ = 1;
    backend_->set_rss(nullptr);
    promisc_ = allmulti_ = false;
    announcing_ = false;
    rss_command_.clear();
    quiesced_ = backend_started_ = false;
    positions_.clear();
    coalesce_.reset();
}

void VirtioNet::needs_reset(const std::string& why) {
    // The device stops until the driver resets it.
    active_ = false;
    if (transport_) transport_->mark_broken(why);
}

void VirtioNet::interrupt(std::optional<SplitQueue>& q, uint16_t index, QueueStats& st) {
    if (q->need_interrupt() && transport_->signal_queue(index)) st.interrupts++;
}

void VirtioNet::notify(uint16_t q) {
    if (q == ctrl_index_) return serve_ctrl_kick();
    if (q / 2u >= pairs()) return;
    backend_->notify(q);
}

std::string VirtioNet::describe() const {
    Mac m;
    {
        auto g = lock_ctrl();
        m = mac_;
    }
    char mac[18];
    std::snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    return "virtio-net, " + backend_->describe() + ", mac " + mac + ", vhost=" + datapath() + ", " +
           std::to_string(pairs()) + " queue pair" + (pairs() > 1 ? "s" : "");
}

std::optional<DeviceStats> VirtioNet::stats() const {
    DeviceStats s{label_, backend_->describe(), datapath(), pairs(), in_use_.load(), {}};
    for (unsigned i = 0; i < 2 * s.pairs; i++) {
        std::string name = (i % 2 ? "tx" : "rx") + std::to_string(i / 2);
        const QueueStats* st = backend_->stats(i);
        s.queues.push_back(st ? st->snapshot(name) : QueueCounters{name, false});
    }
    s.queues.push_back(ctrl_stats_.snapshot("ctrl"));
    return s;
}

void VirtioNet::print_stats(std::FILE* f, const std::string& label) const {
    DeviceStats s = *stats();
    s.label = label;
    print_device_stats(f, s);
}

}  // namespace minivmm
