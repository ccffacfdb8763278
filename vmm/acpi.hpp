// ACPI tables: how the guest learns its CPUs (MADT) and how it powers off and
// resets (FADT with a PM1 block and a reset register, DSDT with \_S5).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace minivmm {

class GuestMemory;

// The fixed-hardware I/O ports the FADT points at; AcpiPm serves them.
struct AcpiPorts {
    static constexpr uint16_t kPm1aEvt = 0x600;  // 4 bytes: status, enable
    static constexpr uint16_t kPm1aCnt = 0x604;  // 2 bytes
    static constexpr uint16_t kReset = 0x608;    // 1 byte, reset value below
    static constexpr uint8_t kResetValue = 0x01;
    static constexpr uint8_t kSlpTypS5 = 5;      // what \_S5 tells the OS to write
    static constexpr uint16_t kSciIrq = 9;
    static constexpr uint16_t kBase = 0x600, kLen = 0x10;
};

constexpr uint64_t kLapicAddr = 0xfee00000;
constexpr uint64_t kIoapicAddr = 0xfec00000;

// Writes RSDP, XSDT, RSDT, FADT, FACS, DSDT and MADT into the BIOS area and
// returns the RSDP's guest-physical address.
uint64_t build_acpi(GuestMemory& mem, unsigned ncpus);

// Sum of bytes is zero in every valid table; exposed for tests.
uint8_t acpi_checksum(const uint8_t* p, size_t n);

}  // namespace minivmm
