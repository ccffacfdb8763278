// libFuzzer target: the receive path (NetRx, shared by vhost=off and the
// vhost worker) between a port and a hostile driver's receive ring. The
// input posts chains of any shape (net_driver.hpp), has the port send frames
// of any length, with or without a virtio-net header, runs the device with
// any budget, mergeable buffers or not, and stops and restarts it as a
// backend would (its buffers taken ahead given back, a held frame dropped).
//
// Beyond memory safety (guest RAM has poisoned surroundings) and bounded
// work: with a strict driver, each used entry is a chain the device held,
// with no more bytes than its buffers have; each frame arrives whole, in
// order, with the header it should have and num_buffers right; nothing
// around the buffers changes; the queue breaks only for a chain that
// deserves it; nothing is lost (a mergeable ring drops nothing), and at the
// end every frame sent is delivered once the driver posts room for it.
#include <deque>
#include <memory>
#include <set>

#include "tests/fuzz/net_driver.hpp"

using namespace minivmm;
using namespace minivmm::fuzz;

namespace {

struct Sent {
    uint64_t seq;
    std::vector<uint8_t> bytes;
};

struct Rx {
    FuzzedDataProvider& in;
    ChainDriver drv;
    SocketPort port{1, true};  // only its socketpair: whether frames carry a header is `header`
    bool mergeable = false, header = false, event_idx = false;
    std::optional<SplitQueue> q;
    NetRx rx;
    std::unique_ptr<QueueStats> st;
    std::deque<Sent> sent;  // at the port, not yet delivered
    uint64_t seq = 0, delivered = 0, dropped = 0;
    std::set<uint64_t> lost_ok;  // frames that may have been held when a backend stopped
    uint32_t seed = 0;
    std::vector<std::pair<uint64_t, uint64_t>> data_log;

    Rx(FuzzedDataProvider& i, bool strict) : in(i), drv(i, strict, true) {}
    bool strict() const { return drv.strict(); }
    int fd() const { return port.fd(0); }
    bool runt(const std::vector<uint8_t>& f) const { return header ? f.size() < net::kHeaderLen : f.empty(); }

    // A driver's reset: a new ring, the held frame and the frames waiting gone.
    void start() {
        if (strict()) drv.check_all_slack();
        rx.drop();
        q.reset();
        SocketPort::drain(fd());
        sent.clear();
        delivered = dropped = 0;
        lost_ok.clear();
        st = std::make_unique<QueueStats>();
        mergeable = in.ConsumeBool();
        header = in.ConsumeBool();
        event_idx = in.ConsumeBool();
        uint16_t size = static_cast<uint16_t>(1u << in.ConsumeIntegralInRange(0, 8));
        if (drv.wild()) size = in.ConsumeIntegral<uint16_t>();
        TRACE("start: %s, mergeable %d, header %d, size %u\n", strict() ? "strict" : "wild", mergeable, header, size);
        drv.reset(size);
        open_queue(0);
        if (strict()) CHECK(q->valid());
    }
    void open_queue(uint16_t base) {
        q.emplace(ram(), drv.ring.size, drv.ring.at.desc, drv.ring.at.avail, drv.ring.at.used);
        q->set_event_idx(event_idx);
        q->resume(base);
        const GuestRing& r = drv.ring;
        q->set_write_log([r](uint64_t gpa, uint64_t len) {
            uint64_t bytes = RingLayout::used_bytes(r.size);
            CHECK(gpa >= r.at.used && len <= bytes && gpa - r.at.used <= bytes - len);
        });
    }

    void send() {
        size_t max = header ? net::kMaxFrame : net::kMaxFrame - net::kHeaderLen;
        size_t len;
        switch (in.ConsumeIntegralInRange(0, 6)) {
            case 0: len = in.ConsumeIntegralInRange<size_t>(0, 13); break;
            case 1: len = in.ConsumeIntegralInRange<size_t>(14, 60); break;
            case 2:
            case 3: len = in.ConsumeIntegralInRange<size_t>(61, 1514); break;
            case 4: len = in.ConsumeIntegralInRange<size_t>(1515, 9100); break;
            case 5: len = in.ConsumeIntegralInRange<size_t>(9101, max); break;
            default: len = max - in.ConsumeIntegralInRange<size_t>(0, 2); break;
        }
        auto f = make_frame(len, ++seed);
        if (::send(port.peer(0), f.data(), f.size(), MSG_DONTWAIT) == static_cast<ssize_t>(f.size())) {
            TRACE("send frame %llu: %zu bytes\n", (unsigned long long)seq, f.size());
            sent.push_back({seq++, std::move(f)});
        }
    }

