// Dispatch of port I/O and MMIO exits to the device that owns the address.
#pragma once
#include <cstdint>
#include <mutex>
#include <vector>

#include "vmm/bytes.hpp"

namespace minivmm {

class IoDevice {
public:
    virtual ~IoDevice() = default;
    // offset is relative to the start of the range the device was added with;
    // size is 1, 2, 4 or 8. Reads fill data[0..size).
    virtual void read(uint64_t offset, uint8_t* data, uint32_t size) = 0;
    virtual void write(uint64_t offset, const uint8_t* data, uint32_t size) = 0;
};

class IoBus {
public:
    // Ranges must not overlap; a device may be added at several ranges.
    void add(uint64_t base, uint64_t len, IoDevice* dev);
    // Unclaimed reads return all ones, like a PC bus with nothing decoding the
    // address; unclaimed writes are dropped. Returns whether a device claimed it.
    bool read(uint64_t addr, uint8_t* data, uint32_t size) const;
    bool write(uint64_t addr, const uint8_t* data, uint32_t size) const;

private:
    struct Range {
        uint64_t base, len;
        IoDevice* dev;
    };
    const Range* find(uint64_t addr, uint32_t size) const;
    std::vector<Range> ranges_;  // sorted by base
};

}  // namespace minivmm
