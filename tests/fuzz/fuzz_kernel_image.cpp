// libFuzzer target: the --kernel file. Kernel files are the user's input, not
// the guest's, but a corrupt or hostile one must still end in one error line:
// the bzImage header, the payload's compressed stream (every format), the ELF
// checks and the load into guest RAM. The first byte picks what the rest is.
// Beyond not crashing, what is accepted must hold what the checks promise.
// A kernel file's first 0x1f1 bytes (boot sector code) are never read, so
// inputs start at the setup header: a whole bzImage fits the usual 1 KiB
// input bound.
#include <cstring>
#include <optional>
#include <vector>

#include "tests/fuzz/fuzz_check.hpp"
#include "vmm/bzimage.hpp"
#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/kernel_image.hpp"

using namespace minivmm;

namespace {

constexpr uint64_t kRam = 64u << 20;
// A payload may state at most this much, so one input cannot take seconds.
constexpr uint32_t kMaxOut = 16u << 20;

void check_elf(const ElfKernel& k, size_t file_size) {
    CHECK(!k.segs.empty() && k.start == k.segs.front().paddr && k.start < k.end);
    bool entry_in_exec = false;
    for (size_t i = 0; i < k.segs.size(); i++) {
        const ElfSegment& s = k.segs[i];
        CHECK(s.filesz <= s.memsz && s.offset <= file_size && s.filesz <= file_size - s.offset);
        CHECK(s.paddr >= kElfLowestLoad && s.paddr + s.memsz <= kElfHighestEnd && s.paddr + s.memsz <= k.end);
        if (i) CHECK(s.paddr >= k.segs[i - 1].paddr + k.segs[i - 1].memsz);
        entry_in_exec |= s.exec && k.entry >= s.paddr && k.entry < s.paddr + s.filesz;
    }
    CHECK(entry_in_exec);
}

void kernel_file(const uint8_t* data, size_t size, std::optional<BootMode> mode) {
    static GuestMemory mem(kRam);
    // A vmlinux is read from its first byte; anything else from the header on.
    bool elf = size >= 4 && std::memcmp(data, "\x7f" "ELF", 4) == 0;
    std::vector<uint8_t> file(elf ? 0 : 0x1f1, 0);
    file.insert(file.end(), data, data + size);
    if (file.size() >= 0x264) {  // init_size bounds what the payload may state
        uint32_t init;
        std::memcpy(&init, &file[0x260], 4);
        init = std::min(init, kMaxOut);
        std::memcpy(&file[0x260], &init, 4);
    }
    KernelImage k;
    try {
        k = make_kernel_image(std::move(file), "fuzz", mode);
    } catch (const UserError&) {
        return;
    }
    if (k.mode == BootMode::Direct) {
        check_elf(k.elf, k.elf_file.size());
        CHECK(k.from_bzimage || k.hdr.init_size == k.elf.end - k.elf.start);
        if (k.from_bzimage) CHECK(k.elf_file.size() <= kMaxOut);
    } else {
        CHECK(mode == BootMode::Decompressor && k.from_bzimage);
    }
    try {
        BootPlan plan = load_linux(mem, k, {}, "console=ttyS0", 0);
        CHECK(plan.kernel_end <= kRam);
        if (k.mode == BootMode::Direct) CHECK(plan.entry == k.elf.entry);
    } catch (const UserError&) {
    }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    uint8_t pick = data[0];
    data++, size--;
    switch (pick % 4) {
        case 0: kernel_file(data, size, std::nullopt); break;
        case 1: kernel_file(data, size, BootMode::Decompressor); break;
        case 2:
            try {
                Compression c;
                auto out = decompress_payload(data, size, kMaxOut, &c);
                CHECK(!out.empty() && out.size() <= kMaxOut);
            } catch (const UserError&) {
            }
            break;
        case 3:
            try {
                check_elf(parse_elf_kernel(data, size), size);
            } catch (const UserError&) {
            }
            break;
    }
    return 0;
}
