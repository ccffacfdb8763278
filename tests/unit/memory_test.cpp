#include <gtest/gtest.h>

#include "vmm/e820.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/layout.hpp"

using namespace minivmm;

TEST(GuestMemory, LayoutSplitsAroundTheHole) {
    auto small = GuestMemory::layout(512ull << 20);
    ASSERT_EQ(small.size(), 1u);
    EXPECT_EQ(small[0].size, 512ull << 20);
    auto big = GuestMemory::layout(6ull << 30);
    ASSERT_EQ(big.size(), 2u);
    EXPECT_EQ(big[0].gpa + big[0].size, kMmioHoleStart);
    EXPECT_EQ(big[1].gpa, kMmioHoleEnd);
    EXPECT_EQ(big[0].size + big[1].size, 6ull << 30);
}

TEST(GuestMemory, PtrChecksEveryByteOfTheRange) {
    GuestMemory mem(4ull << 30);  // lazily backed: costs nothing until touched
    EXPECT_NE(mem.ptr(0, 4096), nullptr);
    EXPECT_NE(mem.ptr(kMmioHoleStart - 1, 1), nullptr);
    EXPECT_EQ(mem.ptr(kMmioHoleStart - 1, 2), nullptr);  // straddles into the hole
    EXPECT_EQ(mem.ptr(kMmioHoleStart, 1), nullptr);
    EXPECT_NE(mem.ptr(kMmioHoleEnd, 1), nullptr);
    EXPECT_EQ(mem.ptr(kMmioHoleEnd + (1ull << 30), 1), nullptr);  // past the end
    EXPECT_EQ(mem.ptr(UINT64_MAX, 2), nullptr);                  // wraps
    EXPECT_EQ(mem.ptr(16, UINT64_MAX), nullptr);
    // Regions are distinct host memory: writes land where the gpa says.
    *mem.ptr(kMmioHoleEnd, 1) = 7;
    EXPECT_EQ(*mem.ptr(kMmioHoleStart - 1, 1), 0);
}

TEST(E820, ClassicPcMapBelowTheHole) {
    auto m = build_e820(512ull << 20);
    ASSERT_EQ(m.size(), 3u);
    EXPECT_EQ(m[0].addr, 0u);
    EXPECT_EQ(m[0].size, layout::kEbda);
    EXPECT_EQ(m[0].type, 1u);
    EXPECT_EQ(m[1].type, 2u);  // EBDA and BIOS area reserved (ACPI tables live there)
    EXPECT_LE(m[1].addr, layout::kAcpi);
    EXPECT_EQ(m[2].addr, 0x100000u);
    EXPECT_EQ(m[2].addr + m[2].size, 512ull << 20);
}

TEST(E820, RamAboveFourGigWhenLarge) {
    auto m = build_e820(5ull << 30);
    ASSERT_EQ(m.size(), 4u);
    EXPECT_EQ(m[2].addr + m[2].size, kMmioHoleStart);
    EXPECT_EQ(m[3].addr, kMmioHoleEnd);
    EXPECT_EQ(m[3].size, (5ull << 30) - kMmioHoleStart);
    uint64_t ram = 0;
    for (auto& e : m)
        if (e.type == 1) ram += e.size;
    EXPECT_EQ(ram, (5ull << 30) - (0x100000 - layout::kEbda));
}
