// The vhost dirty log's bounds: which writes it can hold, and that marking
// one never touches memory outside the bitmap or walks pages it does not
// have (a zero-length write, one wrapping the address space).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "vhost/dirty_log.hpp"

using namespace minivmm;

namespace {
// A bitmap of `bytes` bytes with guard bytes on both sides, which must stay 0.
struct Bitmap {
    explicit Bitmap(size_t bytes) : buf(bytes + 2 * kGuard) {}
    static constexpr size_t kGuard = 64;
    std::vector<uint8_t> buf;
    DirtyLog log() { return DirtyLog(buf.data() + kGuard, buf.size() - 2 * kGuard); }
    bool dirty(uint64_t page) const { return buf[kGuard + page / 8] & (1u << (page % 8)); }
    size_t marked() const {
        size_t n = 0;
        for (uint8_t b : buf) n += __builtin_popcount(b);
        return n;
    }
};
}  // namespace

TEST(DirtyLog, AnEmptyWriteMarksNoPage) {
    Bitmap b(2);
    EXPECT_TRUE(b.log().mark(0, 0));
    EXPECT_TRUE(b.log().mark(0x5000, 0));
    EXPECT_EQ(b.marked(), 0u);
}

TEST(DirtyLog, MarksEveryPageAWriteTouches) {
    Bitmap b(2);  // 16 pages: 64 KiB of guest memory
    EXPECT_TRUE(b.log().mark(0x1ff8, 0x10));  // pages 1 and 2
    EXPECT_TRUE(b.log().mark(0xf000, 0x1000));  // the last page
    EXPECT_TRUE(b.dirty(1) && b.dirty(2) && b.dirty(15));
    EXPECT_EQ(b.marked(), 3u);
}

TEST(DirtyLog, WritesBeyondTheLogAreRefusedAndMarkNothing) {
    Bitmap b(2);
    EXPECT_FALSE(b.log().covers(0xf000, 0x1001));
    EXPECT_FALSE(b.log().mark(0xf000, 0x1001));  // the last page and one past it
    EXPECT_FALSE(b.log().mark(0x10000, 1));
    EXPECT_FALSE(b.log().mark(1ull << 62, 4096));
    EXPECT_EQ(b.marked(), 0u);
}

TEST(DirtyLog, WritesWrappingTheAddressSpaceAreRefused) {
    Bitmap b(2);
    EXPECT_FALSE(b.log().covers(UINT64_MAX - 10, 100));
    EXPECT_FALSE(b.log().mark(UINT64_MAX - 10, 100));
    EXPECT_FALSE(b.log().mark(0x1000, UINT64_MAX));
    // So large a log that the page arithmetic itself could overflow.
    EXPECT_FALSE(DirtyLog(b.buf.data(), UINT64_MAX).mark(UINT64_MAX - 10, 100));
    EXPECT_EQ(b.marked(), 0u);
}

TEST(DirtyLog, CoversAMemoryTableOnlyWhole) {
    Bitmap b(2);
    EXPECT_TRUE(b.log().covers(std::vector<VhostRegion>{{0, 0x8000, 0}, {0x8000, 0x8000, 0}}));
    EXPECT_FALSE(b.log().covers(std::vector<VhostRegion>{{0, 0x8000, 0}, {0x8000, 0x8001, 0}}));
    EXPECT_TRUE(DirtyLog().covers(std::vector<VhostRegion>{}));
}
