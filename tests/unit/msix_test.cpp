// MSI-X as the guest programs it: the table and PBA in a BAR, the enable and
// function-mask bits in Message Control, and the masked -> pending -> unmask
// delivery rule.
#include "vmm/msix.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "vmm/io_bus.hpp"

using namespace minivmm;

namespace {
constexpr uint16_t kEnable = 1u << 15, kFunctionMask = 1u << 14;

struct Table {
    std::vector<MsiMessage> sent;
    Msix msix;
    explicit Table(uint16_t vectors = 4) : msix(vectors, [this](const MsiMessage& m) { sent.push_back(m); }) {}

    void write32(uint64_t off, uint32_t v) {
        uint8_t d[4];
        le_store(d, 4, v);
        msix.table_write(off, d, 4);
    }
    uint64_t read(uint64_t off, uint32_t size) {
        uint8_t d[8];
        std::fill(d, d + 8, 0x5a);
        msix.table_read(off, d, size);
        return le_load(d, size);
    }
    uint64_t pba(uint64_t off, uint32_t size) {
        uint8_t d[8];
        msix.pba_read(off, d, size);
        return le_load(d, size);
    }
    // What a driver does per vector: address, data, then unmask.
    void program(uint16_t v, uint32_t addr, uint32_t data, bool unmask = true) {
        write32(16 * v, addr);
        write32(16 * v + 4, 0);
        write32(16 * v + 8, data);
        if (unmask) write32(16 * v + 12, 0);
    }
};
}  // namespace

