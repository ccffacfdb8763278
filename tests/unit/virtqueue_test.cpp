// The split virtqueue against a simulated guest driver writing rings into
// plain guest memory, including drivers that break the rules.
#include "virtio/virtqueue.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "tests/unit/queue_rig.hpp"
#include "vmm/guest_memory.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
constexpr uint16_t kSize = 8;
constexpr uint64_t kBuf = QueueRig::kBuf, kTable = 0x30000;
constexpr uint64_t kRam = 64ull << 20;

struct Driver : QueueRig {
    Driver() : QueueRig(kSize, kRam) {}
};
}  // namespace

TEST(SplitQueue, EmptyThenAReadableWritableChain) {
    Driver d;
    Chain c;
    EXPECT_EQ(d.pop(c), SplitQueue::Pop::Empty);
    d.driver.desc(0, kBuf, 12, kNext, 1);
    d.driver.desc(1, kBuf + 4096, 1500, kWrite);
    d.driver.offer(0);
    ASSERT_EQ(d.pop(c), SplitQueue::Pop::Ok) << d.why;
    EXPECT_EQ(c.head, 0);
    ASSERT_EQ(c.segs.size(), 2u);
    EXPECT_EQ(c.readable_bytes, 12u);
    EXPECT_EQ(c.writable_bytes, 1500u);
    EXPECT_EQ(d.pop(c), SplitQueue::Pop::Empty);
    ASSERT_TRUE(d.q.push_used(0, 1500));
    EXPECT_EQ(d.driver.used_idx(), 1);
    EXPECT_EQ(d.driver.used_elem(0), UsedElem(0, 1500));
    EXPECT_FALSE(d.q.push_used(kSize, 0));  // head index out of range
}

TEST(SplitQueue, IndirectTable) {
    Driver d;
    write_desc(d.mem, kTable, 0, kBuf, 10, kNext, 1);
    write_desc(d.mem, kTable, 1, kBuf + 100, 20, kWrite);
    d.driver.desc(3, kTable, 32, kIndirect);
    d.driver.offer(3);
    Chain c;
    ASSERT_EQ(d.pop(c), SplitQueue::Pop::Ok) << d.why;
    EXPECT_EQ(c.head, 3);
    EXPECT_EQ(c.segs.size(), 2u);
}

namespace {
// A driver's rule-breaking chain, offered: its name says which rule.
struct BadChain {
    const char* name;
    std::function<void(Driver&)> make;
};
void PrintTo(const BadChain& b, std::ostream* os) { *os << b.name; }

const BadChain kBadChains[] = {
    {"DescriptorLoop",
     [](Driver& d) {
         d.driver.desc(0, kBuf, 10, kNext, 1);
         d.driver.desc(1, kBuf, 10, kNext, 0);
         d.driver.offer(0);
     }},
    {"NextBeyondTheTable",
     [](Driver& d) {
         d.driver.desc(0, kBuf, 10, kNext, 200);
         d.driver.offer(0);
     }},
    {"HeadBeyondTheTable", [](Driver& d) { d.driver.offer(kSize + 1); }},
    {"AvailIndexJumpsPastTheQueueSize",
     [](Driver& d) {
         d.driver.avail_idx = kSize + 5;
         d.driver.offer(0);
     }},
    {"BufferOutsideGuestMemory",
     [](Driver& d) {
         d.driver.desc(0, 0x7fff0000000ull, 10, 0);
         d.driver.offer(0);
     }},
    {"BufferStraddlingTheEndOfRam",
     [](Driver& d) {
         d.driver.desc(0, kRam - 8, 16, 0);
         d.driver.offer(0);
     }},
    {"ZeroLengthBuffer",
     [](Driver& d) {
         d.driver.desc(0, kBuf, 0, 0);
         d.driver.offer(0);
     }},
    {"ReadableAfterWritable",
     [](Driver& d) {
         d.driver.desc(0, kBuf, 10, kWrite | kNext, 1);
         d.driver.desc(1, kBuf, 10, 0);
         d.driver.offer(0);
     }},
    {"NestedIndirectTable",
     [](Driver& d) {
         write_desc(d.mem, kTable, 0, kTable, 16, kIndirect);
         d.driver.desc(0, kTable, 16, kIndirect);
         d.driver.offer(0);
     }},
    {"IndirectWithNext",
     [](Driver& d) {
         write_desc(d.mem, kTable, 0, kBuf, 10, 0);
         d.driver.desc(0, kTable, 16, kIndirect | kNext, 1);
         d.driver.offer(0);
     }},
    {"IndirectLengthNotAMultipleOf16",
     [](Driver& d) {
         d.driver.desc(0, kTable, 20, kIndirect);
         d.driver.offer(0);
     }},
    {"LoopInsideAnIndirectTable",
     [](Driver& d) {
         write_desc(d.mem, kTable, 0, kBuf, 10, kNext, 1);
         write_desc(d.mem, kTable, 1, kBuf, 10, kNext, 0);
         d.driver.desc(0, kTable, 32, kIndirect);
         d.driver.offer(0);
     }},
    {"LengthWrapsTheAddressSpace",
     [](Driver& d) {
         d.driver.desc(0, UINT64_MAX - 4, 100, 0);
         d.driver.offer(0);
     }},
};
struct MaliciousChain : ::testing::TestWithParam<BadChain> {};
}  // namespace

TEST_P(MaliciousChain, IsBrokenNotFollowed) {
    Driver d;
    GetParam().make(d);
    Chain c;
    EXPECT_EQ(d.pop(c), SplitQueue::Pop::Broken);
    EXPECT_FALSE(d.why.empty());
}

INSTANTIATE_TEST_SUITE_P(SplitQueue, MaliciousChain, ::testing::ValuesIn(kBadChains),
                         [](const ::testing::TestParamInfo<BadChain>& i) { return std::string(i.param.name); });

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
