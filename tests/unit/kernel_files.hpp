// Synthetic kernel files for the loader's tests: ELF kernels built field by
// field, payloads compressed with the libraries' own encoders and framed as
// the kernel's build frames them, and bzImages that carry them.
#pragma once
#include <elf.h>
#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "tests/unit/test_helpers.hpp"
#include "vmm/kernel_payload.hpp"

namespace minivmm::testing {

struct Seg {
    uint64_t paddr, filesz, memsz;
    uint32_t flags = PF_R | PF_X;
    uint8_t fill = 0xcc;
};

// An ELF64 x86-64 executable: the headers, then each segment's file bytes in order.
inline std::vector<uint8_t> make_elf(const std::vector<Seg>& segs, uint64_t entry) {
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = entry;
    eh.e_phoff = sizeof eh;
    eh.e_ehsize = sizeof eh;
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = static_cast<uint16_t>(segs.size());
    std::vector<uint8_t> f(sizeof eh + segs.size() * sizeof(Elf64_Phdr));
    std::memcpy(f.data(), &eh, sizeof eh);
    for (size_t i = 0; i < segs.size(); i++) {
        Elf64_Phdr ph{};
        ph.p_type = PT_LOAD;
        ph.p_flags = segs[i].flags;
        ph.p_offset = f.size();
        ph.p_vaddr = 0xffffffff80000000ull + segs[i].paddr;
        ph.p_paddr = segs[i].paddr;
        ph.p_filesz = segs[i].filesz;
        ph.p_memsz = segs[i].memsz;
        ph.p_align = 0x200000;
        std::memcpy(f.data() + sizeof eh + i * sizeof ph, &ph, sizeof ph);
        f.insert(f.end(), segs[i].filesz, segs[i].fill);
    }
    return f;
}

// The kernel's usual shape: text at 16 MiB, then data with a bss tail.
inline std::vector<uint8_t> small_vmlinux() {
    return make_elf({{0x1000000, 0x3000, 0x3000, PF_R | PF_X, 0x90}, {0x1200000, 0x1000, 0x5000, PF_R | PF_W, 0x5a}},
                    0x1000000);
}

inline void append_le32(std::vector<uint8_t>& v, uint32_t x) {
    for (int i = 0; i < 4; i++) v.push_back(static_cast<uint8_t>(x >> (8 * i)));
}

// Compressed as the kernel's build does: gzip keeps its own size trailer, the
// others get the uncompressed size appended.
inline std::vector<uint8_t> compress(Compression c, const std::vector<uint8_t>& in) {
    std::vector<uint8_t> out;
    switch (c) {
        case Compression::Gzip: {
            z_stream s{};
            deflateInit2(&s, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
            out.resize(deflateBound(&s, in.size()));
            s.next_in = const_cast<uint8_t*>(in.data());
            s.avail_in = static_cast<uInt>(in.size());
            s.next_out = out.data();
            s.avail_out = static_cast<uInt>(out.size());
            if (deflate(&s, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("deflate");
            out.resize(s.total_out);
            deflateEnd(&s);
            return out;
        }
        case Compression::Xz: {
            out.resize(lzma_stream_buffer_bound(in.size()));
            size_t pos = 0;
            if (lzma_easy_buffer_encode(6, LZMA_CHECK_CRC32, nullptr, in.data(), in.size(), out.data(), &pos,
                                        out.size()) != LZMA_OK)
                throw std::runtime_error("xz");
            out.resize(pos);
            break;
        }
        case Compression::Lzma: {
            lzma_options_lzma opt;
            lzma_lzma_preset(&opt, 6);
            lzma_stream s = LZMA_STREAM_INIT;
            if (lzma_alone_encoder(&s, &opt) != LZMA_OK) throw std::runtime_error("lzma");
            out.resize(in.size() + in.size() / 2 + 4096);
            s.next_in = in.data();
            s.avail_in = in.size();
            s.next_out = out.data();
            s.avail_out = out.size();
            if (lzma_code(&s, LZMA_FINISH) != LZMA_STREAM_END) throw std::runtime_error("lzma code");
            out.resize(s.total_out);
            lzma_end(&s);
            break;
        }
        case Compression::Lz4: {
            // The legacy frame: magic, then blocks of up to 8 MiB, each
            // prefixed by its compressed length.
            constexpr size_t kBlock = 8u << 20;
            append_le32(out, 0x184c2102);
            for (size_t at = 0; at < in.size(); at += kBlock) {
                int n = static_cast<int>(std::min(kBlock, in.size() - at));
                std::vector<char> blk(static_cast<size_t>(LZ4_compressBound(n)));
                int got = LZ4_compress_default(reinterpret_cast<const char*>(in.data() + at), blk.data(), n,
                                               static_cast<int>(blk.size()));
                if (got <= 0) throw std::runtime_error("lz4");
                append_le32(out, static_cast<uint32_t>(got));
                out.insert(out.end(), blk.begin(), blk.begin() + got);
            }
            break;
        }
        case Compression::Zstd: {
            // With the content checksum, as the zstd tool writes by default.
            out.resize(ZSTD_compressBound(in.size()));
            ZSTD_CCtx* cx = ZSTD_createCCtx();
            ZSTD_CCtx_setParameter(cx, ZSTD_c_compressionLevel, 19);
            ZSTD_CCtx_setParameter(cx, ZSTD_c_checksumFlag, 1);
            size_t n = ZSTD_compress2(cx, out.data(), out.size(), in.data(), in.size());
            ZSTD_freeCCtx(cx);
            if (ZSTD_isError(n)) throw std::runtime_error("zstd");
            out.resize(n);
            break;
        }
        default: throw std::runtime_error("no encoder");
    }
    append_le32(out, static_cast<uint32_t>(in.size()));
    return out;
}

// A bzImage whose header locates payload (payload_offset/length, relative
// to the protected-mode part) after 4 KiB of stand-in decompressor code.
inline std::vector<uint8_t> bzimage_with(const std::vector<uint8_t>& payload, uint32_t init_size = 64u << 20) {
    auto f = fake_bzimage(4096, 0x020f, init_size);
    auto put32 = [&](size_t off, uint32_t v) { std::memcpy(&f[off], &v, 4); };
    put32(0x248, 4096);
    put32(0x24c, static_cast<uint32_t>(payload.size()));
    f.insert(f.end(), payload.begin(), payload.end());
    return f;
}

}  // namespace minivmm::testing
