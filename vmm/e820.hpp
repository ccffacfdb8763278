// The BIOS-style memory map handed to Linux in the zero page.
#pragma once
#include <asm/bootparam.h>

#include <cstdint>
#include <vector>

namespace minivmm {

// RAM below the EBDA, the reserved BIOS area up to 1 MiB, then RAM split
// around the 32-bit MMIO hole.
std::vector<boot_e820_entry> build_e820(uint64_t mem_size);

}  // namespace minivmm
