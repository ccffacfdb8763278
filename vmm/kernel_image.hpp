// The --kernel file, whatever its kind, turned into what the loader needs:
// a bzImage for its own decompressor, or an uncompressed ELF kernel (from a
// bzImage's payload, decompressed here, or a vmlinux file) to enter directly.
#pragma once
#include <asm/bootparam.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vmm/elf_kernel.hpp"
#include "vmm/kernel_payload.hpp"

namespace minivmm {

enum class BootMode { Direct, Decompressor };

struct KernelImage {
    BootMode mode = BootMode::Direct;
    setup_header hdr{};          // the bzImage's, or made up for a vmlinux
    size_t hdr_len = 0;          // bytes of hdr the kernel defines
    bool from_bzimage = true;
    // Decompressor: the bzImage's protected-mode part (decompressor and payload).
    std::vector<uint8_t> protected_mode;
    // Direct: the ELF kernel's bytes and its checked segments.
    std::vector<uint8_t> elf_file;
    ElfKernel elf;
    // For --verbose: what was done to get here, and how long it took.
    uint64_t file_bytes = 0;
    double read_ms = 0;          // reading the file
    Compression compression = Compression::Unknown;
    uint64_t payload_bytes = 0;
    double prepare_ms = 0;
};

// A bzImage's payload may decompress to no more than this, nor more than
// the init_size its header asks for (the kernel needs that much anyway).
constexpr uint64_t kMaxDecompressedKernel = 512ull << 20;

// From the file's bytes: a vmlinux ELF file is always booted directly; a
// bzImage directly unless mode says Decompressor. Throws UserError naming
// the file and what is wrong (or that the choice of mode is impossible).
KernelImage make_kernel_image(std::vector<uint8_t> file, const std::string& name, std::optional<BootMode> mode);

// The setup header a bootloader would find in a bzImage, for a vmlinux that
// has none: the fields Linux reads when entered at its 64-bit entry.
setup_header synthesize_setup_header(const ElfKernel& k);

}  // namespace minivmm
