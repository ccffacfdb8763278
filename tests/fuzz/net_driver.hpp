// Shared by fuzz_net_rx and fuzz_net_tx: a driver posting chains of every
// shape the input asks for on one split ring, and keeping track of each
// chain it handed the device until the device gives it back.
//
// Guest RAM is two regions with unmapped guest-physical space (and poisoned
// host memory) between and around them: the rings and indirect tables in
// the low one, buffers in the high one.
//
// A strict driver keeps to the ownership rules: it never rewrites what the
// device holds, and buffers in flight never overlap. Its chains may still
// have any shape, bad ones included (device-readable parts in a receive
// chain, zero lengths, more buffers than a chain may have), so the checks
// can demand exactly what the device must do with each. A wild driver also
// scribbles anywhere and lies about everything; then only memory safety,
// termination and the ring's own bounds are checked.
#pragma once
#include <climits>
#include <deque>
#include <map>
#include <optional>

#include "tests/fuzz/fuzz_support.hpp"
#include "virtio/net_datapath.hpp"
#include "virtio/virtqueue.hpp"

namespace minivmm::fuzz {

constexpr uint64_t kLow = 0, kLowSize = 256 * 1024, kHigh = 1ull << 20, kHighSize = 1ull << 20;
// Ring parts a page each (queues of up to 256 entries), tables after them.
constexpr uint64_t kDescAt = 0, kAvailAt = 0x1000, kUsedAt = 0x2000, kTablesAt = 0x4000;
// Bytes around every buffer that the device must leave alone.
constexpr uint64_t kSlack = 64;

inline FuzzRam& ram() {
    static FuzzRam* r = new FuzzRam({{kLow, kLowSize}, {kHigh, kHighSize}});
    return *r;
}

struct Posted {
    std::vector<Segment> segs;  // the buffers, as the device must see them
    uint64_t readable = 0, writable = 0;
    bool walk_fails = false;  // the ring walker must refuse it
    std::vector<uint16_t> descs;  // main-table entries it occupies
    std::vector<std::pair<uint64_t, uint64_t>> runs;  // high pages (gpa, count)
    uint64_t table = 0, table_pages = 0;  // its indirect table, low pages
    std::vector<uint8_t> content;  // the readable bytes, in order
};

class ChainDriver {
public:
    ChainDriver(FuzzedDataProvider& in, bool strict, bool rx)
        : in_(in), strict_(strict), rx_(rx), low_(kTablesAt, (kLowSize - kTablesAt) / kPage),
          high_(kHigh, kHighSize / kPage) {}

    GuestRing ring;
    std::map<uint16_t, Posted> out;  // by head: handed to the device, not yet back
    std::deque<uint16_t> order;      // their heads as offered: the order they come back in

    bool strict() const { return strict_; }
    bool wild() { return !strict_ && in_.ConsumeIntegralInRange(0, 7) == 0; }

    // A new ring for a reset device: RAM cleared, nothing in flight.
    void reset(uint16_t size) {
        ram().clear();
        low_.clear();
        high_.clear();
        out.clear();
        order.clear();
        busy_.assign(size, false);
        ring = GuestRing(ram(), size, {kDescAt, kAvailAt, kUsedAt});
        if (!strict_)
            for (uint64_t* at : {&ring.at.desc, &ring.at.avail, &ring.at.used})
                if (wild()) *at = place();
    }

    // Some chain, offered to the device; false when nothing was posted.
    bool post(uint32_t seed) {
        Posted p;
        unsigned kind = in_.ConsumeIntegralInRange(0, 11);
        bool ok;
        if (kind <= 6)
            ok = direct(p, in_.ConsumeIntegralInRange<unsigned>(1, kind < 5 ? 4 : 17));
        else if (kind <= 8)
            ok = indirect(p, in_.ConsumeIntegralInRange<unsigned>(1, 40), false);
        else if (kind == 9)  // around the per-chain limit, which is also IOV_MAX
            ok = indirect(p, in_.ConsumeIntegralInRange<unsigned>(SplitQueue::kMaxChainSegments - 3,
                                                                  SplitQueue::kMaxChainSegments + 2), true);
        else  // one buffer around the largest frame
            ok = direct(p, 1, in_.ConsumeIntegralInRange<uint32_t>(net::kMaxFrame - 16, net::kMaxFrame + 16));
        if (!ok) return false;
        fill(p, seed);
        uint16_t head = p.descs.front();
        if (!strict_ && wild()) head = in_.ConsumeIntegral<uint16_t>();
        TRACE("post %u: %zu segments, %llu readable, %llu writable%s\n", head, p.segs.size(),
              (unsigned long long)p.readable, (unsigned long long)p.writable, p.walk_fails ? " (walk fails)" : "");
        out[head] = std::move(p);
        order.push_back(head);
        ring.offer(head);
        return true;
    }

