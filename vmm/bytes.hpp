// Little-endian loads and stores: register files, ring fields, packet headers.
#pragma once
#include <cstdint>

namespace minivmm {

inline uint64_t le_load(const uint8_t* d, uint32_t size) {
    uint64_t v = 0;
    for (uint32_t i = 0; i < size && i < 8; i++) v |= uint64_t(d[i]) << (8 * i);
    return v;
}
inline void le_store(uint8_t* d, uint32_t size, uint64_t v) {
    for (uint32_t i = 0; i < size && i < 8; i++) d[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace minivmm
