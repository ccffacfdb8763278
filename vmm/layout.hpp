// Where minivmm puts things in guest-physical memory below 1 MiB, and why there.
#pragma once
#include <cstdint>

namespace minivmm::layout {

constexpr uint64_t kGdt = 0x500;          // after the real-mode IVT and BIOS data area
constexpr uint64_t kBootStack = 0x6ff0;   // the 64-bit entry needs none, but a sane RSP helps dumps
constexpr uint64_t kZeroPage = 0x7000;    // struct boot_params, one page
constexpr uint64_t kPml4 = 0x9000;        // identity map for the 64-bit entry:
constexpr uint64_t kPdpt = 0xa000;        //   PML4 -> PDPT -> 4 PDs of 2 MiB pages = 4 GiB
constexpr uint64_t kPd = 0xb000;          //   0xb000..0xefff
constexpr uint64_t kCmdline = 0x20000;    // command line, up to the kernel's cmdline_size
constexpr uint64_t kCmdlineMax = 0x10000;
constexpr uint64_t kEbda = 0x9fc00;       // [kEbda, 1 MiB) is reported reserved, as on a PC
constexpr uint64_t kAcpi = 0xe0000;       // RSDP here too: the BIOS area Linux scans for it
constexpr uint64_t kAcpiEnd = 0x100000;
constexpr uint64_t kKernel = 0x100000;    // protected-mode kernel, the protocol's classic spot
constexpr uint64_t kKernelRun = 0x1000000;  // where a relocatable x86-64 kernel decompresses to

}  // namespace minivmm::layout
