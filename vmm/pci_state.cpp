// The saved configuration space of a PCI function and the bus's address
// register. A loaded config space is checked dword by dword against what a
// guest could have done to this function through 0xCF8/0xCFC.
#include <cstdio>
#include <cstring>

#include "vmm/pci.hpp"

namespace minivmm {

namespace {
constexpr uint32_t kCommand = 0x04, kBar0 = 0x10, kIntLine = 0x3c;

uint32_t get32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
std::string hex(uint64_t v) {
    char b[24];
    std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
    return b;
}
}  // namespace

void PciDevice::save_config(state::Writer& w) const { w.bytes(cfg_.data(), cfg_.size()); }

void PciDevice::load_config(state::Reader& r, const std::string& who) {
    std::array<uint8_t, 256> saved;
    r.bytes(saved.data(), saved.size());
    for (uint32_t reg = 0; reg < saved.size(); reg += 4) {
        uint32_t v = get32(&saved[reg]), now = get32(&cfg_[reg]);
        std::string at = who + " config " + hex(reg) + ": ";
        if (reg == kCommand) {
            if ((v ^ now) & ~uint32_t(kCommandWritable)) r.fail(at + "command/status bits the guest cannot set");
        } else if (reg >= kBar0 && reg < kBar0 + 4 * kBars) {
            uint32_t size = bar_size_[(reg - kBar0) / 4];
            // What config_write() leaves: the address bits the size allows.
            if (v != (size ? v & ~(size - 1) : 0)) r.fail(at + "BAR value " + hex(v) + " this BAR cannot hold");
        } else if (reg == kIntLine) {
            if ((v ^ now) & ~0xffu) r.fail(at + "interrupt pin differs from this function's");
        } else if (reg >= 0x40 && capability_writable(reg)) {
            if (!capability_loadable(reg, v)) r.fail(at + "capability register " + hex(v) + " the guest cannot write");
        } else if (v != now) {
            r.fail(at + "read-only, and not this function's (" + hex(v) + ", not " + hex(now) + ")");
        }
    }
    cfg_ = saved;
    decoding_changed();
}

void PciBus::save(state::Writer& w) {
    std::lock_guard g(lock_);
    w.u32(address_);
    slots_[0]->save_config(w);
}

void PciBus::load(state::Reader& r) {
    std::lock_guard g(lock_);
    address_ = r.u32();  // any dword the guest wrote to 0xCF8
    slots_[0]->load_config(r, "PCI host bridge");
}

}  // namespace minivmm
