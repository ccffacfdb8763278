// libFuzzer target: the transmit path (net_tx, shared by vhost=off and the
// vhost worker) between a hostile driver's transmit ring and a port. The
// input posts chains of any shape (net_driver.hpp), runs the device with
// any budget, to a port with or without virtio-net headers, and stops and
// restarts it as a backend would.
//
// Beyond memory safety (guest RAM has poisoned surroundings) and bounded
// work: with a strict driver, chains come back in the order offered, each
// with length 0, as many as the budget allows; a chain a frame can be made
// of reaches the port as exactly its bytes (less the header for a port
// without one), any other is dropped and counted; the counters add up; the
// device writes nothing in the buffers or around them; the queue breaks
// only at a chain that deserves it.
#include <memory>
#include <set>

#include "tests/fuzz/net_driver.hpp"

using namespace minivmm;
using namespace minivmm::fuzz;

namespace {

struct Tx {
    FuzzedDataProvider& in;
    ChainDriver drv;
    SocketPort port{1, true};  // only its socketpair: whether frames carry a header is `header`
    bool header = false, event_idx = false;
    std::optional<SplitQueue> q;
    std::unique_ptr<QueueStats> st;
    uint64_t packets = 0, errors = 0, bytes = 0;
    uint32_t seed = 0;

    Tx(FuzzedDataProvider& i, bool strict) : in(i), drv(i, strict, false) {}
    bool strict() const { return drv.strict(); }

    void start() {
        if (strict()) drv.check_all_slack();
        q.reset();
        SocketPort::drain(port.peer(0));
        st = std::make_unique<QueueStats>();
        packets = errors = bytes = 0;
        header = in.ConsumeBool();
        event_idx = in.ConsumeBool();
        uint16_t size = static_cast<uint16_t>(1u << in.ConsumeIntegralInRange(0, 8));
        if (drv.wild()) size = in.ConsumeIntegral<uint16_t>();
        TRACE("start: %s, header %d, size %u\n", strict() ? "strict" : "wild", header, size);
        drv.reset(size);
        open_queue(0);
        if (strict()) CHECK(q->valid());
    }
    void open_queue(uint16_t base) {
        q.emplace(ram(), drv.ring.size, drv.ring.at.desc, drv.ring.at.avail, drv.ring.at.used);
        q->set_event_idx(event_idx);
        q->resume(base);
    }
    // A backend stops and another continues from where it stopped.
    void restart() {
        TRACE("restart\n");
        open_queue(q->last_avail());
    }

    // Whether a frame can be made of the chain: only device-readable parts,
    // a header and at most the largest frame, no more pieces than writev takes.
    static bool sendable(const Posted& p) {
        return !p.writable && p.readable > net::kHeaderLen && p.readable <= net::kMaxFrame && p.segs.size() <= IOV_MAX;
    }

    Work run(unsigned budget) {
        std::string why;
        Work w = net_tx(*q, ram(), port.fd(0), *st, budget, why, header);
        TRACE("run %u: %d %s (packets %llu errors %llu)\n", budget, int(w), why.c_str(),
              (unsigned long long)st->packets, (unsigned long long)st->errors);
        CHECK((w == Work::Broken) == !why.empty());
        auto frames = SocketPort::drain(port.peer(0));
        if (!strict()) {
            if (w == Work::Broken) start();
            return w;
        }
        uint16_t now = drv.ring.used_idx();
        uint16_t n = static_cast<uint16_t>(now - drv.ring.used_seen);
        CHECK(n <= budget && n <= drv.out.size());
        if (w == Work::More) CHECK(n == budget);
        size_t got = 0;
        for (uint16_t k = 0; k < n; k++) {
            auto [id, len] = drv.ring.used_elem(static_cast<uint16_t>(drv.ring.used_seen + k));
            CHECK(drv.out.count(id) && len == 0);
            CHECK(!drv.out.at(id).walk_fails);
            // The device only reads: the bytes are still the driver's.
            size_t at = 0;
            for (const Segment& s : drv.out.at(id).segs) {
                const auto& content = drv.out.at(id).content;
                if (s.device_writable || content.empty()) continue;
                CHECK(!std::memcmp(ram().ptr(s.gpa, s.len), &content[at], s.len));
                at += s.len;
            }
            Posted p = drv.give_back(static_cast<uint16_t>(id));  // checks the order and around the buffers
            if (!sendable(p)) {
                errors++;
                continue;
            }
            std::vector<uint8_t> want(p.content.begin() + (header ? 0 : net::kHeaderLen), p.content.end());
            if (got < frames.size() && frames[got] == want) {
                got++;
                packets++;
                bytes += p.readable - net::kHeaderLen;
            } else {
                errors++;  // the port had no room: dropped, and counted
            }
        }
        drv.ring.used_seen = now;
        CHECK(got == frames.size());  // every frame at the port is one the driver posted, in order
        CHECK(st->packets == packets && st->errors == errors && st->bytes == bytes);
        if (w == Work::Idle) CHECK(drv.out.empty());
        if (w == Work::Broken) {
            CHECK(!drv.order.empty() && drv.out.at(drv.order.front()).walk_fails);
            start();
        }
        return w;
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    Tx t(in, in.ConsumeBool());
    t.start();
    for (int op = 0; op < 300 && in.remaining_bytes(); op++) {
        switch (in.ConsumeIntegralInRange(0, 15)) {
            case 0: case 1: case 2: case 3: case 4: case 5: t.drv.post(++t.seed); break;
            case 6: case 7: case 8:
                t.run(in.ConsumeBool() ? in.ConsumeIntegralInRange(1, 4) : in.ConsumeIntegralInRange(1, 256));
                break;
            case 9: t.restart(); break;
            case 10: t.q->enable_notify(); break;
            case 11: t.q->disable_notify(); break;
            case 12: t.q->need_interrupt(); break;
            case 13: t.start(); break;
            default:
                if (!t.strict()) t.drv.misbehave();
                break;
        }
    }
    if (t.strict()) {
        // Everything posted goes out (or breaks the queue) once the device runs.
        for (int round = 0; round < 8 && !t.drv.out.empty(); round++)
            if (t.run(256) == Work::Idle) break;
        CHECK(t.drv.out.empty());
        t.drv.check_all_slack();
    }
    return 0;
}
