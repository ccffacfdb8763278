// From a --kernel file to what is loaded: the boot mode each kind of file
// gets, the setup header made up for a vmlinux, and the direct load's layout.
#include "vmm/kernel_image.hpp"

#include <gtest/gtest.h>

#include <functional>

#include "tests/unit/kernel_files.hpp"
#include "vmm/bzimage.hpp"
#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/layout.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
}  // namespace

TEST(KernelImage, BzImageBootsDirectByDefaultWithItsPayloadDecompressed) {
    auto elf = small_vmlinux();
    for (Compression c : {Compression::Gzip, Compression::Xz, Compression::Lz4, Compression::Zstd}) {
        KernelImage k = make_kernel_image(bzimage_with(compress(c, elf)), "k", std::nullopt);
        EXPECT_EQ(k.mode, BootMode::Direct);
        EXPECT_TRUE(k.from_bzimage);
        EXPECT_EQ(k.compression, c);
        EXPECT_EQ(k.elf_file, elf);
        EXPECT_EQ(k.elf.entry, 0x1000000u);
        EXPECT_EQ(k.hdr.version, 0x020f);  // the bzImage's own header
    }
}

TEST(KernelImage, DecompressorModeKeepsTheProtectedModePartOnly) {
    auto file = bzimage_with(compress(Compression::Gzip, small_vmlinux()));
    KernelImage k = make_kernel_image(file, "k", BootMode::Decompressor);
    EXPECT_EQ(k.mode, BootMode::Decompressor);
    EXPECT_EQ(k.protected_mode.size(), file.size() - 1024);
    EXPECT_TRUE(k.elf_file.empty());
}

TEST(KernelImage, VmlinuxIsAlwaysDirectWithAMadeUpHeader) {
    KernelImage k = make_kernel_image(small_vmlinux(), "vmlinux", std::nullopt);
    EXPECT_EQ(k.mode, BootMode::Direct);
    EXPECT_FALSE(k.from_bzimage);
    const setup_header& h = k.hdr;
    EXPECT_EQ(h.boot_flag, 0xaa55);
    EXPECT_EQ(h.header, 0x53726448u);
    EXPECT_GE(h.version, 0x020c);
    EXPECT_EQ(h.type_of_loader, 0xff);
    EXPECT_TRUE(h.loadflags & LOADED_HIGH);
    EXPECT_FALSE(h.loadflags & KASLR_FLAG);
    EXPECT_TRUE(h.xloadflags & XLF_KERNEL_64);
    EXPECT_EQ(h.kernel_alignment, 2u << 20);
    EXPECT_EQ(h.cmdline_size, 2047u);
    EXPECT_EQ(h.init_size, 0x205000u);  // the whole image, bss included
    EXPECT_EQ(h.pref_address, 0x1000000u);
    EXPECT_EQ(k.hdr_len, sizeof(setup_header));

    std::string why = error_of([] { make_kernel_image(small_vmlinux(), "vmlinux", BootMode::Decompressor); });
    EXPECT_TRUE(has(why, "uncompressed vmlinux") && has(why, "--boot=decompressor")) << why;
}

