// The ACPI fixed hardware Linux uses to power off and reset: the PM1a event
// and control blocks and the FADT reset register (ports in vmm/acpi.hpp).
#pragma once
#include <cstdint>

#include "vmm/io_bus.hpp"
#include "vmm/state_stream.hpp"
#include "vmm/stop.hpp"

namespace minivmm {

class AcpiPm : public IoDevice {
public:
    explicit AcpiPm(Stop& stop) : stop_(stop) {}
    void read(uint64_t offset, uint8_t* data, uint32_t size) override;
    void write(uint64_t offset, const uint8_t* data, uint32_t size) override;
    // Saved state (acpi_pm_state.cpp), loaded into a fresh AcpiPm.
    void save(state::Writer& w) const;
    void load(state::Reader& r);

private:
    Stop& stop_;
    uint16_t status_ = 0, enable_ = 0;
    uint16_t control_ = 1;  // SCI_EN: always in ACPI mode, there is no SMM to leave
};

// The i8042's output port bit 0 is the CPU reset line; Linux's "reboot=k"
// path pulses it by writing 0xfe to the command port.
class I8042Reset : public IoDevice {
public:
    static constexpr uint16_t kCommand = 0x64;  // the only port it claims
    explicit I8042Reset(Stop& stop) : stop_(stop) {}
    void read(uint64_t, uint8_t* data, uint32_t size) override;  // buffers always empty
    void write(uint64_t offset, const uint8_t* data, uint32_t size) override;

private:
    Stop& stop_;
};

}  // namespace minivmm
