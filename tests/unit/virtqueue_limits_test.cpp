// The split virtqueue's limits on what a driver may hand the device: how
// long one chain may be, how big an indirect table, and where rings and
// tables may lie when guest RAM is split around the 3-4 GiB MMIO hole.
#include "virtio/virtqueue.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <span>

#include "tests/support/guest_ring.hpp"
#include "vmm/guest_memory.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
// A queue of `size` entries whose rings start at `base`, in `mem`.
struct Ring {
    GuestMemory& mem;
    GuestRing driver;
    uint64_t desc;
    SplitQueue q;
    std::string why;

    Ring(GuestMemory& m, uint64_t base, uint16_t n = 8)
        : mem(m), driver(m, n, RingLayout::packed(base, n)), desc(base),
          q(m, n, driver.at.desc, driver.at.avail, driver.at.used) {}
    void put(uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
        write_desc(mem, table, i, addr, len, flags, next);
    }
    // n readable buffers linked 0, 1, ... in table.
    void linked(uint64_t table, uint32_t n, uint64_t buf) {
        for (uint32_t i = 0; i < n; i++)
            put(table, static_cast<uint16_t>(i), buf, 64, i + 1 < n ? kNext : 0, static_cast<uint16_t>(i + 1));
    }
    SplitQueue::Pop offer_and_pop(uint16_t head, Chain& c) {
        driver.offer(head);
        why.clear();
        return q.pop(c, why);
    }
};

constexpr uint64_t kTable = 0x100000, kBuf = 0x800000;
constexpr uint32_t kCap = SplitQueue::kMaxChainSegments;
}  // namespace

TEST(ChainLimits, IndirectTableOf1024BuffersIsTakenOf1025IsBroken) {
    GuestMemory mem(64ull << 20);
    Ring r(mem, 0x10000);
    r.linked(kTable, kCap, kBuf);
    r.put(r.desc, 0, kTable, 16 * kCap, kIndirect);
    Chain c;
    ASSERT_EQ(r.offer_and_pop(0, c), SplitQueue::Pop::Ok) << r.why;
    EXPECT_EQ(c.segs.size(), kCap);
    r.linked(kTable, kCap + 1, kBuf);
    r.put(r.desc, 1, kTable, 16 * (kCap + 1), kIndirect);
    EXPECT_EQ(r.offer_and_pop(1, c), SplitQueue::Pop::Broken);
    EXPECT_NE(r.why.find("1024"), std::string::npos) << r.why;
}

TEST(ChainLimits, DirectAndIndirectBuffersCountTogether) {
    GuestMemory mem(64ull << 20);
    Ring r(mem, 0x10000);
    // One direct buffer, then an indirect table: 1 + 1023 fits, 1 + 1024 does not.
    r.put(r.desc, 0, kBuf, 64, kNext, 1);
    r.linked(kTable, kCap - 1, kBuf);
    r.put(r.desc, 1, kTable, 16 * (kCap - 1), kIndirect);
    Chain c;
    ASSERT_EQ(r.offer_and_pop(0, c), SplitQueue::Pop::Ok) << r.why;
    EXPECT_EQ(c.segs.size(), kCap);
    r.linked(kTable, kCap, kBuf);
    r.put(r.desc, 1, kTable, 16 * kCap, kIndirect);
    EXPECT_EQ(r.offer_and_pop(0, c), SplitQueue::Pop::Broken);
}

TEST(ChainLimits, DirectChainLongerThan1024IsBroken) {
    GuestMemory mem(64ull << 20);
    Ring r(mem, 0x10000, 2048);
    r.linked(r.desc, kCap + 1, kBuf);
    Chain c;
    EXPECT_EQ(r.offer_and_pop(0, c), SplitQueue::Pop::Broken);
    EXPECT_NE(r.why.find("1024"), std::string::npos) << r.why;
}

TEST(ChainLimits, IndirectTableOfLengthZeroIsBroken) {
    GuestMemory mem(64ull << 20);
    Ring r(mem, 0x10000);
    r.put(r.desc, 0, kTable, 0, kIndirect);
    Chain c;
    EXPECT_EQ(r.offer_and_pop(0, c), SplitQueue::Pop::Broken);
}

namespace {
// A two-entry indirect table at each of places, in a fresh ring: the chain is broken.
void expect_indirect_tables_broken(GuestMemory& mem, std::span<const uint64_t> places) {
    for (uint64_t at : places) {
        Ring r(mem, 0x10000);
        r.put(r.desc, 0, at, 32, kIndirect);
        Chain c;
        EXPECT_EQ(r.offer_and_pop(0, c), SplitQueue::Pop::Broken) << std::hex << at;
    }
}
}  // namespace