    // The frame a strict driver must find: the one sent with its header
    // (made up if the port has none) saying how many buffers it took.
    void match(const std::vector<uint8_t>& got, uint16_t buffers) {
        for (;;) {
            CHECK(!sent.empty());  // a frame nobody sent
            Sent f = std::move(sent.front());
            sent.pop_front();
            if (runt(f.bytes)) continue;  // too short for a frame: dropped silently
            std::vector<uint8_t> want(header ? 0 : net::kHeaderLen, 0);
            want.insert(want.end(), f.bytes.begin(), f.bytes.end());
            want[10] = static_cast<uint8_t>(buffers), want[11] = static_cast<uint8_t>(buffers >> 8);
            TRACE("  delivered %zu bytes in %u buffers; frame %llu wants %zu\n", got.size(), buffers,
                  (unsigned long long)f.seq, want.size());
            if (got == want) {
                delivered++;
                return;
            }
            // Skipped: held when a backend stopped, or (without mergeable
            // buffers) too big for the buffer it met, and counted.
            if (lost_ok.count(f.seq)) continue;
            CHECK(!mergeable);
            dropped++;
        }
    }

    Work run(unsigned budget) {
        std::string why;
        data_log.clear();
        WriteLog log;
        if (in.ConsumeBool())
            log = [this](uint64_t gpa, uint64_t len) {
                CHECK(len > 0 && ram().ptr(gpa, len));
                data_log.push_back({gpa, len});
            };
        Work w = rx.run(*q, ram(), fd(), {.mergeable = mergeable, .fd_header = header, .budget = budget, .log = log}, *st, why);
        TRACE("run %u: %d %s (packets %llu errors %llu)\n", budget, int(w), why.c_str(),
              (unsigned long long)st->packets, (unsigned long long)st->errors);
        CHECK((w == Work::Broken) == !why.empty());
        if (!strict()) {
            if (w == Work::Broken) start();
            return w;
        }
        if (!data_log.empty()) {  // each write inside a buffer the device holds
            std::vector<std::pair<uint64_t, uint64_t>> bufs;  // strict: none overlap
            for (auto& [head, p] : drv.out)
                for (const Segment& s : p.segs)
                    if (s.device_writable) bufs.push_back({s.gpa, s.gpa + s.len});
            std::sort(bufs.begin(), bufs.end());
            for (auto [gpa, len] : data_log) {
                auto it = std::upper_bound(bufs.begin(), bufs.end(), std::make_pair(gpa, UINT64_MAX));
                CHECK(it != bufs.begin() && gpa + len <= std::prev(it)->second);
            }
        }
        collect();
        CHECK(st->packets == delivered);
        CHECK(dropped <= st->errors);
        if (mergeable) CHECK(st->errors == 0);
        if (w == Work::NeedBuffers) CHECK(std::any_of(sent.begin(), sent.end(), [&](const Sent& f) { return !runt(f.bytes); }));
        if (w == Work::Broken) {
            // Only for a chain that deserves it: bad shape, or parts the
            // device may not write.
            bool deserved = false;
            for (auto& [head, p] : drv.out) deserved |= p.walk_fails || p.readable;
            CHECK(deserved);
            start();
        }
        return w;
    }

