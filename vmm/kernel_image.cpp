#include "vmm/kernel_image.hpp"

#include <chrono>
#include <cstring>

#include "vmm/bzimage.hpp"
#include "vmm/error.hpp"

namespace minivmm {

namespace {
constexpr uint32_t kHdrMagic = 0x53726448;  // "HdrS"
// x86-64's COMMAND_LINE_SIZE, 2048 with the terminating zero: the most any
// kernel takes; a vmlinux does not say what it was built with.
constexpr uint32_t kVmlinuxCmdlineMax = 2047;
constexpr uint32_t kVmlinuxAlign = 2u << 20;  // x86-64's smallest CONFIG_PHYSICAL_ALIGN

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

setup_header synthesize_setup_header(const ElfKernel& k) {
    setup_header h{};
    h.boot_flag = 0xaa55;
    h.header = kHdrMagic;
    h.version = 0x020f;  // 2.15: every field below is defined
    h.type_of_loader = 0xff;
    h.loadflags = LOADED_HIGH;
    h.kernel_alignment = kVmlinuxAlign;
    h.relocatable_kernel = 0;  // loaded where it was linked, never moved
    h.cmdline_size = kVmlinuxCmdlineMax;
    h.initrd_addr_max = 0x7fffffff;
    h.xloadflags = XLF_KERNEL_64;
    h.pref_address = k.start;
    h.init_size = static_cast<uint32_t>(k.end - k.start);  // parse_elf_kernel keeps it under 3 GiB
    return h;
}

KernelImage make_kernel_image(std::vector<uint8_t> file, const std::string& name, std::optional<BootMode> mode) {
    auto t0 = std::chrono::steady_clock::now();
    KernelImage img;
    if (looks_like_elf(file.data(), file.size())) {
        if (mode == BootMode::Decompressor)
            throw UserError("kernel '" + name + "' is an uncompressed vmlinux: it has no decompressor to boot "
                            "through; drop --boot=decompressor");
        try {
            img.elf = parse_elf_kernel(file.data(), file.size());
        } catch (const UserError& e) {
            throw UserError("kernel '" + name + "' is " + e.what());
        }
        img.from_bzimage = false;
        img.hdr = synthesize_setup_header(img.elf);
        img.hdr_len = sizeof(setup_header);
        img.elf_file = std::move(file);
        img.prepare_ms = ms_since(t0);
        return img;
    }
    BzImage bz = parse_bzimage(file, name);
    file = {};  // the protected-mode part is copied out; the rest is not needed
    img.hdr = bz.hdr;
    img.hdr_len = bz.hdr_len;
    img.mode = mode.value_or(BootMode::Direct);
    if (img.mode == BootMode::Decompressor) {
        img.protected_mode = std::move(bz.kernel);
        img.prepare_ms = ms_since(t0);
        return img;
    }
    auto bad = [&](const std::string& why) { return UserError("kernel '" + name + "': " + why); };
    // Protocol 2.08 located the payload; parse_bzimage asks for 2.12.
    uint64_t off = img.hdr.payload_offset, len = img.hdr.payload_length;
    if (len == 0) throw bad("its header locates no compressed payload; use --boot=decompressor");
    if (off > bz.kernel.size() || len > bz.kernel.size() - off)
        throw bad("its payload (" + std::to_string(len) + " bytes at " + std::to_string(off) +
                  ") reaches past the end of the file");
    img.payload_bytes = len;
    // The kernel needs init_size bytes to run anyway: a bigger payload is damage.
    uint64_t limit = std::min<uint64_t>(kMaxDecompressedKernel, img.hdr.init_size);
    try {
        img.elf_file = decompress_payload(bz.kernel.data() + off, len, limit, &img.compression);
    } catch (const UserError& e) {
        throw bad(e.what());
    }
    bz.kernel = {};
    try {
        img.elf = parse_elf_kernel(img.elf_file.data(), img.elf_file.size());
    } catch (const UserError& e) {
        throw bad(std::string("its payload is ") + e.what());
    }
    img.prepare_ms = ms_since(t0);
    return img;
}

}  // namespace minivmm
