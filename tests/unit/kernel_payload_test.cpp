// Decompressing a bzImage's payload: every format round-trips through the
// libraries' own encoders; damaged, oversized and unsupported payloads are
// refused with a reason.
#include "vmm/kernel_payload.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "tests/unit/kernel_files.hpp"
#include "vmm/error.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {

// Compressible but not trivially so, like a kernel.
std::vector<uint8_t> sample(size_t n) {
    std::vector<uint8_t> v(n);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245 + 12345;
        v[i] = (i % 64 < 48) ? static_cast<uint8_t>(i / 64) : static_cast<uint8_t>(x >> 24);
    }
    return v;
}

std::vector<uint8_t> unpack(const std::vector<uint8_t>& p, size_t max = 64u << 20, Compression* c = nullptr) {
    return decompress_payload(p.data(), p.size(), max, c);
}

class RoundTrip : public ::testing::TestWithParam<Compression> {};
}  // namespace

TEST_P(RoundTrip, DecompressesWhatTheLibraryCompressed) {
    auto data = sample(300000);
    auto packed = compress(GetParam(), data);
    Compression found = Compression::Unknown;
    EXPECT_EQ(unpack(packed, 64u << 20, &found), data);
    EXPECT_EQ(found, GetParam());
}

TEST_P(RoundTrip, RefusesATruncatedStream) {
    auto packed = compress(GetParam(), sample(300000));
    // Cut in the middle, the size trailer kept where the kernel puts it.
    std::vector<uint8_t> cut(packed.begin(), packed.begin() + static_cast<long>(packed.size() / 2));
    cut.insert(cut.end(), packed.end() - 4, packed.end());
    EXPECT_THROW(unpack(cut), UserError);
}

TEST_P(RoundTrip, RefusesCorruptData) {
    auto packed = compress(GetParam(), sample(300000));
    for (size_t i = packed.size() / 3; i < packed.size() / 3 + 64; i++) packed[i] ^= 0xa5;
    EXPECT_THROW(unpack(packed), UserError);
}

TEST_P(RoundTrip, RefusesAStreamLongerOrShorterThanItsStatedSize) {
    auto data = sample(300000);
    auto packed = compress(GetParam(), data);
    uint32_t less = static_cast<uint32_t>(data.size() - 1000), more = static_cast<uint32_t>(data.size() + 1000);
    std::memcpy(packed.data() + packed.size() - 4, &less, 4);
    EXPECT_THROW(unpack(packed), UserError);
    std::memcpy(packed.data() + packed.size() - 4, &more, 4);
    EXPECT_THROW(unpack(packed), UserError);
}

TEST_P(RoundTrip, RefusesAStatedSizeOverTheLimitBeforeDecompressing) {
    auto packed = compress(GetParam(), sample(300000));
    std::string why = error_of([&] { unpack(packed, 100000); });
    EXPECT_NE(why.find("decompresses to 0.3 MiB, more than"), std::string::npos) << why;
}

INSTANTIATE_TEST_SUITE_P(Formats, RoundTrip,
                         ::testing::Values(Compression::Gzip, Compression::Xz, Compression::Lzma, Compression::Lz4,
                                           Compression::Zstd),
                         [](const auto& p) { return std::string(compression_name(p.param)); });

TEST(Lz4Legacy, SeveralEightMiBBlocks) {
    auto data = sample((17u << 20) + 123);  // two full blocks and a short one
    auto packed = compress(Compression::Lz4, data);
    EXPECT_EQ(unpack(packed), data);
}

TEST(Lz4Legacy, RefusesABlockLengthPastTheEnd) {
    auto packed = compress(Compression::Lz4, sample(100000));
    uint32_t huge = 0x7fffffff;
    std::memcpy(packed.data() + 4, &huge, 4);
    EXPECT_NE(error_of([&] { unpack(packed); }).find("out of bounds"), std::string::npos);
}

TEST(Payload, RefusesFormatsItDoesNotDecodeNamingThemAndTheWayOut) {
    std::vector<uint8_t> bz = {'B', 'Z', 'h', '9', 1, 2, 3, 4, 5, 6, 7, 8};
    std::string why = error_of([&] { unpack(bz); });
    EXPECT_NE(why.find("bzip2"), std::string::npos) << why;
    EXPECT_NE(why.find("--boot=decompressor"), std::string::npos) << why;
    std::vector<uint8_t> lzo = {0x89, 'L', 'Z', 'O', 0, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0};
    why = error_of([&] { unpack(lzo); });
    EXPECT_NE(why.find("lzo"), std::string::npos) << why;
    std::vector<uint8_t> junk(64, 0x42);
    why = error_of([&] { unpack(junk); });
    EXPECT_NE(why.find("no compression format"), std::string::npos) << why;
    EXPECT_THROW(unpack({}), UserError);
}

TEST(Payload, RefusesAZeroOrTinyPayload) {
    std::vector<uint8_t> gz = {0x1f, 0x8b, 8};
    EXPECT_THROW(unpack(gz), UserError);
    auto packed = compress(Compression::Zstd, sample(1000));
    std::memset(packed.data() + packed.size() - 4, 0, 4);
    EXPECT_THROW(unpack(packed), UserError);
}