    // The used entries published since last time, as frames.
    void collect() {
        uint16_t now = drv.ring.used_idx();
        uint16_t n = static_cast<uint16_t>(now - drv.ring.used_seen);
        CHECK(n <= drv.out.size());
        std::vector<std::pair<uint32_t, uint32_t>> e;
        std::set<uint32_t> ids;
        for (uint16_t k = 0; k < n; k++) {
            auto [id, len] = drv.ring.used_elem(static_cast<uint16_t>(drv.ring.used_seen + k));
            CHECK(drv.out.count(id) && ids.insert(id).second);
            const Posted& p = drv.out.at(id);
            CHECK(!p.walk_fails && !p.readable && len <= p.writable);
            e.push_back({id, len});
        }
        for (size_t i = 0; i < n;) {
            std::vector<uint8_t> frame;
            size_t j = i;
            auto append = [&] {
                auto b = ChainDriver::written(drv.out.at(e[j].first), e[j].second);
                frame.insert(frame.end(), b.begin(), b.end());
                j++;
            };
            while (frame.size() < net::kHeaderLen && j < n) append();
            CHECK(frame.size() >= net::kHeaderLen);  // a frame's buffers are published together
            uint16_t buffers = static_cast<uint16_t>(frame[10] | frame[11] << 8);
            CHECK(buffers >= j - i && i + buffers <= n);
            if (!mergeable) CHECK(buffers == 1);
            while (j < i + buffers) append();
            match(frame, buffers);
            i = j;
        }
        for (auto [id, len] : e) drv.give_back(static_cast<uint16_t>(id));
        drv.ring.used_seen = now;
    }

    // A backend stops and another takes the ring where it stopped (vhost's
    // vring base): the buffers taken ahead go back to be taken again; with
    // a new backend (swap) the held frame is dropped, as set_backend does.
    void restart(bool swap) {
        TRACE("restart%s\n", swap ? " with a new backend" : "");
        rx.release(*q);
        uint16_t base = q->last_avail();
        if (swap) {
            rx.drop();
            // The frame held, if one was: the first the device has not
            // consumed. With mergeable buffers that is the first not yet
            // delivered nor lost; without, frames it dropped are still
            // listed, and any of them may be it.
            for (const Sent& f : sent)
                if (!runt(f.bytes) && lost_ok.insert(f.seq).second && mergeable) break;
        }
        open_queue(base);
    }

    bool port_empty() const {
        char c;
        return ::recv(fd(), &c, 1, MSG_PEEK | MSG_DONTWAIT) < 0;
    }
    // With room for any frame posted, everything sent must arrive (or,
    // without mergeable buffers, be dropped and counted). Each round moves
    // frames along, or the device waits for buffers: then it must not have
    // been offered a chain that holds any frame.
    void drain() {
        for (;;) {
            size_t need = net::kHeaderLen;
            for (const Sent& f : sent) need = std::max(need, f.bytes.size() + (header ? 0 : net::kHeaderLen));
            bool room = false;
            for (int k = 0; k < 8 && drv.room_for(need); k++) room |= drv.post_plain(static_cast<uint32_t>(need), ++seed);
            uint64_t moved = st->packets + st->errors;
            Work w = run(64);
            if (w == Work::Broken) return;  // a chain posted before deserved it: the ring is new
            if (w == Work::Idle && port_empty()) {
                // Nothing held and nothing left: what was not delivered was dropped.
                uint64_t left = 0;
                for (const Sent& f : sent) left += !runt(f.bytes) && !lost_ok.count(f.seq);
                if (mergeable) CHECK(left == 0);
                CHECK(left + dropped <= st->errors && st->errors <= left + dropped + lost_ok.size());
                return;
            }
            if (w == Work::NeedBuffers && st->packets + st->errors == moved) {
                CHECK(!room);  // a frame waits with room for it offered
                return;        // the driver has no room left to offer: its problem
            }
        }
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    Rx r(in, in.ConsumeBool());
    r.start();
    for (int op = 0; op < 300 && in.remaining_bytes(); op++) {
        switch (in.ConsumeIntegralInRange(0, 19)) {
            case 0: case 1: case 2: case 3: case 4: r.drv.post(++r.seed); break;
            case 5: case 6: case 7: r.send(); break;
            case 8: case 9: case 10: case 11:
                r.run(in.ConsumeBool() ? in.ConsumeIntegralInRange(1, 4) : in.ConsumeIntegralInRange(1, 64));
                break;
            case 12: r.restart(false); break;
            case 13: r.restart(true); break;
            case 14: r.q->enable_notify(); break;
            case 15: r.q->disable_notify(); break;
            case 16: r.q->need_interrupt(); break;
            case 17: r.start(); break;
            default:
                if (!r.strict()) r.drv.misbehave();
                break;
        }
    }
    if (r.strict()) {
        r.drain();
        r.drv.check_all_slack();
    }
    return 0;
}
