#include "vmm/kernel_payload.hpp"

#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <cstring>

#include "vmm/error.hpp"

namespace minivmm {

namespace {

bool starts_with(const uint8_t* data, size_t len, std::initializer_list<uint8_t> magic) {
    return len >= magic.size() && std::equal(magic.begin(), magic.end(), data);
}

std::string mib(uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / (1 << 20));
    return buf;
}

// zlib's inflate with gzip framing (windowBits 16 + 15).
size_t gunzip(const uint8_t* in, size_t in_len, uint8_t* out, size_t out_len) {
    z_stream s{};
    if (inflateInit2(&s, 16 + MAX_WBITS) != Z_OK) throw UserError("gzip: cannot start zlib");
    size_t done = 0, used = 0;
    int rc = Z_OK;
    // avail_in/avail_out are 32-bit: feed at most 1 GiB at a time.
    while (rc == Z_OK) {
        s.next_in = const_cast<uint8_t*>(in + used);
        s.avail_in = static_cast<uInt>(std::min<size_t>(in_len - used, 1u << 30));
        s.next_out = out + done;
        s.avail_out = static_cast<uInt>(std::min<size_t>(out_len - done, 1u << 30));
        uInt in0 = s.avail_in, out0 = s.avail_out;
        rc = inflate(&s, Z_NO_FLUSH);
        used += in0 - s.avail_in;
        done += out0 - s.avail_out;
        if (rc == Z_BUF_ERROR || (rc == Z_OK && in0 == s.avail_in && out0 == s.avail_out)) break;
    }
    inflateEnd(&s);
    if (rc != Z_STREAM_END)
        throw UserError(done == out_len ? "gzip stream is longer than its stated size"
                                        : std::string("gzip stream is corrupt or truncated") +
                                              (s.msg ? std::string(" (") + s.msg + ")" : ""));
    return done;
}

// liblzma's auto decoder reads both .xz and the older .lzma ("lzma_alone").
// The memory limit bounds the dictionary a hostile header may ask for; the
// kernel's own xz uses at most 32 MiB.
size_t unxz(const uint8_t* in, size_t in_len, uint8_t* out, size_t out_len, const char* what) {
    lzma_stream s = LZMA_STREAM_INIT;
    if (lzma_auto_decoder(&s, 256ull << 20, 0) != LZMA_OK) throw UserError(std::string(what) + ": cannot start liblzma");
    s.next_in = in;
    s.avail_in = in_len;
    s.next_out = out;
    s.avail_out = out_len;
    lzma_ret rc = lzma_code(&s, LZMA_FINISH);
    size_t done = out_len - s.avail_out;
    lzma_end(&s);
    if (rc == LZMA_STREAM_END) return done;
    const char* why = rc == LZMA_MEMLIMIT_ERROR ? "asks for a dictionary over 256 MiB"
                      : rc == LZMA_BUF_ERROR && done == out_len ? "is longer than its stated size"
                      : rc == LZMA_BUF_ERROR ? "is truncated"
                                             : "is corrupt";
    throw UserError(std::string(what) + " stream " + why);
}

// The LZ4 "legacy" frame the kernel's build makes (lz4 -l): a magic number,
// then blocks, each a 4-byte little-endian compressed length and the data,
// decompressing to 8 MiB each but the last. The magic may repeat (files
// concatenated).
size_t unlz4_legacy(const uint8_t* in, size_t in_len, uint8_t* out, size_t out_len) {
    constexpr uint32_t kMagic = 0x184c2102;
    constexpr size_t kBlock = 8u << 20;
    auto le32 = [&](size_t at) {
        uint32_t v;
        std::memcpy(&v, in + at, 4);
        return v;
    };
    size_t at = 4, done = 0;  // past the first magic (checked by the caller)
    while (done < out_len) {
        if (in_len - at < 4) throw UserError("lz4 stream is truncated");
        uint32_t n = le32(at);
        at += 4;
        if (n == kMagic) continue;
        if (n == 0 || n > in_len - at || n > size_t(LZ4_compressBound(kBlock)))
            throw UserError("lz4 block length " + std::to_string(n) + " is out of bounds");
        int cap = static_cast<int>(std::min(kBlock, out_len - done));
        int got = LZ4_decompress_safe(reinterpret_cast<const char*>(in + at), reinterpret_cast<char*>(out + done),
                                      static_cast<int>(n), cap);
        if (got < 0) throw UserError("lz4 block at offset " + std::to_string(at) + " is corrupt");
        at += n;
        done += static_cast<size_t>(got);
        // Every block but the last is full: a short one elsewhere is damage.
        if (size_t(got) < kBlock && done < out_len) throw UserError("lz4 stream is shorter than its stated size");
    }
    // What follows the stated size must be no more blocks.
    if (in_len - at >= 4 && le32(at) != kMagic && le32(at) != 0 && le32(at) <= in_len - at - 4)
        throw UserError("lz4 stream is longer than its stated size");
    return done;
}

size_t unzstd(const uint8_t* in, size_t in_len, uint8_t* out, size_t out_len) {
    // One frame: the 4 size bytes after it are not another frame.
    size_t frame = ZSTD_findFrameCompressedSize(in, in_len);
    if (ZSTD_isError(frame)) throw UserError(std::string("zstd stream: ") + ZSTD_getErrorName(frame));
    size_t got = ZSTD_decompress(out, out_len, in, frame);
    if (ZSTD_isError(got)) {
        bool longer = ZSTD_getErrorCode(got) == ZSTD_error_dstSize_tooSmall;
        throw UserError(longer ? "zstd stream is longer than its stated size"
                               : std::string("zstd stream: ") + ZSTD_getErrorName(got));
    }
    return got;
}

}  // namespace

