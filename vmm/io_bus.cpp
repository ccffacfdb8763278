#include "vmm/io_bus.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace minivmm {

void IoBus::add(uint64_t base, uint64_t len, IoDevice* dev) {
    for (const auto& r : ranges_)
        if (base < r.base + r.len && r.base < base + len)
            throw std::logic_error("overlapping I/O ranges");
    ranges_.push_back({base, len, dev});
    std::sort(ranges_.begin(), ranges_.end(), [](auto& a, auto& b) { return a.base < b.base; });
}

const IoBus::Range* IoBus::find(uint64_t addr, uint32_t size) const {
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), addr,
                               [](uint64_t a, const Range& r) { return a < r.base; });
    if (it == ranges_.begin()) return nullptr;
    --it;
    // The whole access must fall inside the range; one straddling two devices
    // is treated as unclaimed.
    if (addr - it->base >= it->len || size > it->len - (addr - it->base)) return nullptr;
    return &*it;
}

bool IoBus::read(uint64_t addr, uint8_t* data, uint32_t size) const {
    if (const Range* r = find(addr, size)) {
        r->dev->read(addr - r->base, data, size);
        return true;
    }
    std::memset(data, 0xff, size);
    return false;
}

bool IoBus::write(uint64_t addr, const uint8_t* data, uint32_t size) const {
    if (const Range* r = find(addr, size)) {
        r->dev->write(addr - r->base, data, size);
        return true;
    }
    return false;
}

}  // namespace minivmm
