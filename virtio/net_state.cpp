// virtio-net's saved state and stopping its datapaths in place. The state
// says where each queue is in virtio's terms, so that it loads into any
// datapath (off, worker, kernel) of a NIC with as many queue pairs.
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "virtio/net.hpp"
#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"

namespace minivmm {

namespace {
// The status saved: the link is up. ANNOUNCE is left out (announce()
// sets it again after every load).
constexpr uint16_t kLinkUp = net::kStatusLinkUp;
// An RSS_CONFIG command: its largest table and key, and room for a driver's
// padding after them (parse_rss_config ignores it).
constexpr size_t kMaxRssCommand = 4096;
}

void VirtioNet::log_ctrl() {
    if (!ctrl_) return;
    if (!dirty_) return ctrl_->set_write_log({});
    ctrl_->set_write_log([log = dirty_](uint64_t gpa, uint64_t len) { log.mark(gpa, len); });
}

void VirtioNet::set_dirty_log(const DirtyBitmap& log) {
    auto c = lock_ctrl();
    dirty_ = log;
    log_ctrl();
    backend_->set_dirty_log(log);
}

void VirtioNet::set_host_attached(bool attached) {
    auto c = lock_ctrl();
    backend_->set_port_attached(attached);
}

void VirtioNet::quiesce() {
    auto c = lock_ctrl();
    if (quiesced_) return;
    // The control queue first: with quiesced_ set, kicks and the control
    // thread leave it alone (ctrl_batch), so its position holds still.
    quiesced_ = true;
    std::vector<uint16_t> rings = backend_->quiesce();
    // A device loaded stopped (DEVICE_NEEDS_RESET) keeps the positions it
    // was loaded with: its backend never had the rings.
    if (!backend_started_) return;
    positions_.assign(num_queues(), 0);
    for (unsigned i = 0; i < 2 * usable_pairs_ && i < rings.size(); i++) positions_[i] = rings[i];
    if (ctrl_) positions_[ctrl_index_] = ctrl_->last_avail();
}

void VirtioNet::resume() {
    auto c = lock_ctrl();
    if (!quiesced_) return;
    quiesced_ = false;
    if (backend_started_) positions_.clear();
    backend_->resume();
    // Commands the driver queued meanwhile: the control thread serves them,
    // as their kick found the queue stopped.
    uint64_t one = 1;
    if (ctrl_) [[maybe_unused]] ssize_t n = ::write(ctrl_wake_.get(), &one, sizeof one);
}

void VirtioNet::save(state::Writer& w) const {
    auto c = lock_ctrl();
    if (active_ && !quiesced_) throw InternalError(label_ + ": state saved while the device runs (quiesce it first)");
    w.bytes(mac_.data(), mac_.size());
    w.u16(kLinkUp);
    w.u64(features_);
    w.u32(in_use_);
    w.boolean(promisc_);
    w.boolean(allmulti_);
    std::vector<uint16_t> pos = positions_;
    pos.resize(num_queues(), 0);
    w.u16(num_queues());
    for (uint16_t p : pos) w.u16(p);
    w.u16(shown_mtu());
    w.blob(rss_command_);
    for (unsigned i = 0; i < coalesce_.queues(); i++) {
        w.u32(coalesce_.get(i).max_packets);
        w.u32(coalesce_.get(i).max_usecs);
    }
}

// The MTU the config space shows (0: none offered). The driver read it
// once, at probe: a NIC whose port has another would leave it wrong.
uint16_t VirtioNet::shown_mtu() const { return features() & net::kMtu ? static_cast<uint16_t>(mtu_) : 0; }

void VirtioNet::load(state::Reader& r, const LoadedTransport& t, VirtioTransport& transport) {
    auto c = lock_ctrl();
    const std::string who = label_ + " ";
    Mac mac;
    r.bytes(mac.data(), mac.size());
    uint16_t link = r.u16();
    uint64_t features = r.u64();
    uint32_t in_use = r.u32();
    bool promisc = r.boolean(), allmulti = r.boolean();
    uint16_t n = r.u16();
    if (n != num_queues())
        r.fail(who + "queues: " + std::to_string(n) + " saved, this NIC has " + std::to_string(num_queues()) +
               " (queue pairs differ)");
    std::vector<uint16_t> pos(n);
    for (uint16_t& p : pos) p = r.u16();
    uint16_t mtu = r.u16();
    std::vector<uint8_t> rss = r.blob(kMaxRssCommand);
    std::vector<Coalesce> coal(coalesce_.queues());
    for (Coalesce& q : coal) q = {r.u32(), r.u32()};  // (braces: read in order)
    if (mtu != shown_mtu())
        r.fail(who + "MTU: the driver was shown " + std::to_string(mtu) + ", this NIC's port has " +
               std::to_string(shown_mtu()));

    // As CTRL_MAC_ADDR_SET takes it: a unicast address.
    if (mac[0] & 1) r.fail(who + "MAC: a multicast address");
    if (link != kLinkUp) r.fail(who + "link status: not the link-up this device shows");
    // The device takes the driver's features at DRIVER_OK and drops them at reset.
    if (features != (t.driver_ok ? t.features : 0)) r.fail(who + "features: not what the driver negotiated");
    unsigned usable = net::usable_pairs(features, pairs());
    uint16_t ctrl_index = net::ctrl_queue(features, pairs());
    // Pairs in use: one until the driver sets more (VQ_PAIRS_SET, which
    // takes only pairs whose queues are both set up).
    if (in_use < 1 || in_use > usable) r.fail(who + "queue pairs in use: " + std::to_string(in_use) + " of " +
                                              std::to_string(usable) + " usable");
    if (in_use > 1)
        for (unsigned k = 0; k < in_use; k++)
            if (!t.queues[2 * k].enabled || !t.queues[2 * k + 1].enabled)
                r.fail(who + "queue pairs in use: pair " + std::to_string(k) + " is not set up");
    if ((promisc || allmulti) && !(features & net::kCtrlRx)) r.fail(who + "rx mode: set without VIRTIO_NET_F_CTRL_RX");
    // RSS as the command set it: checked as the command is, run as it ran.
    std::optional<net::RssConfig> steering;
    if (!rss.empty()) {
        if (!(features & net::kRss)) r.fail(who + "RSS: set without VIRTIO_NET_F_RSS");
        steering = net::parse_rss_config(rss, pairs());
        if (!steering) r.fail(who + "RSS: not a configuration the device takes");
        for (unsigned k = 0; k < steering->pairs; k++)
            if (k >= usable || !t.queues[2 * k].enabled || !t.queues[2 * k + 1].enabled)
                r.fail(who + "RSS: steers to pair " + std::to_string(k) + ", which is not set up");
    }
    // Coalescing as NOTF_COAL sets it: within its limits, on data queues
    // of the usable pairs, and only when negotiated.
    for (unsigned i = 0; i < coal.size(); i++) {
        const Coalesce& q = coal[i];
        if (q == Coalesce{}) continue;
        std::string at = who + "queue " + std::to_string(i) + " coalescing: ";
        if (!(features & (net::kNotfCoal | net::kVqNotfCoal)))
            r.fail(at + "set without VIRTIO_NET_F_NOTF_COAL or VQ_NOTF_COAL");
        if (i >= 2 * usable) r.fail(at + "set on a queue the driver cannot reach");
        if (q.max_packets > kMaxCoalescePackets || q.max_usecs > kMaxCoalesceUsecs) r.fail(at + "beyond the limits");
    }
    // Only queues the device serves have moved; every other is at its start.
    for (uint16_t i = 0; i < n; i++) {
        bool served = t.queues[i].enabled && (i < 2 * usable || (i == ctrl_index && (features & net::kCtrlVq)));
        if (pos[i] && !(t.driver_ok && served))
            r.fail(who + "queue " + std::to_string(i) + " position: moved, but the device does not serve it");
    }

    mac_ = mac;
    if (!t.driver_ok) return;
    if (t.broken) {
        // Stopped until the driver resets it: kept as it was, never started.
        features_ = features;
        transport_ = &transport;
        config_ = t.queues;
        usable_pairs_ = usable;
        in_use_ = in_use;
        promisc_ = promisc, allmulti_ = allmulti;
        rss_command_ = rss;
        for (unsigned i = 0; i < coal.size(); i++) coalesce_.restore(i, coal[i]);
        positions_ = pos;
        return;
    }
    // The rings were checked: only the host can fail here (vhost refusing).
    // (Once started, the guest's rings may still break the device, as
    // they could have before it was saved.)
    if (!start(features, t.queues, transport, &pos)) r.fail(who + "the datapath could not start the saved rings");
    // As the commands left it: the pairs a table names attached before it
    // steers, then the pairs in use the driver set last.
    unsigned attached = steering ? std::max<unsigned>(in_use, steering->pairs) : in_use;
    if (attached != 1) set_pairs_in_use(attached);
    if (steering) backend_->set_rss(&*steering);
    if (in_use != attached) set_pairs_in_use(in_use);
    rss_command_ = rss;
    for (unsigned i = 0; i < coal.size(); i++) coalesce_.restore(i, coal[i]);
    promisc_ = promisc, allmulti_ = allmulti;
}

}  // namespace minivmm