TEST(ChainLimits, IndirectTableOutsideRamIsBroken) {
    GuestMemory mem(64ull << 20);
    // Past the end, straddling it, far away, wrapping the address space.
    const uint64_t outside[] = {64ull << 20, (64ull << 20) - 16, 0x7fff'0000'0000ull, UINT64_MAX - 15};
    expect_indirect_tables_broken(mem, outside);
}

TEST(ChainLimits, IndirectTableOfMoreThan32768EntriesIsBroken) {
    GuestMemory mem(64ull << 20);
    Ring r(mem, 0x10000);
    // In RAM and 16-byte aligned: only its length is wrong.
    r.put(r.desc, 0, kTable, 16 * (SplitQueue::kMaxSize + 1u), kIndirect);
    Chain c;
    EXPECT_EQ(r.offer_and_pop(0, c), SplitQueue::Pop::Broken);
}

namespace {
// RAM either side of the hole: [0, 3 GiB) and [4 GiB, 4 GiB + 64 MiB). The
// two regions are adjacent in host memory, so a range checked only at its
// start would run from the top of low RAM into high RAM unnoticed.
constexpr uint64_t kLow = kMmioHoleStart, kHigh = kMmioHoleEnd;
GuestMemory& split_ram() {
    static GuestMemory mem(kMmioHoleStart + (64ull << 20));  // lazily backed
    return mem;
}
}  // namespace

TEST(ChainLimits, RingsStraddlingOrInsideTheMmioHoleAreRefused) {
    GuestMemory& mem = split_ram();
    const uint16_t n = 8;
    const uint64_t ok = 0x10000;
    EXPECT_TRUE(SplitQueue(mem, n, kLow - 16 * n, ok + 0x1000, ok + 0x2000).valid());  // ends at the hole
    EXPECT_FALSE(SplitQueue(mem, n, kLow - 16 * n + 16, ok + 0x1000, ok + 0x2000).valid());  // desc straddles
    EXPECT_FALSE(SplitQueue(mem, n, ok, kLow - 8, ok + 0x2000).valid());                     // avail straddles
    EXPECT_FALSE(SplitQueue(mem, n, ok, ok + 0x1000, kLow - 16).valid());                    // used straddles
    EXPECT_FALSE(SplitQueue(mem, n, kLow, ok + 0x1000, ok + 0x2000).valid());                // desc in the hole
    EXPECT_FALSE(SplitQueue(mem, n, ok, ok + 0x1000, kHigh - 0x1000).valid());               // used in the hole
    EXPECT_TRUE(SplitQueue(mem, n, kHigh, kHigh + 0x1000, kHigh + 0x2000).valid());          // above it
}

TEST(ChainLimits, IndirectTableStraddlingOrInsideTheMmioHoleIsBroken) {
    GuestMemory& mem = split_ram();
    const uint64_t places[] = {kLow - 16, kLow, kHigh - 16};
    expect_indirect_tables_broken(mem, places);
}

TEST(ChainLimits, BufferStraddlingTheMmioHoleIsBroken) {
    GuestMemory& mem = split_ram();
    Ring r(mem, 0x10000);
    r.put(r.desc, 0, kLow - 8, 16, 0);
    Chain c;
    EXPECT_EQ(r.offer_and_pop(0, c), SplitQueue::Pop::Broken);
}

TEST(ChainLimits, RingsTablesAndBuffersAboveTheMmioHoleWork) {
    GuestMemory& mem = split_ram();
    Ring r(mem, kHigh);
    const uint64_t table = kHigh + 0x10000, buf = kHigh + 0x20000;
    r.put(table, 0, buf, 100, kNext, 1);
    r.put(table, 1, kLow - 200, 200, kWrite);  // and a buffer at the top of low RAM
    r.put(r.desc, 3, table, 32, kIndirect);
    Chain c;
    ASSERT_EQ(r.offer_and_pop(3, c), SplitQueue::Pop::Ok) << r.why;
    ASSERT_EQ(c.segs.size(), 2u);
    EXPECT_EQ(c.segs[0].gpa, buf);
    EXPECT_EQ(c.writable_bytes, 200u);
    ASSERT_TRUE(r.q.push_used(c.head, 200));
    EXPECT_EQ(r.driver.used_idx(), 1);
}
