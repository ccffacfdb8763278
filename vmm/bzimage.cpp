#include "vmm/bzimage.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "vmm/e820.hpp"
#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/layout.hpp"

namespace minivmm {

namespace {
constexpr size_t kHdrOffset = 0x1f1;
constexpr uint32_t kHdrMagic = 0x53726448;  // "HdrS"
// 2.12 brought xloadflags, which is how a kernel says it has a 64-bit entry.
constexpr uint16_t kMinProtocol = 0x020c;
constexpr uint8_t kLoaderUndefined = 0xff;
}  // namespace

std::vector<uint8_t> read_file(const std::string& path, const std::string& what) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw sys_error("cannot open " + what + " '" + path + "'");
    struct stat st {};
    if (::fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw UserError(what + " '" + path + "' is not a regular file");
    }
    std::vector<uint8_t> data(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < data.size()) {
        ssize_t n = ::read(fd, data.data() + got, data.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int err = n < 0 ? errno : EIO;
            ::close(fd);
            throw sys_error("cannot read " + what + " '" + path + "'", err);
        }
        got += static_cast<size_t>(n);
    }
    ::close(fd);
    return data;
}

BzImage parse_bzimage(const std::vector<uint8_t>& file, const std::string& name) {
    auto bad = [&](const std::string& why) {
        return UserError("kernel '" + name + "' is not a usable bzImage: " + why);
    };
    BzImage img;
    if (file.size() < kHdrOffset + sizeof(setup_header) || file.size() < 0x400)
        throw bad("file too small");
    // The header's length is self-described: it ends at 0x202 + the jump offset byte.
    size_t end = 0x202 + file[0x201];
    img.hdr_len = std::min(sizeof(setup_header), end - kHdrOffset);
    std::memcpy(&img.hdr, file.data() + kHdrOffset, img.hdr_len);
    const setup_header& h = img.hdr;
    if (h.boot_flag != 0xaa55 || h.header != kHdrMagic) throw bad("no Linux boot header");
    if (h.version < kMinProtocol)
        throw bad("boot protocol " + std::to_string(h.version >> 8) + "." +
                  std::to_string(h.version & 0xff) + " is older than 2.12");
    if (!(h.loadflags & LOADED_HIGH)) throw bad("not a bzImage (zImage loads low)");
    if (!(h.xloadflags & XLF_KERNEL_64)) throw bad("no 64-bit entry point (not an x86-64 kernel?)");
    size_t setup_sects = h.setup_sects ? h.setup_sects : 4;
    size_t setup_bytes = (setup_sects + 1) * 512;
    if (setup_bytes >= file.size()) throw bad("truncated after the setup code");
    img.kernel.assign(file.begin() + static_cast<long>(setup_bytes), file.end());
    return img;
}

BootFiles read_boot_files(const std::string& kernel, const std::string& initrd, std::optional<BootMode> mode) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<uint8_t> file = read_file(kernel, "kernel");
    double read_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    uint64_t file_bytes = file.size();
    BootFiles f{make_kernel_image(std::move(file), kernel, mode), {}};
    f.kernel.file_bytes = file_bytes;
    f.kernel.read_ms = read_ms;
    if (!initrd.empty()) {
        f.initrd = read_file(initrd, "initrd");
        if (f.initrd.empty()) throw UserError("initrd '" + initrd + "' is empty");
    }
    return f;
}