TEST(Msix, CapabilityBodyEncodesSizeTableAndPba) {
    Table t(3);
    auto b = t.msix.capability(1, 0x0, 0x800);
    ASSERT_EQ(b.size(), 10u);
    EXPECT_EQ(le_load(&b[0], 2), 2u);  // N-1
    EXPECT_EQ(le_load(&b[2], 4), 0x0000'0001u);
    EXPECT_EQ(le_load(&b[6], 4), 0x0000'0801u);
    EXPECT_EQ(t.msix.table_bytes(), 48u);
    EXPECT_EQ(t.msix.pba_bytes(), 8u);
    EXPECT_EQ(Table(65).msix.pba_bytes(), 16u);
}

TEST(Msix, ControlEnableAndFunctionMask) {
    Table t(4);
    EXPECT_EQ(t.msix.control(), 3u);
    EXPECT_FALSE(t.msix.enabled());
    // The table size field is read-only whatever the guest writes.
    t.msix.control_written(kEnable | kFunctionMask | 0x7ff);
    EXPECT_EQ(t.msix.control(), kEnable | kFunctionMask | 3u);
    EXPECT_TRUE(t.msix.enabled());
    EXPECT_TRUE(t.msix.masked(0));
    t.msix.control_written(kEnable);
    EXPECT_EQ(t.msix.control(), kEnable | 3u);
    t.msix.control_written(0);
    EXPECT_FALSE(t.msix.enabled());
}

TEST(Msix, EntriesStartMasked) {
    Table t(2);
    EXPECT_EQ(t.read(12, 4), 1u);
    EXPECT_EQ(t.read(16 + 12, 4), 1u);
    EXPECT_TRUE(t.msix.masked(1));
    EXPECT_FALSE(t.msix.masked(2));  // no such vector: nothing to be masked
}

TEST(Msix, DisabledDeliversNothingAndLeavesNothingPending) {
    Table t;
    t.program(0, 0xfee0'0000u, 0x41);
    EXPECT_FALSE(t.msix.raise(0));
    EXPECT_FALSE(t.msix.pending(0));
    EXPECT_TRUE(t.sent.empty());
    t.msix.control_written(kEnable);
    EXPECT_TRUE(t.sent.empty());  // enabling later does not replay it
}

TEST(Msix, UnmaskedVectorIsDeliveredWithItsMessage) {
    Table t;
    t.program(2, 0xfee0'1000u, 0x4062);
    t.write32(2 * 16 + 4, 0x1);  // a high address half, for the full 64 bits
    t.msix.control_written(kEnable);
    EXPECT_TRUE(t.msix.raise(2));
    ASSERT_EQ(t.sent.size(), 1u);
    EXPECT_EQ(t.sent[0].address, 0x1'fee0'1000ull);
    EXPECT_EQ(t.sent[0].data, 0x4062u);
    EXPECT_FALSE(t.msix.raise(4));  // out of range: dropped
    EXPECT_FALSE(t.msix.raise(Msix::kNoVector));
    EXPECT_EQ(t.sent.size(), 1u);
}

TEST(Msix, MaskedVectorPendsAndIsDeliveredOnceWhenUnmasked) {
    Table t;
    t.program(1, 0xfee0'0000u, 0x51, false);
    t.msix.control_written(kEnable);
    EXPECT_FALSE(t.msix.raise(1));
    EXPECT_FALSE(t.msix.raise(1));  // pending is one bit, not a count
    EXPECT_TRUE(t.msix.pending(1));
    EXPECT_EQ(t.pba(0, 8), 1u << 1);
    EXPECT_EQ(t.pba(0, 4), 1u << 1);
    EXPECT_TRUE(t.sent.empty());

    t.write32(16 + 12, 0);
    ASSERT_EQ(t.sent.size(), 1u);
    EXPECT_EQ(t.sent[0].data, 0x51u);
    EXPECT_FALSE(t.msix.pending(1));
    EXPECT_EQ(t.pba(0, 8), 0u);
    // Touching the table again does not resend it.
    t.write32(16 + 12, 0);
    t.write32(16 + 8, 0x52);
    EXPECT_EQ(t.sent.size(), 1u);
}

TEST(Msix, FunctionMaskHoldsEveryVector) {
    Table t;
    t.program(0, 0xfee0'0000u, 0x30);
    t.program(3, 0xfee0'0000u, 0x33);
    t.msix.control_written(kEnable | kFunctionMask);
    EXPECT_FALSE(t.msix.raise(0));
    EXPECT_FALSE(t.msix.raise(3));
    EXPECT_EQ(t.pba(0, 8), 0b1001u);
    EXPECT_TRUE(t.sent.empty());
    // Each entry's own mask bit still reads clear: the function mask is separate.
    EXPECT_EQ(t.read(12, 4), 0u);

    t.msix.control_written(kEnable);
    ASSERT_EQ(t.sent.size(), 2u);
    EXPECT_EQ(t.sent[0].data, 0x30u);
    EXPECT_EQ(t.sent[1].data, 0x33u);
    EXPECT_EQ(t.pba(0, 8), 0u);
    t.msix.control_written(kEnable);
    EXPECT_EQ(t.sent.size(), 2u);
}

TEST(Msix, PendingSurvivesDisableAndIsSentOnReenableUnmasked) {
    Table t;
    t.program(0, 0xfee0'0000u, 0x30, false);
    t.msix.control_written(kEnable);
    t.msix.raise(0);
    t.msix.control_written(0);
    t.write32(12, 0);  // unmasked while disabled: still nothing may be sent
    EXPECT_TRUE(t.sent.empty());
    EXPECT_TRUE(t.msix.pending(0));
    t.msix.control_written(kEnable);
    EXPECT_EQ(t.sent.size(), 1u);
}

TEST(Msix, TableAccessesAndReservedBits) {
    Table t;
    uint8_t q[8];
    le_store(q, 8, 0x0000'0002'fee0'0003ull);
    t.msix.table_write(16, q, 8);  // one 8-byte write: address low and high
    EXPECT_EQ(t.read(16, 8), 0x0000'0002'fee0'0000ull);  // low address bits reserved
    EXPECT_EQ(t.read(20, 4), 2u);
    t.write32(16 + 12, 0xffff'fffeu);  // only the mask bit exists
    EXPECT_EQ(t.read(16 + 12, 4), 0u);
    le_store(q, 8, 0x0000'0001'0000'00aaull);
    t.msix.table_write(16 + 8, q, 8);  // data and vector control together
    EXPECT_EQ(t.read(16 + 8, 4), 0xaau);
    EXPECT_TRUE(t.msix.masked(1));
}

TEST(Msix, BadTableAccessesAreIgnored) {
    Table t;
    t.program(0, 0xfee0'0000u, 0x77, false);
    uint8_t d[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    t.msix.table_write(12, d, 1);  // byte: would unmask if taken
    t.msix.table_write(12, d, 2);
    t.msix.table_write(10, d, 4);  // misaligned
    t.msix.table_write(8, d, 8);   // 8 bytes over data and control: aligned, allowed
    EXPECT_FALSE(t.msix.masked(0));
    t.write32(12, 1);
    t.msix.table_write(4, d, 8);   // misaligned 8-byte access
    EXPECT_TRUE(t.msix.masked(0));
    t.msix.table_write(64, d, 4);  // past the table (4 vectors)
    EXPECT_EQ(t.read(12, 1), 0u);  // bad reads return zero, not the bytes
    EXPECT_EQ(t.read(2, 2), 0u);
    EXPECT_EQ(t.read(64, 4), 0u);
    EXPECT_EQ(t.read(0, 4), 0xfee0'0000u);
}

TEST(Msix, PbaBitsBeyondTheFirstQword) {
    Table t(70);
    t.msix.control_written(kEnable);
    t.msix.raise(69);
    t.msix.raise(5);
    EXPECT_EQ(t.pba(0, 8), 1ull << 5);
    EXPECT_EQ(t.pba(8, 8), 1ull << (69 - 64));
    EXPECT_EQ(t.pba(8, 4), 1ull << (69 - 64));
    EXPECT_EQ(t.pba(12, 4), 0u);
    EXPECT_EQ(t.pba(16, 8), 0u);  // past the PBA
    EXPECT_EQ(t.pba(8, 2), 0u);   // wrong size
}
