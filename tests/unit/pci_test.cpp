// The PCI bus as the guest sees it: configuration mechanism #1 through the
// 0xCF8/0xCFC ports and BAR decoding in the MMIO window.
#include "vmm/pci.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "vmm/error.hpp"

using namespace minivmm;

namespace {
// A device that records what reaches its BARs and answers reads with a
// pattern that identifies BAR and offset.
struct TestDev : PciDevice {
    struct Access {
        int bar;
        uint64_t off;
        uint32_t size;
        uint64_t value;
    };
    std::vector<Access> reads, writes;
    int decoding_changes = 0;
    explicit TestDev(uint16_t device = 0x1234) : PciDevice(0x1af4, device, 0x020000, 7) {}
    void bar_read(int bar, uint64_t off, uint8_t* data, uint32_t size) override {
        reads.push_back({bar, off, size, 0});
        le_store(data, size, 0xab000000u | bar << 16 | off);
    }
    void bar_write(int bar, uint64_t off, const uint8_t* data, uint32_t size) override {
        writes.push_back({bar, off, size, le_load(data, size)});
    }
    void decoding_changed() override { decoding_changes++; }
};

// The guest's side of configuration mechanism #1.
struct Guest {
    PciBus bus;
    static uint32_t address(unsigned slot, uint32_t reg, unsigned bus = 0, unsigned fn = 0) {
        return 0x8000'0000u | bus << 16 | slot << 11 | fn << 8 | (reg & 0xfc);
    }
    void out32(uint64_t port_off, uint32_t v) {
        uint8_t d[4];
        le_store(d, 4, v);
        bus.write(port_off, d, 4);
    }
    uint32_t in(uint64_t port_off, uint32_t size) {
        uint8_t d[4] = {};
        bus.read(port_off, d, size);
        return static_cast<uint32_t>(le_load(d, size));
    }
    uint32_t cfg_read(unsigned slot, uint32_t reg, uint32_t size = 4) {
        out32(0, address(slot, reg));
        return in(4 + (reg & 3), size);
    }
    void cfg_write(unsigned slot, uint32_t reg, uint32_t v, uint32_t size = 4) {
        out32(0, address(slot, reg));
        uint8_t d[4];
        le_store(d, size, v);
        bus.write(4 + (reg & 3), d, size);
    }
    uint32_t mmio_read(uint64_t gpa, uint32_t size) {
        uint8_t d[8] = {};
        bus.mmio().read(gpa - PciBus::kWindowStart, d, size);
        return static_cast<uint32_t>(le_load(d, size));
    }
    void mmio_write(uint64_t gpa, uint32_t v, uint32_t size) {
        uint8_t d[8];
        le_store(d, size, v);
        bus.mmio().write(gpa - PciBus::kWindowStart, d, size);
    }
};

std::shared_ptr<TestDev> dev_with_bars() {
    auto d = std::make_shared<TestDev>();
    d->add_bar(0, 0x4000);
    d->add_bar(2, 0x1000);
    return d;
}
}  // namespace

