// ACPI PM's saved state: the PM1a registers as the guest left them.
#include "vmm/acpi_pm.hpp"

namespace minivmm {

namespace {
constexpr uint16_t kSciEn = 1, kSlpEn = 1u << 13;
}

void AcpiPm::save(state::Writer& w) const {
    w.u16(status_);
    w.u16(enable_);
    w.u16(control_);
}

void AcpiPm::load(state::Reader& r) {
    uint16_t status = r.u16(), enable = r.u16(), control = r.u16();
    // No event here ever sets a status bit: the guest can only clear them.
    if (status) r.fail("ACPI PM1 status: event bits this device never raises");
    if (!(control & kSciEn)) r.fail("ACPI PM1 control: SCI_EN clear, but the device is always in ACPI mode");
    // SLP_EN is write-only: a sleep request is carried out, never kept.
    if (control & kSlpEn) r.fail("ACPI PM1 control: SLP_EN set");
    status_ = status, enable_ = enable, control_ = control;
}

}  // namespace minivmm
