#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>

#include <cstring>
#include <thread>

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
    w.write(Kind::Ack, "ready", {reinterpret_cast<const uint8_t*>(why.data()), why.size()});
    w.write(Kind::Go, "", std::span<const uint8_t>());
    w.write(Kind::End, "", std::span<const uint8_t>());
    ::lseek(f.get(), 0, SEEK_SET);
    RecordReader r(f.get(), "t");
    EXPECT_EQ(r.read().name, "ready");
    EXPECT_EQ(r.read().kind, Kind::Go);
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

// A version 1 stream (whose destination ran the guest without waiting for
// a go) is refused in one line that names both versions.
TEST(StateRecords, VersionOneIsRefused) {
    auto bytes = two_records();
    bytes[8] = 1;
    Fd f = file_with(bytes);
    RecordReader r(f.get(), "migration on unix:/x");
    std::string e = error_of([&] { r.header(); });
    EXPECT_NE(e.find("saved state version 1, this minivmm reads version 2"), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos);
}

namespace {
Fd pipe_pair(Fd& read_end) {
    int p[2];
    EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
    read_end = Fd(p[0]);
    return Fd(p[1]);
}
std::vector<uint8_t> big_body() {
    std::vector<uint8_t> b(1 << 20);
    for (size_t i = 0; i < b.size(); i++) b[i] = uint8_t(i * 7);
    return b;
}
}  // namespace

// A reader that takes nothing (a destination stopped, a pipe's reader
// stuck) fails the write after the stall, for a socket and for a pipe in
// blocking mode alike; without the bound each would block for ever.
TEST(StateRecords, AStuckReaderFailsTheWriteAfterTheStall) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    Fd a(sv[0]), b(sv[1]);
    RecordWriter w(a.get(), 200);
    std::string e = error_of([&] { w.write(Kind::Section, "big", big_body()); });
    EXPECT_NE(e.find("the reader took nothing for 200 ms"), std::string::npos) << e;

    Fd read_end;
    Fd pipe_w = pipe_pair(read_end);
    RecordWriter pw(pipe_w.get(), 200);
    e = error_of([&] { pw.write(Kind::Section, "big", big_body()); });
    EXPECT_NE(e.find("the reader took nothing for 200 ms"), std::string::npos) << e;
}

// A file passed with O_NONBLOCK is full now and then, not failed: the
// writer waits for its reader, and every byte arrives.
TEST(StateRecords, ANonBlockingPipeIsWaitedFor) {
    Fd read_end;
    Fd pipe_w = pipe_pair(read_end);
    ASSERT_EQ(fcntl(pipe_w.get(), F_SETFL, O_NONBLOCK), 0);
    std::vector<uint8_t> got;
    std::thread reader([&] {
        uint8_t buf[4096];
        ssize_t n;
        while ((n = read(read_end.get(), buf, sizeof buf)) > 0) {
            got.insert(got.end(), buf, buf + n);
            usleep(100);  // slower than the writer: the pipe fills
        }
    });
    uint64_t written = 0;
    std::string e = error_of([&] {
        RecordWriter w(pipe_w.get(), 5000);
        w.header();
        w.write(Kind::Section, "big", big_body());
        written = w.bytes_written();
    });
    pipe_w = Fd();
    reader.join();
    EXPECT_EQ(e, "(no error)");
    ASSERT_EQ(got.size(), written);
    Fd f = file_with(got);
    RecordReader r(f.get(), "t");
    r.header();
    EXPECT_EQ(r.read().body, big_body());
}

// A pipe whose reader has gone is EPIPE, an error for the caller, once
// minivmm ignores SIGPIPE (main does, before anything else).
TEST(StateRecords, APipeWithoutReaderIsAnError) {
    struct sigaction old {};
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    ASSERT_EQ(sigaction(SIGPIPE, &ign, &old), 0);
    Fd read_end;
    Fd pipe_w = pipe_pair(read_end);
    read_end = Fd();
    RecordWriter w(pipe_w.get());
    std::string e = error_of([&] { w.header(); });
    sigaction(SIGPIPE, &old, nullptr);
    EXPECT_NE(e.find("Broken pipe"), std::string::npos) << e;
}

// Reads are bounded as writes are: a stream that stops mid-record fails
// after the stall, an answer that does not come whole fails by its
// deadline, and a clean end where a record would start is told apart.
TEST(StateRecords, ReadsAreBounded) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    Fd a(sv[0]), b(sv[1]);
    uint32_t part = uint32_t(Kind::Section);
    ASSERT_EQ(write(b.get(), &part, sizeof part), ssize_t(sizeof part));
    RecordReader stalled(a.get(), "migration", 200);
    std::string e = error_of([&] { stalled.read(); });
    EXPECT_NE(e.find("migration: nothing arrived for 200 ms"), std::string::npos) << e;
    EXPECT_FALSE(stalled.ended());

    RecordReader answer(a.get(), "the destination");
    e = error_of([&] { answer.read_within(200); });
    EXPECT_NE(e.find("no answer within 200 ms"), std::string::npos) << e;

    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    Fd c(sv[0]), d(sv[1]);
    d = Fd();
    RecordReader closed(c.get(), "t", 5000);
    EXPECT_NE(error_of([&] { closed.read(); }).find("ends before the next record"), std::string::npos);
    EXPECT_TRUE(closed.ended());
}

// A non-blocking fd without a bound is read as a blocking one would be.
TEST(StateRecords, ANonBlockingFdIsReadWhole) {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    Fd a(sv[0]), b(sv[1]);
    std::thread late([&] {
        usleep(50000);
        RecordWriter w(b.get());
        w.write(Kind::Go, "", {});
    });
    RecordReader r(a.get(), "t");
    Kind k = Kind::End;
    std::string e = error_of([&] { k = r.read().kind; });
    late.join();
    EXPECT_EQ(e, "(no error)");
    EXPECT_EQ(k, Kind::Go);
}
