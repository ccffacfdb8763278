// The split virtqueue against a simulated guest driver writing rings into
// plain guest memory, including drivers that break the rules.
#include "tests/unit/ring_writer.hpp"
#include "virtio/virtqueue.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "vmm/guest_memory.hpp"

using namespace minivmm;

namespace {
constexpr uint16_t kSize = 8;
constexpr uint64_t kDesc = 0x10000, kAvail = 0x11000, kUsed = 0x12000, kBuf = 0x20000;

struct Driver {
    GuestMemory mem{64ull << 20};
    SplitQueue q{mem, kSize, kDesc, kAvail, kUsed};
    uint16_t avail_idx = 0;

    void desc(uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
        minivmm::testing::write_desc(mem, table, i, addr, len, flags, next);
    }
    void offer(uint16_t head) { avail_idx = minivmm::testing::offer(mem, kAvail, kSize, avail_idx, head); }
    SplitQueue::Pop pop(Chain& c) {
        std::string why;
        auto r = q.pop(c, why);
        last_why = why;
        return r;
    }
    std::string last_why;
};
}  // namespace

TEST(SplitQueue, EmptyThenAReadableWritableChain) {
    Driver d;
    Chain c;
    EXPECT_EQ(d.pop(c), SplitQueue::Pop::Empty);
    d.desc(kDesc, 0, kBuf, 12, 1, 1);            // readable, NEXT
    d.desc(kDesc, 1, kBuf + 4096, 1500, 2, 0);   // writable
    d.offer(0);
    ASSERT_EQ(d.pop(c), SplitQueue::Pop::Ok) << d.last_why;
    EXPECT_EQ(c.head, 0);
    ASSERT_EQ(c.segs.size(), 2u);
    EXPECT_EQ(c.readable_bytes, 12u);
    EXPECT_EQ(c.writable_bytes, 1500u);
    EXPECT_EQ(d.pop(c), SplitQueue::Pop::Empty);
    ASSERT_TRUE(d.q.push_used(0, 1500));
    uint16_t used_idx;
    uint32_t id, len;
    std::memcpy(&used_idx, d.mem.ptr(kUsed + 2, 2), 2);
    std::memcpy(&id, d.mem.ptr(kUsed + 4, 4), 4);
    std::memcpy(&len, d.mem.ptr(kUsed + 8, 4), 4);
    EXPECT_EQ(used_idx, 1);
    EXPECT_EQ(id, 0u);
    EXPECT_EQ(len, 1500u);
    EXPECT_FALSE(d.q.push_used(kSize, 0));  // head index out of range
}

TEST(SplitQueue, IndirectTable) {
    Driver d;
    const uint64_t table = 0x30000;
    d.desc(table, 0, kBuf, 10, 1, 1);
    d.desc(table, 1, kBuf + 100, 20, 2, 0);
    d.desc(kDesc, 3, table, 32, 4, 0);
    d.offer(3);
    Chain c;
    ASSERT_EQ(d.pop(c), SplitQueue::Pop::Ok) << d.last_why;
    EXPECT_EQ(c.head, 3);
    EXPECT_EQ(c.segs.size(), 2u);
}

struct Malicious : ::testing::TestWithParam<int> {};

TEST_P(Malicious, IsBrokenNotFollowed) {
    Driver d;
    const uint64_t table = 0x30000;
    switch (GetParam()) {
        case 0:  // loop: 0 -> 1 -> 0
            d.desc(kDesc, 0, kBuf, 10, 1, 1);
            d.desc(kDesc, 1, kBuf, 10, 1, 0);
            d.offer(0);
            break;
        case 1:  // next index beyond the table
            d.desc(kDesc, 0, kBuf, 10, 1, 200);
            d.offer(0);
            break;
        case 2:  // head index beyond the table
            d.offer(kSize + 1);
            break;
        case 3:  // avail index jumps by more than the queue size
            d.avail_idx = kSize + 5;
            d.offer(0);
            break;
        case 4:  // buffer outside guest memory
            d.desc(kDesc, 0, 0x7fff0000000ull, 10, 0, 0);
            d.offer(0);
            break;
        case 5:  // buffer straddling the end of RAM
            d.desc(kDesc, 0, (64ull << 20) - 8, 16, 0, 0);
            d.offer(0);
            break;
        case 6:  // zero-length buffer
            d.desc(kDesc, 0, kBuf, 0, 0, 0);
            d.offer(0);
            break;
        case 7:  // readable after writable
            d.desc(kDesc, 0, kBuf, 10, 2 | 1, 1);
            d.desc(kDesc, 1, kBuf, 10, 0, 0);
            d.offer(0);
            break;
        case 8:  // nested indirect
            d.desc(table, 0, table, 16, 4, 0);
            d.desc(kDesc, 0, table, 16, 4, 0);
            d.offer(0);
            break;
        case 9:  // indirect with NEXT
            d.desc(table, 0, kBuf, 10, 0, 0);
            d.desc(kDesc, 0, table, 16, 4 | 1, 1);
            d.offer(0);
            break;
        case 10:  // indirect length not a multiple of 16
            d.desc(kDesc, 0, table, 20, 4, 0);
            d.offer(0);
            break;
        case 11:  // loop inside an indirect table
            d.desc(table, 0, kBuf, 10, 1, 1);
            d.desc(table, 1, kBuf, 10, 1, 0);
            d.desc(kDesc, 0, table, 32, 4, 0);
            d.offer(0);
            break;
        case 12:  // length wraps the address space
            d.desc(kDesc, 0, UINT64_MAX - 4, 100, 0, 0);
            d.offer(0);
            break;
    }
    Chain c;
    EXPECT_EQ(d.pop(c), SplitQueue::Pop::Broken);
    EXPECT_FALSE(d.last_why.empty());
}

INSTANTIATE_TEST_SUITE_P(Chains, Malicious, ::testing::Range(0, 13));

TEST(SplitQueue, RingsMustLieInRamAndBeAligned) {
    GuestMemory mem(64ull << 20);
    EXPECT_TRUE(SplitQueue(mem, 256, 0x10000, 0x11000, 0x12000).valid());
    EXPECT_FALSE(SplitQueue(mem, 256, 0x10008, 0x11000, 0x12000).valid());   // desc misaligned
    EXPECT_FALSE(SplitQueue(mem, 256, 0x10000, 0x11000, 0x12002).valid());   // used misaligned
    EXPECT_FALSE(SplitQueue(mem, 100, 0x10000, 0x11000, 0x12000).valid());   // not a power of 2
    EXPECT_FALSE(SplitQueue(mem, 256, (64ull << 20) - 16, 0x11000, 0x12000).valid());  // past RAM
    Chain c;
    std::string why;
    SplitQueue bad(mem, 0, 0, 0, 0);
    EXPECT_EQ(bad.pop(c, why), SplitQueue::Pop::Broken);
}