    // What only a wild driver does.
    void misbehave() {
        switch (in_.ConsumeIntegralInRange(0, 4)) {
            case 0: {  // bytes anywhere in RAM, rings and buffers in flight included
                auto bytes = in_.ConsumeBytes<uint8_t>(in_.ConsumeIntegralInRange(1, 32));
                store(ram(), place(), bytes.data(), bytes.size());
                break;
            }
            case 1:
                write_desc(ram(), ring.at.desc, in_.ConsumeIntegral<uint16_t>() % std::max<uint16_t>(ring.size, 1),
                           place(), in_.ConsumeIntegral<uint32_t>(), in_.ConsumeIntegral<uint16_t>(),
                           in_.ConsumeIntegral<uint16_t>());
                break;
            case 2:  // entries published that were never written, or taken back
                ring.avail_idx = static_cast<uint16_t>(ring.avail_idx + in_.ConsumeIntegralInRange(-4, 40));
                ring.publish();
                break;
            case 3: ring.offer(in_.ConsumeIntegral<uint16_t>()); break;
            case 4: put<uint16_t>(ram(), ring.at.used + 2, in_.ConsumeIntegral<uint16_t>()); break;
        }
    }

    // The device gave the chain back: its pages and descriptors are free
    // again, and nothing around its buffers may have changed.
    Posted give_back(uint16_t head) {
        if (strict_) {
            CHECK(!order.empty() && order.front() == head);
            order.pop_front();
        }
        Posted p = std::move(out.at(head));
        out.erase(head);
        if (strict_) check_slack(p);
        for (auto [gpa, n] : p.runs) {
            std::memset(ram().ptr(gpa, n * kPage), 0, n * kPage);
            high_.give(gpa, n);
        }
        if (p.table_pages) {
            std::memset(ram().ptr(p.table, p.table_pages * kPage), 0, p.table_pages * kPage);
            low_.give(p.table, p.table_pages);
        }
        for (uint16_t d : p.descs)
            if (d < busy_.size()) busy_[d] = false;
        return p;
    }
    // The first len bytes of a chain's buffers, as the device wrote them.
    static std::vector<uint8_t> written(const Posted& p, uint64_t len) {
        std::vector<uint8_t> b;
        for (const Segment& s : p.segs) {
            if (b.size() == len) break;
            if (!s.device_writable) continue;
            uint64_t n = std::min<uint64_t>(s.len, len - b.size());
            const uint8_t* src = ram().ptr(s.gpa, n);
            b.insert(b.end(), src, src + n);
        }
        return b;
    }
    // For each chain in flight, what is around its buffers.
    void check_all_slack() {
        for (auto& [head, p] : out) check_slack(p);
    }
    // Whether a chain of at least `bytes` could be posted now (for draining).
    bool room_for(uint64_t bytes) const {
        unsigned free_descs = static_cast<unsigned>(std::count(busy_.begin(), busy_.end(), false));
        return free_descs >= 1 && high_.free_run() * kPage >= bytes + 2 * kSlack;
    }
    // A chain the input does not choose: one buffer of len bytes.
    bool post_plain(uint32_t len, uint32_t seed) {
        Posted p;
        if (!direct(p, 1, len)) return false;
        fill(p, seed);
        uint16_t head = p.descs.front();
        TRACE("post %u: one buffer of %u bytes\n", head, len);
        out[head] = std::move(p);
        order.push_back(head);
        ring.offer(head);
        return true;
    }

private:
    // Somewhere to aim a wild address: inside a region, across its ends, in
    // the hole between, or anything at all.
    uint64_t place() {
        switch (in_.ConsumeIntegralInRange(0, 5)) {
            case 0: return in_.ConsumeIntegral<uint64_t>();
            case 1: return kLowSize - in_.ConsumeIntegralInRange<uint64_t>(0, 64);
            case 2: return kHigh - in_.ConsumeIntegralInRange<uint64_t>(0, 64);
            case 3: return kHigh + kHighSize - in_.ConsumeIntegralInRange<uint64_t>(0, 64);
            case 4: return in_.ConsumeIntegralInRange<uint64_t>(0, kLowSize - 1);
            default: return kHigh + in_.ConsumeIntegralInRange<uint64_t>(0, kHighSize - 1);
        }
    }
    uint32_t seg_len() {
        switch (in_.ConsumeIntegralInRange(0, 7)) {
            case 0: return in_.ConsumeIntegralInRange<uint32_t>(1, 16);
            case 1:
            case 2: return in_.ConsumeIntegralInRange<uint32_t>(17, 1600);
            case 3: return in_.PickValueInArray<uint32_t>({12, 1514, 1526, 1536, 2048, 4096});
            case 4: return in_.ConsumeIntegralInRange<uint32_t>(4097, 20000);
            default: return in_.ConsumeIntegralInRange<uint32_t>(1, 4096);
        }
    }
    // Flags for segment k of n: what the ring direction wants, and in a few
    // chains one segment the other way round.
    uint16_t seg_flags(unsigned k, unsigned n, int flipped) {
        bool w = rx_;
        if (static_cast<int>(k) == flipped) w = !w;
        return static_cast<uint16_t>((w ? kWrite : 0) | (k + 1 < n ? kNext : 0));
    }
    int pick_flipped(unsigned n) { return in_.ConsumeIntegralInRange(0, 9) == 0 ? in_.ConsumeIntegralInRange<int>(0, n - 1) : -1; }

