#include "vmm/acpi_pm.hpp"

#include <cstring>

#include "vmm/acpi.hpp"

namespace minivmm {

namespace {
constexpr uint16_t kSlpEn = 1u << 13;
constexpr unsigned kSlpTypShift = 10;
// Offsets inside the 16-port block starting at AcpiPorts::kBase.
constexpr uint64_t kStatus = AcpiPorts::kPm1aEvt - AcpiPorts::kBase;
constexpr uint64_t kEnable = kStatus + 2;
constexpr uint64_t kControl = AcpiPorts::kPm1aCnt - AcpiPorts::kBase;
constexpr uint64_t kResetReg = AcpiPorts::kReset - AcpiPorts::kBase;
}  // namespace

void AcpiPm::read(uint64_t offset, uint8_t* data, uint32_t size) {
    uint8_t regs[AcpiPorts::kLen] = {};
    std::memcpy(regs + kStatus, &status_, 2);
    std::memcpy(regs + kEnable, &enable_, 2);
    std::memcpy(regs + kControl, &control_, 2);
    std::memcpy(data, regs + offset, size);  // the bus keeps offset+size in range
}

void AcpiPm::write(uint64_t offset, const uint8_t* data, uint32_t size) {
    for (uint32_t i = 0; i < size; i++) {
        uint64_t at = offset + i;
        uint8_t v = data[i];
        unsigned shift = 8 * (at & 1);
        if (at == kStatus || at == kStatus + 1) {
            status_ &= static_cast<uint16_t>(~(v << shift));  // write-one-to-clear
        } else if (at == kEnable || at == kEnable + 1) {
            enable_ = static_cast<uint16_t>((enable_ & ~(0xff << shift)) | (v << shift));
        } else if (at == kControl || at == kControl + 1) {
            control_ = static_cast<uint16_t>((control_ & ~(0xff << shift)) | (v << shift) | 1);
        } else if (at == kResetReg && v == AcpiPorts::kResetValue) {
            stop_.request(0, "guest reset (ACPI reset register)");
        }
    }
    // Sleep happens when SLP_EN is written with the S5 type; the bit itself
    // is write-only and always reads back as zero.
    if (control_ & kSlpEn) {
        control_ &= static_cast<uint16_t>(~kSlpEn);
        if (((control_ >> kSlpTypShift) & 7) == AcpiPorts::kSlpTypS5)
            stop_.request(0, "guest powered off");
    }
}

void I8042Reset::read(uint64_t, uint8_t* data, uint32_t size) { std::memset(data, 0, size); }

void I8042Reset::write(uint64_t, const uint8_t* data, uint32_t size) {
    if (size >= 1 && data[0] == 0xfe)
        stop_.request(0, "guest reset (i8042 reset line)");
}

}  // namespace minivmm