TEST(KernelImage, RefusesBadPayloadsNamingTheFile) {
    auto elf = small_vmlinux();
    auto no_payload = fake_bzimage();
    std::string why = error_of([&] { make_kernel_image(no_payload, "kern", std::nullopt); });
    EXPECT_TRUE(has(why, "kernel 'kern'") && has(why, "no compressed payload")) << why;
    // ... but the decompressor can still boot it.
    EXPECT_NO_THROW(make_kernel_image(no_payload, "kern", BootMode::Decompressor));

    auto past_end = bzimage_with(compress(Compression::Gzip, elf));
    uint32_t len = 1u << 30;
    std::memcpy(&past_end[0x24c], &len, 4);
    EXPECT_TRUE(has(error_of([&] { make_kernel_image(past_end, "k", std::nullopt); }), "past the end"));

    auto too_big = bzimage_with(compress(Compression::Gzip, elf), 0x1000);  // init_size below the ELF's size
    EXPECT_TRUE(has(error_of([&] { make_kernel_image(too_big, "k", std::nullopt); }), "more than"));

    auto not_elf = bzimage_with(compress(Compression::Zstd, std::vector<uint8_t>(5000, 7)));
    why = error_of([&] { make_kernel_image(not_elf, "k", std::nullopt); });
    EXPECT_TRUE(has(why, "its payload is not a usable vmlinux")) << why;

    std::vector<uint8_t> bz2 = {'B', 'Z', 'h', '9', 0x31, 0x41, 0x59, 0x26, 0x53, 0x59, 0, 0};
    why = error_of([&] { make_kernel_image(bzimage_with(bz2), "k", std::nullopt); });
    EXPECT_TRUE(has(why, "bzip2") && has(why, "--boot=decompressor")) << why;

    auto arm = elf;
    reinterpret_cast<Elf64_Ehdr*>(arm.data())->e_machine = EM_AARCH64;
    why = error_of([&] { make_kernel_image(arm, "vmlinux", std::nullopt); });
    EXPECT_TRUE(has(why, "kernel 'vmlinux' is not a usable vmlinux")) << why;
}

TEST(LoadLinux, DirectPlacesSegmentsEntryZeroPageAndInitrdAboveTheImage) {
    GuestMemory mem(128u << 20);
    KernelImage k = make_kernel_image(small_vmlinux(), "vmlinux", std::nullopt);
    std::vector<uint8_t> initrd(1 << 20, 0xab);
    BootPlan plan = load_linux(mem, k, initrd, "console=ttyS0", 0xe0000);
    EXPECT_EQ(plan.entry, 0x1000000u);
    EXPECT_EQ(plan.kernel_end, 0x1205000u);
    EXPECT_EQ(*mem.ptr(0x1000000, 1), 0x90);
    EXPECT_EQ(*mem.ptr(0x1200000, 1), 0x5a);
    auto* bp = mem.at<boot_params>(layout::kZeroPage);
    EXPECT_EQ(bp->hdr.boot_flag, 0xaa55);
    EXPECT_EQ(bp->hdr.header, 0x53726448u);
    EXPECT_EQ(bp->hdr.type_of_loader, 0xff);
    EXPECT_FALSE(bp->hdr.loadflags & KASLR_FLAG);
    EXPECT_EQ(bp->hdr.ramdisk_size, initrd.size());
    EXPECT_GE(bp->hdr.ramdisk_image, plan.kernel_end);
    EXPECT_EQ(*mem.ptr(bp->hdr.ramdisk_image, 1), 0xab);
    EXPECT_STREQ(reinterpret_cast<char*>(mem.ptr(bp->hdr.cmd_line_ptr, 14)), "console=ttyS0");
}

TEST(LoadLinux, DirectRefusesAnImageBeyondGuestRamOrAnInitrdThatCannotClearIt) {
    // A kernel reaching 70 MiB in a 64 MiB guest (the generic kernel's shape at --mem 64M).
    auto big = make_elf({{0x1000000, 0x1000, 0x1000, PF_R | PF_X, 0x90}, {0x4000000, 0x1000, 0x600000, PF_R | PF_W}},
                        0x1000000);
    GuestMemory small(64u << 20);
    KernelImage k = make_kernel_image(big, "vmlinux", std::nullopt);
    std::string why = error_of([&] { load_linux(small, k, {}, "", 0); });
    EXPECT_TRUE(has(why, "guest memory too small")) << why;

    GuestMemory mem(96u << 20);
    KernelImage fits = make_kernel_image(big, "vmlinux", std::nullopt);
    EXPECT_NO_THROW(load_linux(mem, fits, std::vector<uint8_t>(20u << 20), "", 0));
    why = error_of([&] { load_linux(mem, fits, std::vector<uint8_t>(30u << 20), "", 0); });
    EXPECT_TRUE(has(why, "does not fit")) << why;
}