namespace {
std::string mib_up(uint64_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

// Where the kernel goes and where it will run; returns the end of what it
// will occupy.
uint64_t place_kernel(GuestMemory& mem, const KernelImage& image, uint64_t low_end) {
    if (image.mode == BootMode::Direct) {
        const ElfKernel& k = image.elf;
        if (k.end > low_end)
            throw UserError("guest memory too small for this kernel: it loads up to " + mib_up(k.end) +
                            " and needs RAM above that; raise --mem");
        load_elf_kernel(mem, k, image.elf_file.data());
        return k.end;
    }
    // The kernel decompresses itself to kKernelRun and needs init_size bytes
    // there; anything less and it dies with no message, so refuse up front.
    const std::vector<uint8_t>& pm = image.protected_mode;
    uint64_t kernel_end = std::max<uint64_t>(layout::kKernelRun, layout::kKernel) +
                          std::max<uint64_t>(image.hdr.init_size, pm.size());
    if (kernel_end > low_end)
        throw UserError("guest memory too small for this kernel: it needs at least " +
                        std::to_string((kernel_end >> 20) + 16) + " MiB");
    std::memcpy(mem.ptr(layout::kKernel, pm.size()), pm.data(), pm.size());
    return kernel_end;
}
}  // namespace

BootPlan load_linux(GuestMemory& mem, const KernelImage& image, const std::vector<uint8_t>& initrd,
                    const std::string& cmdline, uint64_t rsdp_gpa) {
    const setup_header& h = image.hdr;
    const uint64_t low_end = mem.regions()[0].size;
    const uint64_t kernel_end = place_kernel(mem, image, low_end);

    size_t max_cmdline = std::min<uint64_t>(h.cmdline_size ? h.cmdline_size : 255, layout::kCmdlineMax - 1);
    if (cmdline.size() > max_cmdline)
        throw UserError("kernel command line is " + std::to_string(cmdline.size()) +
                        " bytes; this kernel accepts at most " + std::to_string(max_cmdline));
    uint8_t* cl = mem.ptr(layout::kCmdline, cmdline.size() + 1);
    std::memcpy(cl, cmdline.c_str(), cmdline.size() + 1);

    // The decompressor's startup_64 sits 512 bytes into the protected-mode
    // part; the kernel's own is the ELF entry point.
    BootPlan plan{image.mode == BootMode::Direct ? image.elf.entry : layout::kKernel + 0x200, kernel_end};
    if (!initrd.empty()) {
        // As high as the kernel allows, clear of all the kernel occupies
        // (bss and brk included) and, booting through the decompressor, of
        // where it will decompress to.
        uint64_t top = std::min<uint64_t>(low_end, uint64_t(h.initrd_addr_max) + 1);
        uint64_t start = top > initrd.size() ? ((top - initrd.size()) & ~0xfffull) : 0;
        if (start < kernel_end)
            throw UserError("initrd (" + std::to_string(initrd.size() >> 20) +
                            " MiB) does not fit in guest memory beside the kernel; raise --mem");
        std::memcpy(mem.ptr(start, initrd.size()), initrd.data(), initrd.size());
        plan.initrd_gpa = start;
        plan.initrd_size = initrd.size();
    }

    auto* bp = mem.at<boot_params>(layout::kZeroPage);
    std::memset(bp, 0, sizeof(*bp));
    std::memcpy(&bp->hdr, &image.hdr, image.hdr_len);
    bp->hdr.type_of_loader = kLoaderUndefined;
    // Only the decompressor sets it, having moved the kernel: entered
    // directly, the kernel runs where it was linked.
    bp->hdr.loadflags &= static_cast<uint8_t>(~KASLR_FLAG);
    bp->hdr.cmd_line_ptr = static_cast<uint32_t>(layout::kCmdline);
    bp->hdr.ramdisk_image = static_cast<uint32_t>(plan.initrd_gpa);
    bp->hdr.ramdisk_size = static_cast<uint32_t>(plan.initrd_size);
    // Protocol 2.14 lets the loader say where the RSDP is instead of having
    // the kernel scan the BIOS area (it still finds it there on older kernels).
    if (h.version >= 0x020e) bp->acpi_rsdp_addr = rsdp_gpa;
    auto e820 = build_e820(mem.size());
    bp->e820_entries = static_cast<uint8_t>(e820.size());
    std::copy(e820.begin(), e820.end(), bp->e820_table);
    return plan;
}

}  // namespace minivmm