Compression detect_compression(const uint8_t* d, size_t n) {
    if (starts_with(d, n, {0x1f, 0x8b})) return Compression::Gzip;
    if (starts_with(d, n, {0xfd, '7', 'z', 'X', 'Z', 0x00})) return Compression::Xz;
    if (starts_with(d, n, {0x5d, 0x00, 0x00})) return Compression::Lzma;
    if (starts_with(d, n, {0x02, 0x21, 0x4c, 0x18})) return Compression::Lz4;
    if (starts_with(d, n, {0x28, 0xb5, 0x2f, 0xfd})) return Compression::Zstd;
    if (starts_with(d, n, {'B', 'Z', 'h'})) return Compression::Bzip2;
    if (starts_with(d, n, {0x89, 'L', 'Z', 'O'})) return Compression::Lzo;
    return Compression::Unknown;
}

const char* compression_name(Compression c) {
    switch (c) {
        case Compression::Gzip: return "gzip";
        case Compression::Xz: return "xz";
        case Compression::Lzma: return "lzma";
        case Compression::Lz4: return "lz4";
        case Compression::Zstd: return "zstd";
        case Compression::Bzip2: return "bzip2";
        case Compression::Lzo: return "lzo";
        case Compression::Unknown: break;
    }
    return "unknown";
}

std::vector<uint8_t> decompress_payload(const uint8_t* data, size_t len, size_t max_out, Compression* found) {
    Compression c = detect_compression(data, len);
    if (found) *found = c;
    if (c == Compression::Bzip2 || c == Compression::Lzo)
        throw UserError(std::string("its payload is ") + compression_name(c) +
                        "-compressed, which minivmm does not decompress; use --boot=decompressor");
    if (c == Compression::Unknown)
        throw UserError("its payload is in no compression format minivmm knows; use --boot=decompressor");
    if (len < 8) throw UserError("its payload is truncated");
    uint32_t size;
    std::memcpy(&size, data + len - 4, 4);
    if (size == 0 || size > max_out)
        throw UserError("its payload says it decompresses to " + mib(size) + ", more than the " + mib(max_out) +
                        " allowed");
    std::vector<uint8_t> out(size);
    size_t got = 0;
    switch (c) {
        case Compression::Gzip: got = gunzip(data, len, out.data(), out.size()); break;
        case Compression::Xz: got = unxz(data, len - 4, out.data(), out.size(), "xz"); break;
        case Compression::Lzma: got = unxz(data, len - 4, out.data(), out.size(), "lzma"); break;
        case Compression::Lz4: got = unlz4_legacy(data, len - 4, out.data(), out.size()); break;
        case Compression::Zstd: got = unzstd(data, len - 4, out.data(), out.size()); break;
        default: break;
    }
    if (got != out.size())
        throw UserError(std::string(compression_name(c)) + " stream decompresses to " + std::to_string(got) +
                        " bytes, not the " + std::to_string(out.size()) + " it states");
    return out;
}

}  // namespace minivmm
