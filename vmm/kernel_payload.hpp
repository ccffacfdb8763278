// The compressed kernel inside a bzImage, decompressed here instead of by the
// kernel's own decompressor (which is slow where the guest's CPU is emulated).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace minivmm {

enum class Compression { Gzip, Xz, Lzma, Lz4, Zstd, Bzip2, Lzo, Unknown };

// Known from the payload's first bytes (the compressors' own magic numbers).
Compression detect_compression(const uint8_t* data, size_t len);
const char* compression_name(Compression c);

// The payload as the kernel's build writes it: one compressed stream followed
// by the uncompressed size as 4 little-endian bytes (gzip's own trailer; the
// kernel appends it for the other formats). Decompresses exactly that many
// bytes, refusing a size above max_out, a stream that yields more or fewer,
// and a format minivmm does not decode (bzip2, lzo: the kernel's decompressor
// can, with --boot=decompressor). Throws UserError(why), without the file's name.
std::vector<uint8_t> decompress_payload(const uint8_t* data, size_t len, size_t max_out, Compression* found);

}  // namespace minivmm
