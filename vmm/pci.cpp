#include "vmm/pci.hpp"

#include <cstring>

#include "vmm/error.hpp"

namespace minivmm {

namespace {
constexpr uint32_t kCommand = 0x04, kStatus = 0x06, kBar0 = 0x10, kCapPtr = 0x34, kIntLine = 0x3c;
constexpr uint16_t kStatusCapList = 1u << 4;

uint32_t get32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
void put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
}  // namespace

PciDevice::PciDevice(uint16_t vendor, uint16_t device, uint32_t class_code, uint8_t revision) {
    std::memcpy(&cfg_[0], &vendor, 2);
    std::memcpy(&cfg_[2], &device, 2);
    put32(&cfg_[8], class_code << 8 | revision);
}

uint64_t PciDevice::bar_address(int i) const { return get32(&cfg_[kBar0 + 4 * i]) & ~0xfu; }

void PciDevice::set_bar_address(int i, uint64_t gpa) {
    put32(&cfg_[kBar0 + 4 * i], static_cast<uint32_t>(gpa));
    decoding_changed();
}

uint64_t PciDevice::decoded_address(int i) const {
    uint64_t at = bar_address(i);
    bool inside = at >= PciBus::kWindowStart && at + bar_size_[i] <= PciBus::kWindowEnd;
    return bar_size_[i] && memory_enabled() && inside ? at : 0;
}

void PciDevice::add_bar(int i, uint32_t size) {
    if (size < 4096 || (size & (size - 1))) throw std::logic_error("PCI BAR size must be a power of two >= 4 KiB");
    bar_size_[i] = size;
}

uint8_t PciDevice::add_capability(uint8_t id, const std::vector<uint8_t>& body) {
    uint8_t at = next_cap_;
    // next_cap_ wraps to 0 when a capability ends at the top of config space.
    if (at < 0x40 || at + 2 + body.size() > cfg_.size())
        throw std::logic_error("PCI capabilities overflow config space");
    cfg_[at] = id;
    cfg_[at + 1] = 0;
    std::memcpy(&cfg_[at + 2], body.data(), body.size());
    if (last_cap_)
        cfg_[last_cap_ + 1] = at;
    else
        cfg_[kCapPtr] = at;
    last_cap_ = at;
    uint16_t status = kStatusCapList;
    std::memcpy(&cfg_[kStatus], &status, 2);
    next_cap_ = static_cast<uint8_t>((at + 2 + body.size() + 3) & ~3u);
    return at;
}

uint32_t PciDevice::config_read(uint32_t reg) {
    if (reg >= cfg_.size()) return 0;  // no extended space on conventional PCI
    if (reg >= 0x40) capability_reading(reg);
    return get32(&cfg_[reg]);
}

void PciDevice::config_write(uint32_t reg, uint32_t value, uint32_t byte_mask) {
    if (reg >= cfg_.size()) return;
    uint32_t old = get32(&cfg_[reg]);
    uint32_t merged = (old & ~byte_mask) | (value & byte_mask);
    if (reg == kCommand) {
        // Status bits (upper half) are RW1C; ours are all read-only flags.
        put32(&cfg_[reg], (old & ~uint32_t(kCommandWritable)) | (merged & kCommandWritable));
        decoding_changed();
    } else if (reg >= kBar0 && reg < kBar0 + 4 * kBars) {
        int i = (reg - kBar0) / 4;
        // Sizing: writing all ones reads back the size mask; an unimplemented
        // BAR stays zero. Low bits (memory, 32-bit, non-prefetchable) read 0.
        put32(&cfg_[reg], bar_size_[i] ? merged & ~(bar_size_[i] - 1) : 0);
        decoding_changed();
    } else if (reg == kIntLine) {
        cfg_[reg] = static_cast<uint8_t>(merged);  // scratch for the OS; the pin stays
    } else if (reg >= 0x40 && capability_writable(reg)) {
        put32(&cfg_[reg], merged);
        capability_written(reg);
    }
    // Everything else (IDs, class, header type, subsystem, capability
    // pointers, expansion ROM) is read-only: writes are dropped.
}

namespace {
class HostBridge : public PciDevice {
public:
    // Red Hat's generic host bridge ID: no chipset quirks in the guest.
    HostBridge() : PciDevice(0x1b36, 0x0008, 0x060000, 0) {}
    void bar_read(int, uint64_t, uint8_t* data, uint32_t size) override { std::memset(data, 0xff, size); }
    void bar_write(int, uint64_t, const uint8_t*, uint32_t) override {}
};
}  // namespace

PciBus::PciBus() { slots_.push_back(std::make_shared<HostBridge>()); }

unsigned PciBus::add(std::shared_ptr<PciDevice> dev) {
    if (slots_.size() >= 32) throw UserError("too many PCI devices (32 slots)");
    for (int i = 0; i < PciDevice::kBars; i++) {
        uint64_t size = dev->bar_size(i);
        if (!size) continue;
        uint64_t at = (next_bar_ + size - 1) & ~(size - 1);  // naturally aligned, as BARs must be
        if (at + size > kWindowEnd) throw UserError("PCI devices do not fit in the MMIO window");
        dev->set_bar_address(i, at);
        next_bar_ = at + size;
    }
    slots_.push_back(std::move(dev));
    return static_cast<unsigned>(slots_.size() - 1);
}

PciDevice* PciBus::selected(uint32_t& reg) {
    // Bit 31 enables; bus 0 only, function 0 only; reg is dword aligned.
    if (!(address_ & 0x8000'0000u) || (address_ >> 16 & 0xff) != 0 || (address_ >> 8 & 7) != 0) return nullptr;
    unsigned slot = address_ >> 11 & 0x1f;
    reg = address_ & 0xfc;
    return slot < slots_.size() ? slots_[slot].get() : nullptr;
}

void PciBus::read(uint64_t offset, uint8_t* data, uint32_t size) {
    std::lock_guard g(lock_);
    if (offset == 0 && size == 4) {
        le_store(data, 4, address_);
        return;
    }
    uint32_t reg;
    PciDevice* dev = offset >= 4 ? selected(reg) : nullptr;
    // Absent functions read all ones: that is how the OS finds empty slots.
    uint32_t v = dev ? dev->config_read(reg) : 0xffff'ffffu;
    uint32_t shift = 8 * ((offset - 4) & 3);
    le_store(data, size, v >> shift);
}

void PciBus::write(uint64_t offset, const uint8_t* data, uint32_t size) {
    std::lock_guard g(lock_);
    if (offset < 4) {
        // Only dword writes hit the address register; Linux's type-1 probe
        // pokes a byte at 0xCFB and expects it ignored.
        if (offset == 0 && size == 4) address_ = static_cast<uint32_t>(le_load(data, 4));
        return;
    }
    uint32_t reg;
    PciDevice* dev = selected(reg);
    if (!dev) return;
    uint32_t shift = 8 * ((offset - 4) & 3);
    if (shift + 8 * size > 32) return;  // straddles the dword: not a valid access
    uint32_t mask = (size == 4 ? 0xffff'ffffu : ((1u << (8 * size)) - 1)) << shift;
    dev->config_write(reg, static_cast<uint32_t>(le_load(data, size)) << shift, mask);
}

PciDevice* PciBus::decode(uint64_t gpa, uint32_t size, int& bar, uint64_t& offset) {
    std::lock_guard g(lock_);
    for (auto& d : slots_) {
        if (!d->memory_enabled()) continue;
        for (int i = 0; i < PciDevice::kBars; i++) {
            uint64_t base = d->bar_address(i), len = d->bar_size(i);
            if (len && gpa >= base && gpa + size <= base + len) {
                bar = i;
                offset = gpa - base;
                return d.get();
            }
        }
    }
    return nullptr;
}

void PciBus::Mmio::read(uint64_t offset, uint8_t* data, uint32_t size) {
    int bar;
    uint64_t off;
    if (PciDevice* d = bus_.decode(kWindowStart + offset, size, bar, off))
        d->bar_read(bar, off, data, size);
    else
        std::memset(data, 0xff, size);
}

void PciBus::Mmio::write(uint64_t offset, const uint8_t* data, uint32_t size) {
    int bar;
    uint64_t off;
    if (PciDevice* d = bus_.decode(kWindowStart + offset, size, bar, off)) d->bar_write(bar, off, data, size);
}

}  // namespace minivmm
