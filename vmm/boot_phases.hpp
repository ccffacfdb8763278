// How long booting took, phase by phase, for --verbose: one grep-able
// "minivmm: boot: ..." line on stderr as each phase is reached, in
// milliseconds since minivmm started.
#pragma once
#include <atomic>
#include <cstdint>

#include "vmm/io_bus.hpp"

namespace minivmm {

// Milliseconds since this process started (its static initialization).
double ms_since_vmm_start();

class BootPhases {
public:
    explicit BootPhases(bool report) : report_(report) {}
    // Each reports once, the first time; a no-op without --verbose, so
    // without it no vCPU thread reads the clock.
    void guest_starting();   // vCPU 0, just before its first KVM_RUN
    void console_output();   // every byte the guest sends to the serial port
    void init_reached();     // the guest's init wrote the marker

private:
    void once(std::atomic<bool>& done, const char* what);
    const bool report_;
    std::atomic<bool> started_{false}, console_{false}, init_{false};
};

// The guest says "my init runs" with a one-byte write of kValue to kGpa, an
// address no device or RAM claims (above the PCI BAR window, below the LAPIC).
// From a shell: busybox devmem (the test guests' kernels lack /dev/port).
// Any other access is ignored, as an unclaimed address would be, and so is
// every write after the first.
class BootMarker : public IoDevice {
public:
    static constexpr uint64_t kGpa = 0xfef00000;
    static constexpr uint8_t kValue = 0x49;  // 'I'
    explicit BootMarker(BootPhases& phases) : phases_(phases) {}
    void read(uint64_t offset, uint8_t* data, uint32_t size) override;
    void write(uint64_t offset, const uint8_t* data, uint32_t size) override;

private:
    BootPhases& phases_;
};

}  // namespace minivmm
