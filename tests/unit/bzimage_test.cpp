#include "vmm/bzimage.hpp"

#include <gtest/gtest.h>

#include "tests/unit/test_helpers.hpp"
#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/layout.hpp"

using namespace minivmm;
using minivmm::testing::fake_bzimage;

TEST(BzImage, AcceptsValidHeader) {
    auto img = parse_bzimage(fake_bzimage(), "k");
    EXPECT_EQ(img.hdr.version, 0x020f);
    EXPECT_EQ(img.kernel.size(), 4096u);
}

TEST(BzImage, RejectsGarbageTruncatedOldAnd32Bit) {
    EXPECT_THROW(parse_bzimage(std::vector<uint8_t>(100), "k"), UserError);
    EXPECT_THROW(parse_bzimage(std::vector<uint8_t>(8192, 0), "k"), UserError);
    auto old = fake_bzimage(4096, 0x0206);
    EXPECT_THROW(parse_bzimage(old, "k"), UserError);
    auto k32 = fake_bzimage();
    k32[0x236] = 0;
    EXPECT_THROW(parse_bzimage(k32, "k"), UserError);
    auto zimage = fake_bzimage();
    zimage[0x211] = 0;
    EXPECT_THROW(parse_bzimage(zimage, "k"), UserError);
    auto nopayload = fake_bzimage(0);
    EXPECT_THROW(parse_bzimage(nopayload, "k"), UserError);
}

TEST(BzImage, SetupSectsZeroMeansFour) {
    auto f = fake_bzimage(8192);
    f[0x1f1] = 0;
    auto img = parse_bzimage(f, "k");
    EXPECT_EQ(img.kernel.size(), f.size() - 5 * 512);
}

namespace {
KernelImage for_decompressor(std::vector<uint8_t> file) {
    return make_kernel_image(std::move(file), "k", BootMode::Decompressor);
}
}  // namespace

TEST(LoadLinux, FillsZeroPageAndPlacesEverything) {
    GuestMemory mem(256ull << 20);
    auto img = for_decompressor(fake_bzimage());
    std::vector<uint8_t> initrd(3 << 20, 0xab);
    BootPlan plan = load_linux(mem, img, initrd, "console=ttyS0 hello", 0xe0000);
    EXPECT_EQ(plan.entry, layout::kKernel + 0x200);
    EXPECT_EQ(*mem.ptr(layout::kKernel, 1), 0x90);

    auto* bp = mem.at<boot_params>(layout::kZeroPage);
    EXPECT_EQ(bp->hdr.header, 0x53726448u);
    EXPECT_EQ(bp->hdr.type_of_loader, 0xff);
    EXPECT_STREQ(reinterpret_cast<char*>(mem.ptr(bp->hdr.cmd_line_ptr, 20)), "console=ttyS0 hello");
    EXPECT_EQ(bp->acpi_rsdp_addr, 0xe0000u);
    // The initrd sits page-aligned at the top of RAM, above the decompressed kernel.
    EXPECT_EQ(bp->hdr.ramdisk_size, initrd.size());
    EXPECT_EQ(bp->hdr.ramdisk_image % 4096, 0u);
    EXPECT_LE(bp->hdr.ramdisk_image + initrd.size(), 256ull << 20);
    EXPECT_GE(bp->hdr.ramdisk_image, layout::kKernelRun + 0x200000);
    EXPECT_EQ(*mem.ptr(bp->hdr.ramdisk_image, 1), 0xab);
    EXPECT_GE(bp->e820_entries, 3);
}

TEST(LoadLinux, RefusesWhatDoesNotFit) {
    GuestMemory mem(64ull << 20);
    auto img = for_decompressor(fake_bzimage(4096, 0x020f, 60u << 20));
    EXPECT_THROW(load_linux(mem, img, {}, "", 0), UserError);  // init_size beyond RAM

    auto small = for_decompressor(fake_bzimage());
    std::vector<uint8_t> big(50u << 20);
    EXPECT_THROW(load_linux(mem, small, big, "", 0), UserError);  // initrd over the kernel
    EXPECT_THROW(load_linux(mem, small, {}, std::string(5000, 'x'), 0), UserError);  // cmdline
    EXPECT_NO_THROW(load_linux(mem, small, std::vector<uint8_t>(1 << 20), std::string(2048, 'x'), 0));
}
