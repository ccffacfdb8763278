#include "vmm/boot_phases.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>

namespace minivmm {

namespace {
// Taken as the program's statics are initialized, before main().
const auto kVmmStart = std::chrono::steady_clock::now();
}  // namespace

double ms_since_vmm_start() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - kVmmStart).count();
}

void BootPhases::once(std::atomic<bool>& done, const char* what) {
    if (!report_ || done.load(std::memory_order_relaxed) || done.exchange(true)) return;
    std::fprintf(stderr, "minivmm: boot: %s at %.0f ms\n", what, ms_since_vmm_start());
}

void BootPhases::guest_starting() { once(started_, "first guest instruction"); }
void BootPhases::console_output() { once(console_, "first console output"); }
void BootPhases::init_reached() { once(init_, "init started"); }

void BootMarker::read(uint64_t, uint8_t* data, uint32_t size) { std::memset(data, 0xff, size); }

void BootMarker::write(uint64_t offset, const uint8_t* data, uint32_t size) {
    if (offset == 0 && size == 1 && data[0] == kValue) phases_.init_reached();
}

}  // namespace minivmm
