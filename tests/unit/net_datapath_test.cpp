// Frames between a port without virtio-net headers (a raw packet socket;
// here a datagram socketpair, which keeps frame boundaries the same way)
// and the rings: the header is stripped on the way out and made up on the
// way in; and frames received straight into the guest's buffers.
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "tests/unit/queue_rig.hpp"
#include "virtio/net_datapath.hpp"
#include "vmm/guest_memory.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
constexpr uint16_t kQSize = 8;
constexpr uint64_t kBuf = QueueRig::kBuf, kUsed = QueueRig::kRing.used;

struct Ring : QueueRig {
    void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
        driver.desc(i, addr, len, flags, next);
    }
    void offer(uint16_t head) { driver.offer(head); }
    uint32_t used_len(uint16_t k) const { return driver.used_elem(k).second; }
};

struct Pair {
    int fd[2] = {-1, -1};
    Pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, fd), 0); }
    ~Pair() { ::close(fd[0]), ::close(fd[1]); }
};
}  // namespace

TEST(NetDatapath, HeaderIsStrippedForAPortWithoutOne) {
    Ring r;
    Pair s;
    // The 12-byte header split 8 + 4 over two descriptors, then the frame.
    std::vector<uint8_t> frame(60);
    for (size_t i = 0; i < frame.size(); i++) frame[i] = static_cast<uint8_t>(i + 1);
    std::memset(r.mem.ptr(kBuf, 12), 0xee, 12);
    std::memcpy(r.mem.ptr(kBuf + 12, frame.size()), frame.data(), frame.size());
    r.desc(0, kBuf, 8, kNext, 1);
    r.desc(1, kBuf + 8, 4 + 20, kNext, 2);
    r.desc(2, kBuf + 32, 40, 0);
    r.offer(0);
    QueueStats st;
    std::string why;
    EXPECT_EQ(net_tx(r.q, r.mem, s.fd[0], st, 8, why, false), Work::Idle) << why;
    std::vector<uint8_t> got(2048);
    ssize_t n = ::read(s.fd[1], got.data(), got.size());
    ASSERT_EQ(n, static_cast<ssize_t>(frame.size()));
    got.resize(n);
    EXPECT_EQ(got, frame);
    EXPECT_EQ(st.packets, 1u);
    EXPECT_EQ(st.errors, 0u);
}

