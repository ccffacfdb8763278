#include "vmm/acpi.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "vmm/guest_memory.hpp"

using namespace minivmm;

namespace {
uint32_t u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
uint64_t u64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

struct Tables {
    explicit Tables(unsigned ncpus) : mem(64ull << 20) { rsdp = build_acpi(mem, ncpus); }
    const uint8_t* table(uint64_t gpa) {
        const uint8_t* hdr = mem.ptr(gpa, 36);
        EXPECT_NE(hdr, nullptr);
        uint32_t len = u32(hdr + 4);
        const uint8_t* t = mem.ptr(gpa, len);
        EXPECT_EQ(acpi_checksum(t, len), 0) << std::string(reinterpret_cast<const char*>(t), 4);
        return t;
    }
    // Follows RSDP -> XSDT -> the table with this signature.
    const uint8_t* find(const char* sig) {
        const uint8_t* xsdt = table(u64(mem.ptr(rsdp + 24, 8)));
        for (uint32_t off = 36; off < u32(xsdt + 4); off += 8) {
            const uint8_t* t = table(u64(xsdt + off));
            if (!std::memcmp(t, sig, 4)) return t;
        }
        return nullptr;
    }
    GuestMemory mem;
    uint64_t rsdp;
};
}  // namespace

TEST(Acpi, RsdpIsWhereLinuxScansAndChecksumsHold) {
    Tables t(1);
    EXPECT_GE(t.rsdp, 0xe0000u);
    EXPECT_EQ(t.rsdp % 16, 0u);
    const uint8_t* r = t.mem.ptr(t.rsdp, 36);
    EXPECT_EQ(std::memcmp(r, "RSD PTR ", 8), 0);
    EXPECT_EQ(acpi_checksum(r, 20), 0);
    EXPECT_EQ(acpi_checksum(r, 36), 0);
    EXPECT_EQ(r[15], 2);
    t.table(u32(r + 16));  // RSDT valid too
}

TEST(Acpi, MadtListsEveryCpuAndTheIoapic) {
    for (unsigned n : {1u, 2u, 8u}) {
        Tables t(n);
        const uint8_t* madt = t.find("APIC");
        ASSERT_NE(madt, nullptr);
        EXPECT_EQ(u32(madt + 36), kLapicAddr);
        unsigned cpus = 0, ioapics = 0;
        for (uint32_t off = 44; off < u32(madt + 4); off += madt[off + 1]) {
            ASSERT_GT(madt[off + 1], 0);
            if (madt[off] == 0) {
                EXPECT_EQ(madt[off + 3], cpus);  // APIC IDs 0..n-1, matching CPUID
                EXPECT_EQ(u32(madt + off + 4) & 1, 1u);
                cpus++;
            }
            if (madt[off] == 1) {
                EXPECT_EQ(u32(madt + off + 4), kIoapicAddr);
                ioapics++;
            }
        }
        EXPECT_EQ(cpus, n);
        EXPECT_EQ(ioapics, 1u);
    }
}

TEST(Acpi, FadtPointsAtPmBlockResetRegAndDsdtWithS5) {
    Tables t(1);
    const uint8_t* f = t.find("FACP");
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(u32(f + 56), AcpiPorts::kPm1aEvt);
    EXPECT_EQ(u32(f + 64), AcpiPorts::kPm1aCnt);
    EXPECT_EQ(u32(f + 112) & (1u << 10), 1u << 10);  // RESET_REG_SUP
    EXPECT_EQ(u64(f + 116 + 4), AcpiPorts::kReset);
    EXPECT_EQ(f[128], AcpiPorts::kResetValue);
    const uint8_t* dsdt = t.table(u64(f + 140));
    EXPECT_EQ(std::memcmp(dsdt, "DSDT", 4), 0);
    const uint8_t s5[] = {'_', 'S', '5', '_', 0x12};
    EXPECT_NE(std::search(dsdt, dsdt + u32(dsdt + 4), s5, s5 + 5), dsdt + u32(dsdt + 4));
    const uint8_t* facs = t.mem.ptr(u64(f + 132), 64);
    EXPECT_EQ(std::memcmp(facs, "FACS", 4), 0);
    EXPECT_EQ(u64(f + 132) % 64, 0u);
}
