// udp_gso: a UDP stream sent with UDP segmentation offload (UDP_SEGMENT),
// and its receiver, for the integration tests' USO checks. Built static so
// the busybox test guest can run it (it fetches it over the network).
//   udp_gso send ADDR PORT BYTES SEGMENT   one sendmsg per up to 64 segments
//   udp_gso recv ADDR PORT BYTES SECONDS [timed]   until BYTES arrived or SECONDS idle
//   udp_gso spread ADDR PORT BYTES SIZE SECONDS   datagrams of SIZE, evenly over SECONDS
//   udp_gso hold ADDR PORT BYTES FILE   binds, reads nothing until FILE exists, then
//                                       until BYTES arrived or 2 s idle
// spread and hold are the migration test's held datagrams: hold leaves them
// in its socket's receive queue, in the receive buffers the NIC's datapath
// wrote, until the move is over (tests/integration/test_migration.py).
// Each datagram starts with its 8-byte offset in the stream; every byte after
// it is a function of its position, so the receiver checks contents without
// the data being kept. Prints one line: "sent BYTES DATAGRAMS SENDS" or
// "received BYTES DATAGRAMS BAD" (spread: "sent BYTES DATAGRAMS FNV", hold:
// "held BYTES DATAGRAMS BAD FNV", FNV-1a of the payload in arrival order;
// spread's offsets start at PORT << 32), with `timed` followed by the seconds from
// the first datagram to the last (make bench's rate); exits 1 on any error
// or shortfall.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <vector>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103  // include/uapi/linux/udp.h, Linux 4.18
#endif