TEST(NetDatapath, HeaderIsMadeUpForAPortWithoutOne) {
    Ring r;
    Pair s;
    std::vector<uint8_t> frame(100, 0x5a);
    ASSERT_EQ(::write(s.fd[1], frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
    std::memset(r.mem.ptr(kBuf, 2048), 0xcc, 2048);
    r.desc(0, kBuf, 2048, kWrite);
    r.offer(0);
    NetRx rx;
    QueueStats st;
    std::string why;
    EXPECT_EQ(rx.run(r.q, r.mem, s.fd[0], {.mergeable = true, .fd_header = false, .budget = 8, .log = {}}, st, why), Work::Idle) << why;
    EXPECT_EQ(r.used_len(0), 12 + frame.size());
    const uint8_t* b = r.mem.ptr(kBuf, 12 + frame.size());
    for (int i = 0; i < 10; i++) EXPECT_EQ(b[i], 0) << "header byte " << i << ": no checksum, no GSO";
    EXPECT_EQ(b[10] | b[11] << 8, 1) << "num_buffers";
    EXPECT_EQ(std::vector<uint8_t>(b + 12, b + 12 + frame.size()), frame);
}

// With room for the largest frame taken from the ring, the fd writes each
// frame straight into the buffers; those it did not fill stay taken for the
// next frames, and release() hands them back to the ring.
TEST(NetDatapath, ReceiveStraightIntoBuffersTakenAhead) {
    Ring r;
    Pair s;
    constexpr uint32_t kLen = 9000;  // eight of them hold the largest frame
    static_assert(kQSize * kLen >= net::kMaxFrame);
    for (uint16_t h = 0; h < kQSize; h++) {
        std::memset(r.mem.ptr(kBuf + 0x4000ull * h, kLen), 0xcc, kLen);
        r.desc(h, kBuf + 0x4000ull * h, kLen, kWrite);
        r.offer(h);
    }
    // The port gives frames with a header (a tap): the device sets num_buffers.
    auto frame = [](size_t payload, uint8_t fill) {
        std::vector<uint8_t> f(net::kHeaderLen + payload, fill);
        std::memset(f.data(), 0, net::kHeaderLen);
        return f;
    };
    auto a = frame(100, 0x11), b = frame(20000, 0x22);
    // Every write to the used ring, in order (the dirty log sees them all).
    std::vector<uint64_t> used_writes;
    r.q.set_write_log([&](uint64_t gpa, uint64_t) { used_writes.push_back(gpa); });
    NetRx rx;
    QueueStats st;
    std::string why;
    ASSERT_EQ(::write(s.fd[1], a.data(), a.size()), static_cast<ssize_t>(a.size()));
    ASSERT_EQ(::write(s.fd[1], b.data(), b.size()), static_cast<ssize_t>(b.size()));
    EXPECT_EQ(rx.run(r.q, r.mem, s.fd[0], {.mergeable = true, .fd_header = true, .budget = 8, .log = {}}, st, why), Work::Idle) << why;
    ASSERT_EQ(st.packets, 2u);
    EXPECT_EQ(r.used_len(0), a.size());
    const uint8_t* got = r.mem.ptr(kBuf, a.size());
    EXPECT_EQ(got[10] | got[11] << 8, 1) << "num_buffers";
    EXPECT_EQ(std::vector<uint8_t>(got + 12, got + a.size()), std::vector<uint8_t>(a.begin() + 12, a.end()));
    EXPECT_EQ(got[a.size()], 0xcc) << "wrote past the frame";
    // The second frame fills buffers 1 and 2 and part of 3.
    EXPECT_EQ(r.used_len(1), kLen);
    EXPECT_EQ(r.used_len(2), kLen);
    EXPECT_EQ(r.used_len(3), b.size() - 2 * kLen);
    std::vector<uint8_t> all;
    for (uint16_t h = 1; h <= 3; h++) {
        const uint8_t* p = r.mem.ptr(kBuf + 0x4000ull * h, kLen);
        all.insert(all.end(), p, p + r.used_len(h));
    }
    EXPECT_EQ(all[10] | all[11] << 8, 3) << "num_buffers";
    all[10] = 0;
    EXPECT_EQ(all, b);
    // A frame's buffers are published together: the driver takes num_buffers
    // entries as soon as it sees the first, so the index moves once a frame.
    const uint64_t idx = kUsed + 2;
    auto elem = [](uint64_t k) { return kUsed + 4 + 8 * k; };
    EXPECT_EQ(used_writes, (std::vector<uint64_t>{elem(0), idx, elem(1), elem(2), elem(3), idx}));
    EXPECT_EQ(r.q.last_avail(), kQSize) << "the buffers for the next frame were not taken ahead";
    rx.release(r.q);
    EXPECT_EQ(r.q.last_avail(), 4) << "release: the ring continues after the last buffer filled";
}

// Without mergeable buffers, one big buffer (a driver's "big packets") is
// room enough for any frame: it too is written straight.
TEST(NetDatapath, ReceiveStraightIntoOneBigBuffer) {
    Ring r;
    Pair s;
    constexpr uint32_t kLen = net::kMaxFrame;
    r.desc(0, kBuf, kLen, kWrite);
    r.offer(0);
    std::vector<uint8_t> f(3000, 0x33);
    ASSERT_EQ(::write(s.fd[1], f.data(), f.size()), static_cast<ssize_t>(f.size()));
    NetRx rx;
    QueueStats st;
    std::string why;
    EXPECT_EQ(rx.run(r.q, r.mem, s.fd[0], {.mergeable = false, .fd_header = false, .budget = 8, .log = {}}, st, why), Work::Idle) << why;
    EXPECT_EQ(r.used_len(0), 12 + f.size());
    const uint8_t* b = r.mem.ptr(kBuf, 12 + f.size());
    for (int i = 0; i < 10; i++) EXPECT_EQ(b[i], 0) << "header byte " << i;
    EXPECT_EQ(b[10] | b[11] << 8, 1) << "num_buffers";
    EXPECT_EQ(std::vector<uint8_t>(b + 12, b + 12 + f.size()), f);
}

TEST(NetDatapath, TooShortForAHeaderIsDroppedNotSent) {
    Ring r;
    Pair s;
    r.desc(0, kBuf, 10, 0);  // less than the header
    r.offer(0);
    QueueStats st;
    std::string why;
    net_tx(r.q, r.mem, s.fd[0], st, 8, why, false);
    uint8_t b[64];
    EXPECT_LT(::read(s.fd[1], b, sizeof b), 0);
    EXPECT_EQ(st.errors, 1u);
}

// A header with no frame after it is nothing to send: a port without
// headers would get a write of nothing, which sends nothing, and a tap
// refuses a header alone. Dropped and counted, never counted as sent.
TEST(NetDatapath, HeaderAloneIsDroppedNotCountedAsSent) {
    for (bool fd_header : {false, true}) {
        Ring r;
        Pair s;
        r.desc(0, kBuf, net::kHeaderLen, 0);
        r.offer(0);
        QueueStats st;
        std::string why;
        EXPECT_EQ(net_tx(r.q, r.mem, s.fd[0], st, 8, why, fd_header), Work::Idle) << why;
        uint8_t b[64];
        EXPECT_LT(::recv(s.fd[1], b, sizeof b, MSG_DONTWAIT), 0) << "fd_header " << fd_header;
        EXPECT_EQ(st.packets, 0u) << "fd_header " << fd_header;
        EXPECT_EQ(st.errors, 1u) << "fd_header " << fd_header;
        EXPECT_EQ(r.used_len(0), 0u);
    }
}
