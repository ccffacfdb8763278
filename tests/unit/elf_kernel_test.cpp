// Checking and loading an uncompressed ELF kernel: what Linux's vmlinux looks
// like is accepted and placed; each way a file can lie about itself is refused.
#include "vmm/elf_kernel.hpp"

#include <gtest/gtest.h>

#include <functional>

#include "tests/unit/kernel_files.hpp"
#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
Elf64_Ehdr& ehdr(std::vector<uint8_t>& f) { return *reinterpret_cast<Elf64_Ehdr*>(f.data()); }
Elf64_Phdr& phdr(std::vector<uint8_t>& f, size_t i) {
    return *reinterpret_cast<Elf64_Phdr*>(f.data() + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr));
}
ElfKernel parse(const std::vector<uint8_t>& f) { return parse_elf_kernel(f.data(), f.size()); }
}  // namespace

TEST(ElfKernel, AcceptsAVmlinuxShapedFile) {
    auto f = small_vmlinux();
    ElfKernel k = parse(f);
    EXPECT_EQ(k.entry, 0x1000000u);
    ASSERT_EQ(k.segs.size(), 2u);
    EXPECT_EQ(k.start, 0x1000000u);
    EXPECT_EQ(k.end, 0x1205000u);
    EXPECT_TRUE(k.segs[0].exec);
    EXPECT_FALSE(k.segs[1].exec);
}

TEST(ElfKernel, LoadsSegmentsAtTheirPhysicalAddressesAndZeroesTheTail) {
    GuestMemory mem(64u << 20);
    std::memset(mem.ptr(0x1000000, 0x300000), 0xee, 0x300000);  // what a reused page might hold
    auto f = small_vmlinux();
    ElfKernel k = parse(f);
    load_elf_kernel(mem, k, f.data());
    EXPECT_EQ(*mem.ptr(0x1000000, 1), 0x90);
    EXPECT_EQ(*mem.ptr(0x1002fff, 1), 0x90);
    EXPECT_EQ(*mem.ptr(0x1200000, 1), 0x5a);
    EXPECT_EQ(*mem.ptr(0x1200fff, 1), 0x5a);
    for (uint64_t a = 0x1201000; a < 0x1205000; a += 0x7ff) EXPECT_EQ(*mem.ptr(a, 1), 0) << std::hex << a;
    EXPECT_EQ(*mem.ptr(0x1205000, 1), 0xee);  // nothing past memsz
}

struct Malformed {
    const char* name;
    std::function<void(std::vector<uint8_t>&)> damage;
    const char* says;
};

class ElfRefusals : public ::testing::TestWithParam<Malformed> {};

TEST_P(ElfRefusals, RefusedWithAReason) {
    auto f = small_vmlinux();
    GetParam().damage(f);
    try {
        parse(f);
        FAIL() << "accepted";
    } catch (const UserError& e) {
        EXPECT_NE(std::string(e.what()).find(GetParam().says), std::string::npos) << e.what();
    }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ElfRefusals,
    ::testing::Values(
        Malformed{"truncated_header", [](auto& f) { f.resize(40); }, "no ELF header"},
        Malformed{"bad_magic", [](auto& f) { f[1] = 'X'; }, "no ELF header"},
        Malformed{"class32", [](auto& f) { ehdr(f).e_ident[EI_CLASS] = ELFCLASS32; }, "64-bit"},
        Malformed{"big_endian", [](auto& f) { ehdr(f).e_ident[EI_DATA] = ELFDATA2MSB; }, "little-endian"},
        Malformed{"version", [](auto& f) { ehdr(f).e_version = 7; }, "version"},
        Malformed{"aarch64", [](auto& f) { ehdr(f).e_machine = EM_AARCH64; }, "not x86-64"},
        Malformed{"i386", [](auto& f) { ehdr(f).e_machine = EM_386; }, "not x86-64"},
        Malformed{"shared_object", [](auto& f) { ehdr(f).e_type = ET_DYN; }, "not an executable"},
        Malformed{"phentsize", [](auto& f) { ehdr(f).e_phentsize = 32; }, "program header size"},
        Malformed{"no_phdrs", [](auto& f) { ehdr(f).e_phnum = 0; }, "program headers"},
        Malformed{"too_many_phdrs", [](auto& f) { ehdr(f).e_phnum = 65; }, "program headers"},
        Malformed{"phoff_past_end", [](auto& f) { ehdr(f).e_phoff = f.size() - 10; }, "outside the file"},
        Malformed{"phoff_overflow", [](auto& f) { ehdr(f).e_phoff = ~0ull - 8; }, "outside the file"},
        Malformed{"phdrs_truncated", [](auto& f) { f.resize(sizeof(Elf64_Ehdr) + 60); }, "outside the file"},
        Malformed{"offset_past_end", [](auto& f) { phdr(f, 1).p_offset = f.size() + 1; }, "past the end of the file"},
        Malformed{"offset_plus_filesz_overflows",
                  [](auto& f) {
                      phdr(f, 1).p_offset = ~0ull - 0x10;
                      phdr(f, 1).p_filesz = 0x20;
                  },
                  "past the end of the file"},
        Malformed{"filesz_past_end", [](auto& f) { f.resize(f.size() - 1); }, "past the end of the file"},
        Malformed{"memsz_below_filesz", [](auto& f) { phdr(f, 1).p_memsz = 0x800; }, "more bytes in the file"},
        Malformed{"over_the_zero_page", [](auto& f) { phdr(f, 1).p_paddr = 0x7000; }, "outside"},
        Malformed{"below_1mib", [](auto& f) { phdr(f, 0).p_paddr = 0xff000; }, "outside"},
        Malformed{"paddr_plus_memsz_overflows",
                  [](auto& f) {
                      phdr(f, 1).p_paddr = ~0ull - 0xfff;
                  },
                  "outside"},
        Malformed{"beyond_guest_ram_limit", [](auto& f) { phdr(f, 1).p_paddr = 0xbffff000; }, "outside"},
        Malformed{"huge_memsz", [](auto& f) { phdr(f, 1).p_memsz = 1ull << 40; }, "outside"},
        Malformed{"overlap", [](auto& f) { phdr(f, 1).p_paddr = 0x1002000; }, "overlap"},
        Malformed{"entry_nowhere", [](auto& f) { ehdr(f).e_entry = 0x2000000; }, "entry point"},
        Malformed{"entry_in_data", [](auto& f) { ehdr(f).e_entry = 0x1200000; }, "entry point"},
        Malformed{"entry_in_bss", [](auto& f) { ehdr(f).e_entry = 0x1003000; }, "entry point"},
        Malformed{"nothing_to_load",
                  [](auto& f) {
                      phdr(f, 0).p_type = PT_NOTE;
                      phdr(f, 1).p_type = PT_NOTE;
                  },
                  "no PT_LOAD"}),
    [](const auto& p) { return std::string(p.param.name); });