TEST(Pci, HostBridgeAndEmptySlots) {
    Guest g;
    EXPECT_EQ(g.cfg_read(0, 0x00), 0x0008'1b36u);
    EXPECT_EQ(g.cfg_read(0, 0x08) >> 8, 0x060000u);  // class: host bridge
    // Empty slots, other buses and other functions all read as nothing there.
    EXPECT_EQ(g.cfg_read(1, 0x00), 0xffff'ffffu);
    EXPECT_EQ(g.cfg_read(31, 0x00), 0xffff'ffffu);
    g.out32(0, Guest::address(0, 0, 1));
    EXPECT_EQ(g.in(4, 4), 0xffff'ffffu);
    g.out32(0, Guest::address(0, 0, 0, 3));
    EXPECT_EQ(g.in(4, 4), 0xffff'ffffu);
    // Without the enable bit the data port selects nothing.
    g.out32(0, 0x0000'0000u);
    EXPECT_EQ(g.in(4, 4), 0xffff'ffffu);
    EXPECT_EQ(g.in(4, 2), 0xffffu);
}

TEST(Pci, AddressRegisterTakesOnlyDwordWrites) {
    Guest g;
    g.out32(0, 0x8000'0810u);
    EXPECT_EQ(g.in(0, 4), 0x8000'0810u);
    // Linux's type-1 probe: a byte at 0xCFB must leave the register alone.
    uint8_t b = 0x01;
    g.bus.write(3, &b, 1);
    EXPECT_EQ(g.in(0, 4), 0x8000'0810u);
    uint8_t w[2] = {0x34, 0x12};
    g.bus.write(2, w, 2);
    g.bus.write(0, w, 2);
    EXPECT_EQ(g.in(0, 4), 0x8000'0810u);
}

TEST(Pci, SubDwordDataAccesses) {
    Guest g;
    g.bus.add(std::make_shared<TestDev>(0xbeef));
    EXPECT_EQ(g.cfg_read(1, 0x00, 2), 0x1af4u);
    EXPECT_EQ(g.cfg_read(1, 0x02, 2), 0xbeefu);
    EXPECT_EQ(g.cfg_read(1, 0x03, 1), 0xbeu);
    EXPECT_EQ(g.cfg_read(1, 0x08, 1), 7u);  // revision
    EXPECT_EQ(g.cfg_read(1, 0x0b, 1), 0x02u);  // base class: network
    // The interrupt line is scratch for the OS; the pin next to it is not.
    g.cfg_write(1, 0x3c, 0x0b, 1);
    g.cfg_write(1, 0x3d, 0x04, 1);
    EXPECT_EQ(g.cfg_read(1, 0x3c, 2), 0x000bu);
    // A word at byte 3 would straddle the dword: dropped.
    g.cfg_write(1, 0x3f, 0xffff, 2);
    EXPECT_EQ(g.cfg_read(1, 0x3c), 0x0000'000bu);
}

TEST(Pci, IdsClassAndSubsystemAreReadOnly) {
    Guest g;
    auto d = std::make_shared<TestDev>(0x5555);
    unsigned slot = g.bus.add(d);
    ASSERT_EQ(slot, 1u);
    uint32_t before[4] = {g.cfg_read(1, 0x00), g.cfg_read(1, 0x08), g.cfg_read(1, 0x2c), g.cfg_read(1, 0x34)};
    for (uint32_t reg : {0x00u, 0x08u, 0x2cu, 0x34u}) g.cfg_write(1, reg, 0x1122'3344u);
    g.cfg_write(1, 0x01, 0x99, 1);
    EXPECT_EQ(g.cfg_read(1, 0x00), before[0]);
    EXPECT_EQ(g.cfg_read(1, 0x08), before[1]);
    EXPECT_EQ(g.cfg_read(1, 0x2c), before[2]);
    EXPECT_EQ(g.cfg_read(1, 0x34), before[3]);
    // No expansion ROM: sizing it reads back zero.
    g.cfg_write(1, 0x30, 0xffff'fffeu);
    EXPECT_EQ(g.cfg_read(1, 0x30), 0u);
}

TEST(Pci, CommandRegisterKeepsOnlyWhatTheDeviceHonours) {
    Guest g;
    auto d = std::make_shared<TestDev>();
    g.bus.add(d);
    EXPECT_FALSE(d->memory_enabled());
    g.cfg_write(1, 0x04, 0xffff'ffffu);
    // Memory, bus master, INTx disable; never I/O space, and the status half
    // (no capabilities here) is untouched.
    EXPECT_EQ(g.cfg_read(1, 0x04), 0x0000'0406u);
    EXPECT_TRUE(d->memory_enabled());
    g.cfg_write(1, 0x04, 0x0004, 2);
    EXPECT_FALSE(d->memory_enabled());
}

TEST(Pci, BarSizingProtocol) {
    Guest g;
    auto d = dev_with_bars();
    g.bus.add(d);
    uint32_t bar0 = g.cfg_read(1, 0x10), bar2 = g.cfg_read(1, 0x18);
    EXPECT_EQ(bar0, PciBus::kWindowStart);  // assigned, naturally aligned
    EXPECT_EQ(bar2 % 0x1000, 0u);
    EXPECT_GE(bar2, bar0 + 0x4000u);
    // Write all ones, read the size mask (memory, 32-bit, non-prefetchable: low bits 0).
    g.cfg_write(1, 0x10, 0xffff'ffffu);
    EXPECT_EQ(g.cfg_read(1, 0x10), 0xffff'c000u);
    g.cfg_write(1, 0x18, 0xffff'ffffu);
    EXPECT_EQ(g.cfg_read(1, 0x18), 0xffff'f000u);
    // Unimplemented BARs do not respond to sizing.
    for (uint32_t reg : {0x14u, 0x1cu, 0x20u, 0x24u}) {
        g.cfg_write(1, reg, 0xffff'ffffu);
        EXPECT_EQ(g.cfg_read(1, reg), 0u) << std::hex << reg;
    }
    // Restoring works, and low address bits below the size are dropped.
    g.cfg_write(1, 0x10, bar0 | 0x123);
    EXPECT_EQ(g.cfg_read(1, 0x10), bar0);
    EXPECT_EQ(d->bar_address(0), bar0);
}

TEST(Pci, BarsOfSeveralDevicesDoNotOverlap) {
    Guest g;
    auto a = dev_with_bars(), b = dev_with_bars();
    g.bus.add(a);
    g.bus.add(b);
    std::vector<std::pair<uint64_t, uint64_t>> r;
    for (auto* d : {a.get(), b.get()})
        for (int i : {0, 2}) r.push_back({d->bar_address(i), d->bar_address(i) + d->bar_size(i)});
    for (size_t i = 0; i < r.size(); i++) {
        EXPECT_EQ(r[i].first % (r[i].second - r[i].first), 0u);
        EXPECT_GE(r[i].first, PciBus::kWindowStart);
        EXPECT_LE(r[i].second, PciBus::kWindowEnd);
        for (size_t j = i + 1; j < r.size(); j++)
            EXPECT_TRUE(r[i].second <= r[j].first || r[j].second <= r[i].first) << i << " overlaps " << j;
    }
}

TEST(Pci, BarSizeMustBeAPowerOfTwoOfAtLeastAPage) {
    TestDev d;
    EXPECT_THROW(d.add_bar(0, 0x800), std::logic_error);
    EXPECT_THROW(d.add_bar(0, 0x3000), std::logic_error);
    d.add_bar(0, 0x1000);
    EXPECT_EQ(d.bar_size(0), 0x1000u);
}

TEST(Pci, ThirtyTwoSlotsAtMost) {
    PciBus bus;
    for (int i = 1; i < 32; i++) bus.add(std::make_shared<TestDev>());
    EXPECT_THROW(bus.add(std::make_shared<TestDev>()), UserError);
}

TEST(Pci, CapabilityListIsChainedAndReadOnly) {
    Guest g;
    auto d = std::make_shared<TestDev>();
    uint8_t a = d->add_capability(0x09, {3, 1, 2});
    uint8_t b = d->add_capability(0x11, {0, 0, 5, 0, 0, 0, 6, 0, 0, 0});
    g.bus.add(d);
    EXPECT_EQ(a, 0x40);
    EXPECT_EQ(b % 4, 0);
    EXPECT_TRUE(g.cfg_read(1, 0x06, 2) & (1u << 4));  // status: capabilities list
    std::vector<uint8_t> ids;
    for (uint8_t at = static_cast<uint8_t>(g.cfg_read(1, 0x34, 1)); at && ids.size() < 48;
         at = static_cast<uint8_t>(g.cfg_read(1, at + 1u, 1)))
        ids.push_back(static_cast<uint8_t>(g.cfg_read(1, at, 1)));
    EXPECT_EQ(ids, (std::vector<uint8_t>{0x09, 0x11}));
    uint32_t cap = g.cfg_read(1, a);
    g.cfg_write(1, a, 0);
    g.cfg_write(1, a + 1u, 0x80, 1);
    EXPECT_EQ(g.cfg_read(1, a), cap);
    EXPECT_EQ(g.cfg_read(1, b + 4u, 1), 5u);
}

TEST(Pci, NoExtendedConfigSpace) {
    TestDev d;
    EXPECT_EQ(d.config_read(0x100), 0u);
    d.config_write(0x100, 0xffff'ffffu, 0xffff'ffffu);  // must not write past the array
    EXPECT_EQ(d.config_read(0x00), 0x1234'1af4u);
}

TEST(Pci, MmioReachesBarsOnlyWithMemorySpaceEnabled) {
    Guest g;
    auto d = dev_with_bars();
    g.bus.add(d);
    uint64_t bar0 = d->bar_address(0), bar2 = d->bar_address(2);
    EXPECT_EQ(g.mmio_read(bar0 + 8, 4), 0xffff'ffffu);
    g.mmio_write(bar0 + 8, 1, 4);
    EXPECT_TRUE(d->reads.empty());
    EXPECT_TRUE(d->writes.empty());

    g.cfg_write(1, 0x04, 0x2, 2);
    EXPECT_EQ(g.mmio_read(bar0 + 0x10, 4), 0xab00'0010u);
    EXPECT_EQ(g.mmio_read(bar2 + 0xff8, 8), 0xab02'0ff8u);
    g.mmio_write(bar0 + 0x3ffc, 0xcafe, 2);
    ASSERT_EQ(d->writes.size(), 1u);
    EXPECT_EQ(d->writes[0].bar, 0);
    EXPECT_EQ(d->writes[0].off, 0x3ffcu);
    EXPECT_EQ(d->writes[0].size, 2u);
    EXPECT_EQ(d->writes[0].value, 0xcafeu);
    // Past the end of a BAR, or straddling it, nothing decodes.
    size_t nreads = d->reads.size();
    EXPECT_EQ(g.mmio_read(bar0 + 0x3ffe, 4), 0xffff'ffffu);
    EXPECT_EQ(g.mmio_read(PciBus::kWindowEnd - 4, 4), 0xffff'ffffu);
    EXPECT_EQ(d->reads.size(), nreads);
}

TEST(Pci, MmioFollowsABarTheGuestMoved) {
    Guest g;
    auto d = dev_with_bars();
    g.bus.add(d);
    g.cfg_write(1, 0x04, 0x2, 2);
    uint64_t old = d->bar_address(0);
    const uint32_t moved = 0xd000'0000u;
    g.cfg_write(1, 0x10, moved);
    EXPECT_EQ(d->bar_address(0), moved);
    EXPECT_EQ(g.mmio_read(old + 4, 4), 0xffff'ffffu);
    EXPECT_EQ(g.mmio_read(moved + 4, 4), 0xab00'0004u);
    // While the guest sizes a BAR it points outside the window: no decode.
    g.cfg_write(1, 0x10, 0xffff'ffffu);
    EXPECT_EQ(g.mmio_read(moved + 4, 4), 0xffff'ffffu);
}

// What devices that hand KVM addresses inside their BARs (ioeventfds) follow.
TEST(Pci, DecodedAddressIsWhereMmioReachesTheBar) {
    Guest g;
    auto d = dev_with_bars();
    g.bus.add(d);
    EXPECT_GT(d->decoding_changes, 0);  // the BARs were placed
    EXPECT_EQ(d->decoded_address(0), 0u);  // memory decoding is off
    int changes = d->decoding_changes;
    g.cfg_write(1, 0x04, 0x2, 2);
    EXPECT_EQ(d->decoding_changes, changes + 1);
    EXPECT_EQ(d->decoded_address(0), d->bar_address(0));
    EXPECT_EQ(d->decoded_address(1), 0u);  // no such BAR
    const uint32_t moved = 0xd000'0000u;
    g.cfg_write(1, 0x10, moved);
    EXPECT_EQ(d->decoding_changes, changes + 2);
    EXPECT_EQ(d->decoded_address(0), moved);
    g.cfg_write(1, 0x10, 0xffff'ffffu);  // sizing: the mask is past the window's end
    EXPECT_EQ(d->decoded_address(0), 0u);
    g.cfg_write(1, 0x10, 0x1000'0000u);  // below the window: RAM's place
    EXPECT_EQ(d->decoded_address(0), 0u);
    g.cfg_write(1, 0x10, moved);
    EXPECT_EQ(d->decoded_address(0), moved);
    g.cfg_write(1, 0x04, 0, 2);
    EXPECT_EQ(d->decoded_address(0), 0u);
    g.cfg_write(1, 0x2c, 0x1234);  // neither the command register nor a BAR
    EXPECT_EQ(d->decoding_changes, changes + 6);
}

TEST(Pci, CapabilitiesThatFillConfigSpaceLeaveNoRoom) {
    TestDev d;
    // Three 64-byte capabilities end exactly at 0x100.
    for (uint8_t at : {0x40, 0x80, 0xc0}) EXPECT_EQ(d.add_capability(0x09, std::vector<uint8_t>(62)), at);
    EXPECT_THROW(d.add_capability(0x05, {1, 2}), std::logic_error);
    EXPECT_EQ(d.config_read(0x00), 0x1234'1af4u);
    EXPECT_EQ(d.config_read(0xc0) & 0xffff, 0x0009u);  // still the end of the list
}
