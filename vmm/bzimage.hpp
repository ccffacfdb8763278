// Loading a Linux bzImage per the x86 boot protocol, without firmware.
#pragma once
#include <asm/bootparam.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vmm/kernel_image.hpp"

namespace minivmm {

class GuestMemory;

struct BzImage {
    setup_header hdr{};           // as found in the file
    size_t hdr_len = 0;           // bytes of the header this kernel defines
    std::vector<uint8_t> kernel;  // the protected-mode part (after the setup sectors)
};

// Parses and validates; throws UserError naming the file and what is wrong.
BzImage parse_bzimage(const std::vector<uint8_t>& file, const std::string& name);

struct BootPlan {
    uint64_t entry;          // 64-bit entry point (guest-physical): the decompressor's or the kernel's
    uint64_t kernel_end;     // end of what the kernel occupies (the initrd lies above)
    uint64_t initrd_gpa = 0;
    uint64_t initrd_size = 0;
};

// Copies the kernel (the bzImage's protected-mode part, or the ELF kernel's
// segments), initrd and command line into guest memory and fills the zero
// page (setup header, e820, command line, initrd, RSDP). Throws UserError if
// something does not fit.
BootPlan load_linux(GuestMemory& mem, const KernelImage& image, const std::vector<uint8_t>& initrd,
                    const std::string& cmdline, uint64_t rsdp_gpa);

std::vector<uint8_t> read_file(const std::string& path, const std::string& what);

// The user's input files, read and checked before anything else is set up.
struct BootFiles {
    KernelImage kernel;
    std::vector<uint8_t> initrd;
};
BootFiles read_boot_files(const std::string& kernel, const std::string& initrd, std::optional<BootMode> mode);

}  // namespace minivmm