    // A buffer of len bytes in pages of its own, kSlack or more from its neighbours.
    std::optional<uint64_t> buffer(Posted& p, uint32_t len) {
        uint64_t lead = kSlack + in_.ConsumeIntegralInRange<uint64_t>(0, 63);
        uint64_t n = (lead + len + kSlack + kPage - 1) / kPage;
        uint64_t at = high_.take(n);
        if (!at) return std::nullopt;
        p.runs.push_back({at, n});
        return at + lead;
    }
    bool direct(Posted& p, unsigned n, uint32_t fixed_len = 0) {
        n = std::min<unsigned>(n, ring.size);
        std::vector<uint16_t> idx;
        uint16_t start = ring.size ? in_.ConsumeIntegral<uint16_t>() % ring.size : 0;
        for (uint32_t i = 0; i < ring.size && idx.size() < n; i++) {
            auto d = static_cast<uint16_t>((start + i) % ring.size);
            if (!busy_[d]) idx.push_back(d);
        }
        if (idx.size() < n || n == 0) return false;
        int flipped = pick_flipped(n);
        for (unsigned k = 0; k < n; k++) {
            uint32_t len = fixed_len ? fixed_len : seg_len();
            bool zero = strict_ && in_.ConsumeIntegralInRange(0, 63) == 0;
            auto at = buffer(p, len);
            if (!at) return undo(p), false;
            uint64_t addr = *at;
            uint32_t dlen = zero ? 0 : len;
            if (wild()) addr = place();
            if (wild()) dlen = in_.ConsumeIntegral<uint32_t>();
            uint16_t flags = seg_flags(k, n, flipped);
            if (wild()) flags = in_.ConsumeIntegral<uint16_t>();
            uint16_t next = k + 1 < n ? idx[k + 1] : 0;
            write_desc(ram(), ring.at.desc, idx[k], addr, dlen, flags, next);
            add(p, addr, dlen, flags);
        }
        for (uint16_t d : idx) busy_[d] = true;
        p.descs = idx;
        return true;
    }
    // n buffers in an indirect table; with tiny, many small buffers in one run
    // of pages (so that a chain can have a thousand of them).
    bool indirect(Posted& p, unsigned n, bool tiny) {
        uint16_t d = 0;
        if (!free_desc(d)) return false;
        uint64_t pages = (16ull * n + kPage - 1) / kPage;
        uint64_t table = low_.take(pages);
        if (!table) return false;
        p.table = table, p.table_pages = pages;
        int flipped = pick_flipped(n);
        uint64_t next_at = 0, run_end = 0;
        uint32_t tiny_len = in_.ConsumeIntegralInRange<uint32_t>(1, 80);
        for (unsigned k = 0; k < n; k++) {
            uint32_t len = tiny ? tiny_len : seg_len();
            uint64_t addr;
            if (tiny) {
                if (next_at + len + kSlack > run_end) {
                    auto at = buffer(p, 32 * (len + kSlack));
                    if (!at) return undo(p), false;
                    next_at = *at;
                    run_end = p.runs.back().first + p.runs.back().second * kPage;
                }
                addr = next_at;
                next_at += len + kSlack;
            } else {
                auto at = buffer(p, len);
                if (!at) return undo(p), false;
                addr = *at;
            }
            uint16_t flags = seg_flags(k, n, flipped);
            if (wild()) flags = in_.ConsumeIntegral<uint16_t>();
            write_desc(ram(), table, k, addr, len, flags, static_cast<uint16_t>(k + 1));
            add(p, addr, len, flags);
        }
        uint32_t tlen = 16 * n;
        if (wild()) tlen = in_.ConsumeIntegral<uint32_t>();
        write_desc(ram(), ring.at.desc, d, wild() ? place() : table, tlen, kIndirect, 0);
        busy_[d] = true;
        p.descs = {d};
        // The walker stops at the first entry without NEXT: here the last.
        if (n > SplitQueue::kMaxChainSegments) p.walk_fails = true;
        return true;
    }
    bool free_desc(uint16_t& d) {
        if (!ring.size) return false;
        uint16_t start = in_.ConsumeIntegral<uint16_t>() % ring.size;
        for (uint32_t i = 0; i < ring.size; i++) {
            d = static_cast<uint16_t>((start + i) % ring.size);
            if (!busy_[d]) return true;
        }
        return false;
    }
    void undo(Posted& p) {
        for (auto [gpa, n] : p.runs) high_.give(gpa, n);
        if (p.table_pages) low_.give(p.table, p.table_pages);
        p = Posted{};
    }
    void add(Posted& p, uint64_t addr, uint32_t len, uint16_t flags) {
        bool w = flags & kWrite;
        if (len == 0 || (!w && p.writable)) p.walk_fails = true;
        (w ? p.writable : p.readable) += len;
        p.segs.push_back({addr, len, w});
        TRACE("  segment %#llx + %u%s\n", (unsigned long long)addr, len, w ? " writable" : "");
    }
    // The readable bytes get content the device must send as it is.
    void fill(Posted& p, uint32_t seed) {
        if (p.readable > 2 * net::kMaxFrame) return;  // too big to be sent: no content needed
        p.content = make_frame(p.readable, seed);
        uint64_t at = 0;
        for (const Segment& s : p.segs)
            if (!s.device_writable && s.len) {
                store(ram(), s.gpa, p.content.data() + at, s.len);
                at += s.len;
            }
    }
    // The bytes of the chain's pages outside its buffers are still zero.
    static void check_slack(const Posted& p) {
        std::vector<std::pair<uint64_t, uint64_t>> segs, runs(p.runs);
        for (const Segment& s : p.segs) segs.push_back({s.gpa, s.gpa + s.len});
        // Usually in order already (a sort under coverage instrumentation is slow).
        if (!std::is_sorted(segs.begin(), segs.end())) std::sort(segs.begin(), segs.end());
        if (!std::is_sorted(runs.begin(), runs.end())) std::sort(runs.begin(), runs.end());
        size_t k = 0;
        for (auto [gpa, pages] : runs) {
            uint64_t end = gpa + pages * kPage, at = gpa;
            const uint8_t* base = ram().ptr(gpa, pages * kPage);
            while (k < segs.size() && segs[k].second <= gpa) k++;
            for (; k < segs.size() && segs[k].first < end; k++) {
                if (segs[k].first > at) CHECK(all_zero(base + (at - gpa), segs[k].first - at));
                at = std::max(at, segs[k].second);
            }
            if (end > at) CHECK(all_zero(base + (at - gpa), end - at));
        }
    }

    FuzzedDataProvider& in_;
    bool strict_, rx_;
    PagePool low_, high_;
    std::vector<bool> busy_;
};

}  // namespace minivmm::fuzz
