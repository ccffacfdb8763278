#include "vmm/elf_kernel.hpp"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/layout.hpp"

namespace minivmm {

const uint64_t kElfLowestLoad = layout::kKernel;
const uint64_t kElfHighestEnd = kMmioHoleStart;

namespace {
std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
    return buf;
}
// A kernel has a handful; the bound keeps a hostile e_phnum from costing time.
constexpr unsigned kMaxPhdrs = 64;
}  // namespace

bool looks_like_elf(const uint8_t* data, size_t len) { return len >= SELFMAG && std::memcmp(data, ELFMAG, SELFMAG) == 0; }

ElfKernel parse_elf_kernel(const uint8_t* data, size_t len) {
    auto bad = [](const std::string& why) { return UserError("not a usable vmlinux: " + why); };
    Elf64_Ehdr eh;
    if (len < sizeof eh || !looks_like_elf(data, len)) throw bad("no ELF header");
    std::memcpy(&eh, data, sizeof eh);
    if (eh.e_ident[EI_CLASS] != ELFCLASS64) throw bad("not a 64-bit ELF file");
    if (eh.e_ident[EI_DATA] != ELFDATA2LSB) throw bad("not little-endian");
    if (eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT) throw bad("unknown ELF version");
    if (eh.e_machine != EM_X86_64) throw bad("machine " + std::to_string(eh.e_machine) + " is not x86-64");
    if (eh.e_type != ET_EXEC) throw bad("not an executable (ELF type " + std::to_string(eh.e_type) + ")");
    if (eh.e_phentsize != sizeof(Elf64_Phdr)) throw bad("program header size " + std::to_string(eh.e_phentsize));
    if (eh.e_phnum == 0 || eh.e_phnum > kMaxPhdrs)
        throw bad(std::to_string(eh.e_phnum) + " program headers (1 to " + std::to_string(kMaxPhdrs) + " expected)");
    if (eh.e_phoff > len || uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr) > len - eh.e_phoff)
        throw bad("program headers lie outside the file");

    ElfKernel k;
    k.entry = eh.e_entry;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        std::memcpy(&ph, data + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
        std::string seg = "segment " + std::to_string(i) + " ";
        if (ph.p_filesz > ph.p_memsz) throw bad(seg + "has more bytes in the file than in memory");
        if (ph.p_offset > len || ph.p_filesz > len - ph.p_offset) throw bad(seg + "reaches past the end of the file");
        if (ph.p_paddr < kElfLowestLoad || ph.p_paddr >= kElfHighestEnd ||
            ph.p_memsz > kElfHighestEnd - ph.p_paddr)
            throw bad(seg + "at " + hex(ph.p_paddr) + "+" + hex(ph.p_memsz) + " is outside " + hex(kElfLowestLoad) +
                      "-" + hex(kElfHighestEnd));
        k.segs.push_back({ph.p_paddr, ph.p_offset, ph.p_filesz, ph.p_memsz, (ph.p_flags & PF_X) != 0});
    }
    if (k.segs.empty()) throw bad("nothing to load (no PT_LOAD segment)");
    std::sort(k.segs.begin(), k.segs.end(), [](const auto& a, const auto& b) { return a.paddr < b.paddr; });
    for (size_t i = 1; i < k.segs.size(); i++)
        if (k.segs[i].paddr < k.segs[i - 1].paddr + k.segs[i - 1].memsz)
            throw bad("segments overlap at " + hex(k.segs[i].paddr));
    k.start = k.segs.front().paddr;
    k.end = k.segs.back().paddr + k.segs.back().memsz;
    bool entry_ok = std::any_of(k.segs.begin(), k.segs.end(), [&](const ElfSegment& s) {
        return s.exec && k.entry >= s.paddr && k.entry - s.paddr < s.filesz;
    });
    if (!entry_ok) throw bad("entry point " + hex(k.entry) + " is in no executable segment");
    return k;
}

namespace {
bool all_zero(const uint8_t* p, size_t n) { return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0); }
}  // namespace

void load_elf_kernel(GuestMemory& mem, const ElfKernel& k, const uint8_t* data) {
    // Page by page, writing only what differs: about half of a kernel's
    // image is zeros (bss, brk, padding) and fresh guest RAM reads as zeros
    // without being backed, so those pages stay unbacked until the guest
    // writes them.
    constexpr uint64_t kPage = 4096;
    for (const ElfSegment& s : k.segs) {
        uint8_t* dst = mem.ptr(s.paddr, s.memsz);
        if (!dst) throw InternalError("kernel segment at " + hex(s.paddr) + " is not in guest RAM");
        const uint8_t* src = data + s.offset;
        for (uint64_t at = 0; at < s.memsz; at += kPage) {
            uint64_t n = std::min(kPage, s.memsz - at);
            uint64_t from_file = at < s.filesz ? std::min(n, s.filesz - at) : 0;
            bool zero_src = all_zero(src + at, from_file);
            if (zero_src && all_zero(dst + at, n)) continue;
            std::memcpy(dst + at, src + at, from_file);
            std::memset(dst + at + from_file, 0, n - from_file);
        }
    }
}

}  // namespace minivmm
