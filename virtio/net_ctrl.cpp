// The virtio-net control queue (virtio 1.x, 5.1.6.5): commands from the
// driver, each a chain of a class/command header and its data (read by the
// device) followed by one status byte (written by the device). A command
// the device does not know, or whose data has the wrong shape, is answered
// VIRTIO_NET_ERR; only a chain with nowhere to put the status, or one the
// ring walker rejects, breaks the device.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "virtio/net.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/bytes.hpp"

namespace minivmm {

namespace {
constexpr uint8_t kOk = 0, kErr = 1;
// Classes and commands (5.1.6.5).
constexpr uint8_t kClassRx = 0, kRxPromisc = 0, kRxAllMulti = 1;
constexpr uint8_t kClassMac = 1, kMacTableSet = 0, kMacAddrSet = 1;
constexpr uint8_t kClassAnnounce = 3, kAnnounceAck = 0;
constexpr uint8_t kClassMq = 4, kMqVqPairsSet = 0;
// The largest command read: a MAC filter table of thousands of entries fits.
constexpr uint64_t kMaxCommand = 64 * 1024;

// VIRTIO_NET_CTRL_MAC_TABLE_SET: a unicast and a multicast table, each a
// 32-bit count followed by that many addresses, filling the data exactly.
bool mac_tables_fit(const std::vector<uint8_t>& d) {
    uint64_t at = 0;
    for (int table = 0; table < 2; table++) {
        if (d.size() - at < 4) return false;
        uint64_t n = le_load(&d[at], 4);
        at += 4;
        if (n > (d.size() - at) / 6) return false;
        at += 6 * n;
    }
    return at == d.size();
}

// Writes a command's result over the device-writable bytes after the
// status byte (the first of them: 5.1.6.5, as Linux's driver places its
// buffers), which the caller made sure have room for exactly it.
void write_reply(const GuestMemory& mem, const Chain& c, const std::vector<uint8_t>& reply) {
    size_t skip = 1, at = 0;
    for (const Segment& s : c.segs) {
        if (!s.device_writable) continue;
        size_t from = std::min<size_t>(skip, s.len);
        skip -= from;
        size_t n = std::min<size_t>(s.len - from, reply.size() - at);
        if (n) std::memcpy(mem.ptr(s.gpa + from, n), reply.data() + at, n);
        at += n;
    }
}
}  // namespace

// Kicks are served on the vCPU that makes them, at once, as Linux's driver
// waits spinning for each command's answer. But a driver on another vCPU
// can refill the ring as fast as it empties, and a loop that runs until
// the ring is empty then holds that vCPU (and ctrl_lock_, and the PCI bus
// lock for a kick through the PCI-config window) for as long as it likes,
// while resets and config reads on other vCPUs wait: vhost's weight limits
// answer the same problem. So one lock hold serves at most kCtrlBudget
// commands. The rest cannot wait for the next kick: with EVENT_IDX the
// driver does not kick while the device has not caught up, and may just
// spin waiting for its answers. They go to the control thread instead,
// which serves them a batch at a time, and queues itself again after each
// batch, as vhost requeues its work, so a flood costs that thread's time,
// not a vCPU's.
void VirtioNet::serve_ctrl_kick() {
    bool more;
    {
        auto g = lock_ctrl();
        more = ctrl_batch();
    }
    uint64_t one = 1;
    if (more) [[maybe_unused]] ssize_t n = ::write(ctrl_wake_.get(), &one, sizeof one);
}

std::unique_lock<std::mutex> VirtioNet::lock_ctrl() const {
    ctrl_waiters_++;
    std::unique_lock g(ctrl_lock_);
    ctrl_waiters_--;
    return g;
}

void VirtioNet::ctrl_loop() {
    while (!quit_) {
        pollfd p{ctrl_wake_.get(), POLLIN, 0};
        if (poll(&p, 1, -1) < 0) continue;
        uint64_t n;
        [[maybe_unused]] ssize_t r = ::read(ctrl_wake_.get(), &n, sizeof n);
        // A mutex hands itself to no one in particular: re-locking right
        // after each batch, this thread could win every time against a
        // reset or config read woken on another CPU, for as long as the
        // flood lasts. So it steps aside, asleep (a spin would take the CPU
        // they need), while anyone else wants the lock; each holds it for a
        // batch or a reset at most.
        while (ctrl_waiters_ && !quit_) std::this_thread::sleep_for(std::chrono::microseconds(20));
        bool more;
        {
            std::lock_guard g(ctrl_lock_);
            more = ctrl_batch();
        }
        uint64_t one = 1;
        if (more) [[maybe_unused]] ssize_t w = ::write(ctrl_wake_.get(), &one, sizeof one);
    }
}

// Called with ctrl_lock_ held.
bool VirtioNet::ctrl_batch() {
    if (!active_ || !ctrl_ || quiesced_) return false;
    bool more = true;
    for (unsigned served = 0; served < kCtrlBudget;) {
        Chain c;
        std::string why;
        auto r = ctrl_->pop(c, why);
        if (r == SplitQueue::Pop::Broken) return needs_reset("control queue: " + why), false;
        if (r == SplitQueue::Pop::Empty) {
            if (ctrl_->enable_notify()) continue;  // more came while we looked
            more = false;
            break;
        }
        served++;
        // The status byte goes in the first device-writable buffer, which the
        // walker guarantees comes after every readable one.
        const Segment* status = nullptr;
        for (const Segment& s : c.segs)
            if (s.device_writable && s.len) {
                status = &s;
                break;
            }
        if (!status) return needs_reset("control queue: a command with no room for its status"), false;
        uint8_t ack = kErr;
        std::vector<uint8_t> reply;  // a command's result, after the status (5.1.6.5)
        if (c.readable_bytes >= 2 && c.readable_bytes <= kMaxCommand) {
            std::vector<uint8_t> bytes;
            for (const Segment& s : c.segs) {
                if (s.device_writable) break;
                const uint8_t* src = mem_.ptr(s.gpa, s.len);
                bytes.insert(bytes.end(), src, src + s.len);
            }
            std::vector<uint8_t> data(bytes.begin() + 2, bytes.end());
            ack = ctrl_command(bytes[0], bytes[1], data, reply);
        }
        // The status goes first, a result only into exactly its room after it.
        if (!reply.empty() && c.writable_bytes != reply.size() + 1) ack = kErr;
        if (ack != kOk) reply.clear();
        if (!reply.empty()) write_reply(mem_, c, reply);
        *mem_.ptr(status->gpa, 1) = ack;
        // A migration's log: the status and any result went into these.
        if (dirty_)
            for (const Segment& s : c.segs)
                if (s.device_writable) dirty_.mark(s.gpa, s.len);
        ctrl_->push_used(c.head, static_cast<uint32_t>(reply.size() + 1));
        ctrl_stats_.packets++;
        if (ack != kOk) ctrl_stats_.errors++;
    }
    interrupt(ctrl_, ctrl_index_, ctrl_stats_);
    return more;
}

// Called with ctrl_lock_ held.
uint8_t VirtioNet::ctrl_command(uint8_t cls, uint8_t cmd, const std::vector<uint8_t>& data,
                                std::vector<uint8_t>& reply) {
    ctrl_stats_.bytes += data.size();
    if (cls == VIRTIO_NET_CTRL_NOTF_COAL)
        return coalesce_.command(cmd, data, features_, 2 * usable_pairs_, reply) ? kOk : kErr;
    if (cls == kClassRx && (features_ & net::kCtrlRx) && data.size() == 1) {
        // Acknowledged and kept for --stats; the tap hands the guest every
        // frame addressed to it anyway, and the guest's stack filters.
        if (cmd == kRxPromisc) return promisc_ = data[0] != 0, kOk;
        if (cmd == kRxAllMulti) return allmulti_ = data[0] != 0, kOk;
        return kErr;
    }
    if (cls == kClassMac && cmd == kMacTableSet && (features_ & net::kCtrlRx))
        return mac_tables_fit(data) ? kOk : kErr;
    if (cls == kClassMac && cmd == kMacAddrSet && (features_ & net::kCtrlMacAddr)) {
        if (data.size() != 6 || (data[0] & 1)) return kErr;  // a unicast address, nothing else
        std::memcpy(mac_.data(), data.data(), 6);
        return kOk;
    }
    // The driver has announced the guest (5.1.6.5.4): the command has no data.
    if (cls == kClassAnnounce && cmd == kAnnounceAck && (features_ & net::kGuestAnnounce)) {
        if (!data.empty()) return kErr;
        announcing_ = false;
        return kOk;
    }
    if (cls == kClassMq && cmd == kMqVqPairsSet && (features_ & net::kMq) && data.size() == 2) {
        uint64_t n = le_load(data.data(), 2);
        if (n < 1 || n > pairs() || !pairs_ready(static_cast<unsigned>(n))) return kErr;
        set_pairs_in_use(static_cast<unsigned>(n));
        return kOk;
    }
    if (cls == kClassMq && cmd == net::kCtrlMqRssConfig && (features_ & net::kRss)) return ctrl_rss(data);
    return kErr;
}

// After a restore or an incoming migration the guest sits behind another
// switch port, or the same port after a while, and switches still send its
// traffic where it was. Its driver knows its addresses: with GUEST_ANNOUNCE
// it sends gratuitous ARPs and unsolicited neighbour advertisements when
// the status shows ANNOUNCE and the configuration change interrupt comes.
// Raised before the vCPUs run, that interrupt waits in the LAPIC (or the
// MSI-X pending bits, if masked) until they do.
void VirtioNet::announce() {
    auto c = lock_ctrl();
    // The driver must have started the device and taken the feature with
    // the control queue its acknowledgement needs (a driver may not take
    // it alone, 5.1.3.1); a broken or stopped device stays silent.
    constexpr uint64_t kNeeds = net::kGuestAnnounce | net::kCtrlVq;
    if (!active_ || quiesced_ || !transport_ || (features_ & kNeeds) != kNeeds) return;
    announcing_ = true;
    transport_->signal_config();
}

// Every pair put in use must have both its queues set up.
bool VirtioNet::pairs_ready(unsigned n) const {
    for (unsigned k = 0; k < n; k++)
        if (k >= usable_pairs_ || !config_[2 * k].enabled || !config_[2 * k + 1].enabled) return false;
    return true;
}

}  // namespace minivmm
