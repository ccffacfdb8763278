#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstring>

#include "tests/unit/state_file.hpp"
#include "tests/unit/test_helpers.hpp"
#include "vmm/fd.hpp"
#include "vmm/state_records.hpp"

using namespace minivmm;
using namespace minivmm::state;
using namespace minivmm::testing;

namespace {

std::vector<uint8_t> two_records() {
    Fd f = temp_file();
    RecordWriter w(f.get());
    w.header();
    Writer body;
    body.u32(7);
    body.str("eth");
    w.write(Kind::Section, "net0", body.data());
    w.write(Kind::End, "", {});
    return file_bytes(f.get());
}

}  // namespace

TEST(StateStream, ReaderReadsWhatWriterWrote) {
    Writer w;
    w.u8(1);
    w.u16(0x1234);
    w.u64(~0ull);
    w.boolean(true);
    w.str("hello");
    Reader r(w.data(), "t");
    EXPECT_EQ(r.u8(), 1);
    EXPECT_EQ(r.u16(), 0x1234);
    EXPECT_EQ(r.u64(), ~0ull);
    EXPECT_TRUE(r.boolean());
    EXPECT_EQ(r.str(16), "hello");
    r.expect_end();
}

TEST(StateStream, ShortOrOversizedOrLeftOverIsRefused) {
    Writer w;
    w.u16(5);
    Reader short_read(w.data(), "dev");
    EXPECT_THROW(short_read.u32(), Error);
    Writer big;
    big.str("0123456789");
    Reader too_big(big.data(), "dev");
    EXPECT_NE(error_of([&] { too_big.str(4); }).find("at most 4"), std::string::npos);
    Reader left(big.data(), "dev");
    left.u32();
    EXPECT_THROW(left.expect_end(), Error);
    Writer flag;
    flag.u8(2);
    Reader bad_flag(flag.data(), "dev");
    EXPECT_THROW(bad_flag.boolean(), Error);
}

TEST(StateRecords, RoundTrip) {
    Fd f = file_with(two_records());
    RecordReader r(f.get(), "snap");
    r.header();
    Record a = r.read();
    EXPECT_EQ(a.kind, Kind::Section);
    EXPECT_EQ(a.name, "net0");
    Reader body(a.body, a.name);
    EXPECT_EQ(body.u32(), 7u);
    EXPECT_EQ(body.str(8), "eth");
    EXPECT_EQ(r.read().kind, Kind::End);
}

TEST(StateRecords, EveryFlippedByteIsRefused) {
    auto good = two_records();
    for (size_t i = 0; i < good.size(); i++) {
        auto bad = good;
        bad[i] ^= 0x41;
        Fd f = file_with(bad);
        RecordReader r(f.get(), "snap");
        EXPECT_THROW(
            {
                r.header();
                r.read();
                r.read();
            },
            Error)
            << "byte " << i;
    }
}

TEST(StateRecords, EveryTruncationIsRefused) {
    auto good = two_records();
    for (size_t n = 0; n < good.size(); n++) {
        Fd f = file_with({good.begin(), good.begin() + long(n)});
        RecordReader r(f.get(), "snap");
        std::string e = error_of([&] {
            r.header();
            r.read();
            r.read();
        });
        EXPECT_FALSE(e.empty()) << "cut at " << n;
    }
}

TEST(StateRecords, OtherVersionIsNamed) {
    auto bytes = two_records();
    bytes[8] = 9;
    Fd f = file_with(bytes);
    RecordReader r(f.get(), "snap");
    EXPECT_NE(error_of([&] { r.header(); }).find("version 9"), std::string::npos);
}

TEST(StateRecords, HugeLengthIsRefusedBeforeAllocating) {
    auto bytes = two_records();
    uint64_t huge = 1ull << 60;
    std::memcpy(bytes.data() + 12 + 8, &huge, sizeof huge);  // body_len of the first record
    Fd f = file_with(bytes);
    RecordReader r(f.get(), "snap");
    r.header();
    EXPECT_NE(error_of([&] { r.read(); }).find("too large"), std::string::npos);
}

// Records with an empty name or body, as the Ack a migration's destination
// sends, check the same on both sides, whatever an empty part's pointer is.
TEST(StateRecords, EmptyPartsCheckOut) {
    Fd f = temp_file();
    RecordWriter w(f.get());
    std::string why;
    w.write(Kind::Ack, "running", {reinterpret_cast<const uint8_t*>(why.data()), why.size()});
    w.write(Kind::End, "", std::span<const uint8_t>());
    ::lseek(f.get(), 0, SEEK_SET);
    RecordReader r(f.get(), "t");
    EXPECT_EQ(r.read().name, "running");
    EXPECT_EQ(r.read().kind, Kind::End);
}

// A reader gone (a migration's destination that died) is an error, not a
// SIGPIPE that ends the process.
TEST(StateRecords, AClosedSocketIsAnError) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    Fd a(sv[0]), b(sv[1]);
    b = Fd();
    RecordWriter w(a.get());
    EXPECT_NE(error_of([&] { w.header(); }).find("Broken pipe"), std::string::npos);
}
