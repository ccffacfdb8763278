// libFuzzer target: a hostile driver against SplitQueue. The input places the
// rings, writes descriptors, ring entries and indices into guest RAM, and
// interleaves that with the device's pops, pushes and notification calls.
// Nothing may crash, and every buffer a popped chain names must lie in RAM.
#include <fuzzer/FuzzedDataProvider.h>
#include <sys/mman.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_check.hpp"
#include "tests/support/guest_ring.hpp"
#include "virtio/virtqueue.hpp"
#include "vmm/guest_memory.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
// Rings in the low MiB (the largest queue's fit), buffers and indirect
// tables in the high one; small enough to clear for every input.
constexpr uint64_t kRam = 2ull << 20, kBufs = 1ull << 20, kPage = 4096;


// ASan does not watch mmap'd guest RAM, so an access escaping GuestMemory's
// checks would go unnoticed; inaccessible pages either side make it fault.
GuestMemory& ram() {
    static GuestMemory* mem = [] {
        auto* m = new GuestMemory(kRam);
        uint8_t* base = m->regions()[0].hva;
        for (uint8_t* at : {base - kPage, base + kRam}) {
            void* p = mmap(at, kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
            if (p != MAP_FAILED && p != at) munmap(p, kPage);  // old kernel: took it as a hint
        }
        return m;
    }();
    return *mem;
}

// The driver's view: mostly plausible values, so chains get walked, with
// every field sometimes replaced by anything at all.
struct Driver {
    FuzzedDataProvider& in;
    GuestRing ring;

    bool wild() { return in.ConsumeIntegralInRange(0, 15) == 0; }
    uint64_t buffer() {
        return wild() ? in.ConsumeIntegral<uint64_t>() : kBufs + in.ConsumeIntegralInRange<uint64_t>(0, kBufs);
    }
    uint32_t length() { return wild() ? in.ConsumeIntegral<uint32_t>() : in.ConsumeIntegralInRange(0, 4096); }
    uint16_t index() {
        return wild() || !ring.size ? in.ConsumeIntegral<uint16_t>() : in.ConsumeIntegral<uint16_t>() % ring.size;
    }
    // n descriptors linked i, i+1, ...: readable ones, then writable ones.
    void chain(uint64_t table, uint16_t first, uint16_t n, uint16_t table_size) {
        uint16_t writable_from = in.ConsumeIntegralInRange<uint16_t>(0, n);
        for (uint16_t k = 0; k < n; k++) {
            uint16_t i = static_cast<uint16_t>(table_size ? (first + k) % table_size : first + k);
            uint16_t flags = (k + 1 < n ? kNext : 0) | (k >= writable_from ? kWrite : 0);
            if (wild()) flags = in.ConsumeIntegral<uint16_t>();
            uint16_t next = static_cast<uint16_t>(table_size ? (i + 1) % table_size : i + 1);
            write_desc(ram(), table, i, buffer(), length(), flags, wild() ? in.ConsumeIntegral<uint16_t>() : next);
        }
    }
};

// What a device may rely on for a chain pop() returned.
void check_chain(const Chain& c, uint16_t size) {
    CHECK(c.head < size);
    CHECK(!c.segs.empty() && c.segs.size() <= SplitQueue::kMaxChainSegments);
    uint64_t readable = 0, writable = 0;
    bool seen_writable = false;
    for (const Segment& s : c.segs) {
        CHECK(s.len > 0);
        uint8_t* p = ram().ptr(s.gpa, s.len);
        CHECK(p != nullptr);
        CHECK(!(seen_writable && !s.device_writable));
        seen_writable |= s.device_writable;
        (s.device_writable ? writable : readable) += s.len;
        // Touch both ends, as the device's copy would.
        volatile uint8_t* v = p;
        uint8_t first = v[0], last = v[s.len - 1];
        if (s.device_writable) {
            v[0] = first;
            v[s.len - 1] = last;
        }
    }
    CHECK(readable == c.readable_bytes && writable == c.writable_bytes);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    GuestMemory& mem = ram();
    std::memset(mem.regions()[0].hva, 0, kRam);

    Driver d{in, {}};
    uint8_t shape = in.ConsumeIntegral<uint8_t>();
    uint16_t entries = shape < 0xf0 ? static_cast<uint16_t>(1u << (shape % 16 < 12 ? shape % 9 : shape % 16))
                                    : in.ConsumeIntegral<uint16_t>();
    // The layout a driver would use, each ring sometimes moved anywhere.
    RingLayout at = RingLayout::packed(0, entries);
    for (uint64_t* part : {&at.desc, &at.avail, &at.used})
        if (d.wild()) *part = d.wild() ? in.ConsumeIntegral<uint64_t>() : *part + in.ConsumeIntegralInRange(1, 64);
    d.ring = GuestRing(mem, entries, at);
    SplitQueue q(mem, entries, at.desc, at.avail, at.used);
    if (q.valid())
        CHECK(mem.ptr(at.desc, RingLayout::desc_bytes(entries)) &&
              mem.ptr(at.avail, RingLayout::avail_bytes(entries)) && mem.ptr(at.used, RingLayout::used_bytes(entries)));
    q.set_event_idx(in.ConsumeBool());

    std::vector<uint16_t> heads;  // popped, not yet pushed
    for (int op = 0; op < 256 && in.remaining_bytes(); op++) {
        switch (in.ConsumeIntegralInRange(0, 14)) {
            case 0:
            case 1: {
                Chain c;
                std::string why;
                auto r = q.pop(c, why);
                if (r == SplitQueue::Pop::Ok) {
                    check_chain(c, entries);
                    heads.push_back(c.head);
                }
                CHECK((r == SplitQueue::Pop::Broken) == !why.empty());
                break;
            }
            case 2: {
                bool own = !heads.empty() && !d.wild();
                uint16_t head = own ? heads.back() : in.ConsumeIntegral<uint16_t>();
                if (own) heads.pop_back();
                bool ok = q.push_used(head, d.length());
                CHECK(ok == (q.valid() && head < entries));
                break;
            }
            case 3: q.enable_notify(); break;
            case 4: q.disable_notify(); break;
            case 5: q.need_interrupt(); break;
            case 6: q.unpop(d.wild() ? in.ConsumeIntegral<uint16_t>() : in.ConsumeIntegralInRange(0, 3)); break;
            case 7: {  // a direct chain
                uint16_t head = d.index();
                d.chain(at.desc, head, in.ConsumeIntegralInRange<uint16_t>(1, 6), entries);
                d.ring.offer(head);
                break;
            }
            case 8: {  // a chain in an indirect table
                uint64_t table = kBufs + (in.ConsumeIntegralInRange<uint64_t>(0, kBufs) & ~15ull);
                uint16_t n = in.ConsumeIntegralInRange<uint16_t>(1, 8);
                d.chain(table, 0, n, 0);
                uint16_t head = d.index();
                uint32_t len = d.wild() ? d.length() : 16u * n;
                write_desc(mem, at.desc, head, d.wild() ? d.buffer() : table, len, kIndirect, 0);
                d.ring.offer(head);
                break;
            }
            case 9:
                write_desc(mem, at.desc, d.index(), d.buffer(), d.length(), in.ConsumeIntegral<uint16_t>(), d.index());
                break;
            case 10:  // the driver publishes entries it never wrote, or lies about how many
                d.ring.avail_idx = d.wild() ? in.ConsumeIntegral<uint16_t>()
                                            : static_cast<uint16_t>(d.ring.avail_idx + in.ConsumeIntegralInRange(0, 8));
                d.ring.publish();
                break;
            case 11: d.ring.offer(d.index()); break;
            case 12: {  // raw bytes anywhere in RAM
                uint64_t where = in.ConsumeIntegralInRange<uint64_t>(0, kRam - 1);
                auto bytes = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange(1, 64));
                store(mem, where, bytes.data(), bytes.size());
                break;
            }
            case 13:  // the driver's suppression words: avail flags, used_event
                if (in.ConsumeBool())
                    d.ring.set_avail_flags(in.ConsumeIntegral<uint16_t>());
                else
                    d.ring.set_used_event(in.ConsumeIntegral<uint16_t>());
                break;
            case 14: {  // an indirect table around the per-chain limit, its entries linked in order
                uint32_t n = in.ConsumeIntegralInRange<uint32_t>(SplitQueue::kMaxChainSegments - 4,
                                                                 SplitQueue::kMaxChainSegments + 4);
                uint64_t table = kBufs + (in.ConsumeIntegralInRange<uint64_t>(0, kBufs - 16ull * n) & ~15ull);
                for (uint32_t k = 0; k < n; k++)
                    write_desc(mem, table, k, kBufs, 16, k + 1 < n ? kNext : 0, static_cast<uint16_t>(k + 1));
                uint16_t head = d.index();
                write_desc(mem, at.desc, head, table, 16 * n, kIndirect, 0);
                d.ring.offer(head);
                break;
            }
        }
    }
    return 0;
}
