// An uncompressed x86-64 Linux kernel (vmlinux, an ELF64 executable): checked
// and placed in guest RAM at its physical load addresses.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace minivmm {

class GuestMemory;

struct ElfSegment {
    uint64_t paddr, offset, filesz, memsz;
    bool exec;
};

struct ElfKernel {
    uint64_t entry = 0;             // physical: startup_64
    std::vector<ElfSegment> segs;   // PT_LOAD with memsz > 0, sorted by paddr
    uint64_t start = 0, end = 0;    // [lowest paddr, highest paddr + memsz)
};

// The kernel may start no lower: below lie the zero page, command line, page
// tables, EBDA and ACPI tables (vmm/layout.hpp).
extern const uint64_t kElfLowestLoad;
// Nor end higher: minivmm's boot page tables map the low 4 GiB, and RAM below
// the 32-bit hole ends at 3 GiB.
extern const uint64_t kElfHighestEnd;

bool looks_like_elf(const uint8_t* data, size_t len);

// Everything that can be checked from the file alone: identity, class,
// machine, program header bounds, each PT_LOAD inside the file, filesz <=
// memsz, no overflow, no overlap, within [kElfLowestLoad, kElfHighestEnd),
// and an entry point inside an executable segment's file bytes. Throws
// UserError(why), without the file's name.
ElfKernel parse_elf_kernel(const uint8_t* data, size_t len);

// Copies each segment to its paddr and zeroes the rest of its memsz. The
// caller has checked that [start, end) is RAM (throws InternalError if not).
void load_elf_kernel(GuestMemory& mem, const ElfKernel& k, const uint8_t* data);

}  // namespace minivmm
