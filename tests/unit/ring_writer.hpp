// Shared by the unit tests: the guest driver's two writes to a split ring,
// a descriptor and an avail entry, into GuestMemory.
#pragma once
#include <cstdint>
#include <cstring>

#include "vmm/guest_memory.hpp"

namespace minivmm::testing {

inline void write_desc(GuestMemory& mem, uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                       uint16_t next) {
    uint8_t* d = mem.ptr(table + 16ull * i, 16);
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
}

// Puts head at avail slot idx and publishes idx + 1; returns the new index.
inline uint16_t offer(GuestMemory& mem, uint64_t avail, uint16_t size, uint16_t idx, uint16_t head) {
    std::memcpy(mem.ptr(avail + 4 + 2 * (idx % size), 2), &head, 2);
    idx++;
    std::memcpy(mem.ptr(avail + 2, 2), &idx, 2);
    return idx;
}

}  // namespace minivmm::testing