namespace {
uint8_t pattern(uint64_t pos) { return static_cast<uint8_t>((pos * 7 + (pos >> 8)) % 251); }

// FNV-1a, 64-bit: order-sensitive, so the receiver's sum equals the
// sender's only if every byte arrived as sent and in order.
uint64_t fnv(uint64_t h, const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
constexpr uint64_t kFnvStart = 0xcbf29ce484222325ull;

// A datagram at stream offset `off`: its offset, then the pattern.
void fill(uint8_t* d, size_t n, uint64_t off) {
    std::memcpy(d, &off, 8);
    for (size_t i = 8; i < n; i++) d[i] = pattern(off + i);
}

bool intact(const uint8_t* d, size_t n) {
    uint64_t off = 0;
    if (n < 8) return false;
    std::memcpy(&off, d, 8);
    for (size_t i = 8; i < n; i++)
        if (d[i] != pattern(off + i)) return false;
    return true;
}

int fail(const char* what) {
    std::fprintf(stderr, "udp_gso: %s: %s\n", what, std::strerror(errno));
    return 1;
}

sockaddr_in address(const char* addr, const char* port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(std::atoi(port)));
    if (inet_pton(AF_INET, addr, &a.sin_addr) != 1) {
        std::fprintf(stderr, "udp_gso: bad address %s\n", addr);
        std::exit(2);
    }
    return a;
}

int send_stream(int s, uint64_t total, unsigned seg) {
    if (seg <= 8 || seg > 65000) return std::fprintf(stderr, "udp_gso: bad segment size\n"), 2;
    int gso = static_cast<int>(seg);
    if (setsockopt(s, SOL_UDP, UDP_SEGMENT, &gso, sizeof gso) < 0) return fail("UDP_SEGMENT");
    unsigned per_send = 65000 / seg;
    if (per_send > 64) per_send = 64;
    std::vector<uint8_t> buf(static_cast<size_t>(per_send) * seg);
    uint64_t off = 0, datagrams = 0, sends = 0;
    while (off < total) {
        size_t len = 0;
        for (unsigned k = 0; k < per_send && off < total; k++) {
            size_t n = static_cast<size_t>(total - off < seg ? total - off : seg);
            if (n < 8) n = 8;  // the last datagram still carries its offset
            fill(buf.data() + len, n, off);
            len += n, off += n, datagrams++;
        }
        // Full-size segments only but the last: the kernel requires it.
        ssize_t w;
        while ((w = ::send(s, buf.data(), len, 0)) < 0 && (errno == ENOBUFS || errno == EAGAIN)) usleep(1000);
        if (w != static_cast<ssize_t>(len)) return fail("send");
        sends++;
        usleep(500);  // a pace the emulated test host's queues keep up with
    }
    std::printf("sent %llu %llu %llu\n", static_cast<unsigned long long>(off),
                static_cast<unsigned long long>(datagrams), static_cast<unsigned long long>(sends));
    return 0;
}

int recv_stream(int s, uint64_t total, int seconds, bool timed) {
    int big = 32 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    std::printf("listening\n");
    std::fflush(stdout);
    std::vector<uint8_t> buf(65536);
    uint64_t got = 0, datagrams = 0, bad = 0;
    using Clock = std::chrono::steady_clock;
    Clock::time_point first, last;
    while (got < total) {
        pollfd p{s, POLLIN, 0};
        int r = poll(&p, 1, seconds * 1000);
        if (r < 0) return fail("poll");
        if (r == 0) break;
        ssize_t n = ::recv(s, buf.data(), buf.size(), 0);
        if (n < 0) return fail("recv");
        last = Clock::now();
        if (!datagrams) first = last;
        bad += !intact(buf.data(), static_cast<size_t>(n));
        got += n, datagrams++;
    }
    std::printf("received %llu %llu %llu", static_cast<unsigned long long>(got),
                static_cast<unsigned long long>(datagrams), static_cast<unsigned long long>(bad));
    if (timed) std::printf(" %.6f", std::chrono::duration<double>(last - first).count());
    std::printf("\n");
    return got == total && !bad ? 0 : 1;
}
// Unfragmented datagrams (DF set, a send too big for the path fails): the
// test sends them larger than a receive buffer, so that each fills buffers
// whole (see test_migration.py).
// The stream's offsets start at `base`: the test gives each move its own
// port, and so datagrams no earlier move's could be mistaken for.
int spread(int s, uint64_t base, uint64_t total, unsigned size, double seconds) {
    if (size <= 8 || size > 65000) return std::fprintf(stderr, "udp_gso: bad datagram size\n"), 2;
    int df = IP_PMTUDISC_DO;
    if (setsockopt(s, IPPROTO_IP, IP_MTU_DISCOVER, &df, sizeof df) < 0) return fail("IP_MTU_DISCOVER");
    std::vector<uint8_t> buf(size);
    uint64_t off = 0, datagrams = 0, h = kFnvStart;
    using Clock = std::chrono::steady_clock;
    auto start = Clock::now();
    while (off < total) {
        size_t n = static_cast<size_t>(total - off < size ? total - off : size);
        if (n < 8) n = 8;
        auto due = start + std::chrono::duration<double>(seconds * static_cast<double>(off) / static_cast<double>(total));
        auto now = Clock::now();
        if (due > now) usleep(static_cast<useconds_t>(std::chrono::duration<double, std::micro>(due - now).count()));
        fill(buf.data(), n, base + off);
        if (::send(s, buf.data(), n, 0) != static_cast<ssize_t>(n)) return fail("send");
        h = fnv(h, buf.data(), n);
        off += n, datagrams++;
    }
    std::printf("sent %llu %llu %016llx\n", static_cast<unsigned long long>(off),
                static_cast<unsigned long long>(datagrams), static_cast<unsigned long long>(h));
    return 0;
}

int hold(int s, uint64_t total, const char* file) {
    // Room for all of it unread: a datagram's buffers count whole against
    // the receive buffer. SO_RCVBUFFORCE: the guest's shell is root.
    int big = 32 << 20;
    if (setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) < 0) return fail("SO_RCVBUFFORCE");
    std::printf("bound\n");
    std::fflush(stdout);
    struct stat st;
    for (int i = 0; ::stat(file, &st) != 0; i++) {
        if (i > 9000) return std::fprintf(stderr, "udp_gso: no %s in 900 s\n", file), 1;
        usleep(100000);
    }
    std::vector<uint8_t> buf(65536);
    uint64_t got = 0, datagrams = 0, bad = 0, h = kFnvStart;
    while (got < total) {
        pollfd p{s, POLLIN, 0};
        int r = poll(&p, 1, 2000);  // all of it waits in the queue already: 2 s idle is the end
        if (r < 0) return fail("poll");
        if (r == 0) break;
        ssize_t n = ::recv(s, buf.data(), buf.size(), 0);
        if (n < 0) return fail("recv");
        bad += !intact(buf.data(), static_cast<size_t>(n));
        h = fnv(h, buf.data(), static_cast<size_t>(n));
        got += n, datagrams++;
    }
    std::printf("held %llu %llu %llu %016llx\n", static_cast<unsigned long long>(got),
                static_cast<unsigned long long>(datagrams), static_cast<unsigned long long>(bad),
                static_cast<unsigned long long>(h));
    return got == total && !bad ? 0 : 1;
}
}  // namespace

int main(int argc, char** argv) {
    bool spreading = argc == 7 && !std::strcmp(argv[1], "spread");
    if (argc != 6 && argc != 7) {
        std::fprintf(stderr, "usage: udp_gso send|recv|spread|hold ADDR PORT BYTES SEGMENT|SECONDS|SIZE|FILE "
                             "[timed|SECONDS]\n");
        return 2;
    }
    sockaddr_in a = address(argv[2], argv[3]);
    uint64_t total = std::strtoull(argv[4], nullptr, 10);
    int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return fail("socket");
    if (!std::strcmp(argv[1], "send")) {
        if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return fail("connect");
        return send_stream(s, total, static_cast<unsigned>(std::atoi(argv[5])));
    }
    if (spreading) {
        if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return fail("connect");
        return spread(s, static_cast<uint64_t>(ntohs(a.sin_port)) << 32, total, static_cast<unsigned>(std::atoi(argv[5])),
                      std::atof(argv[6]));
    }
    if (!std::strcmp(argv[1], "hold") && argc == 6) {
        if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return fail("bind");
        return hold(s, total, argv[5]);
    }
    if (!std::strcmp(argv[1], "recv")) {
        if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return fail("bind");
        return recv_stream(s, total, std::atoi(argv[5]), argc > 6 && !std::strcmp(argv[6], "timed"));
    }
    std::fprintf(stderr, "udp_gso: send, recv, spread or hold, not %s\n", argv[1]);
    return 2;
}
