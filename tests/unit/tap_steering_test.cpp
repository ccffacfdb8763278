// The tap's RSS steering program, run by the kernel: BPF_PROG_TEST_RUN
// against the Toeplitz verification vectors the virtio spec takes from
// Microsoft's RSS documentation, the hash types' selection rules, an
// independent bit-by-bit Toeplitz on random keys and inputs, and a real
// multi-queue tap steering frames by the table. Needs root (CAP_BPF), as
// make test runs: without it the tests fail, not skip.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <cap-ng.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <csignal>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "netns_helpers.hpp"
#include "vhost/ports/tap.hpp"
#include "vhost/ports/tap_steering.hpp"
#include "virtio/net_rss.hpp"

namespace minivmm {
namespace {

using Bytes = std::vector<uint8_t>;

const Bytes kMsKey = {0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
                      0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
                      0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};

std::unique_ptr<TapSteering> load() {
    try {
        return std::make_unique<TapSteering>();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "cannot load the steering program (these tests need root): " << e.what();
        return nullptr;
    }
}

// An Ethernet frame: IPv4 (proto 6 TCP, 17 UDP, else no ports) or IPv6.
Bytes eth(uint16_t type) {
    Bytes f = {0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x02, 0, 0, 0, 0, 1};
    f.push_back(type >> 8), f.push_back(type & 0xff);
    return f;
}

void put16(Bytes& f, uint16_t v) { f.push_back(v >> 8), f.push_back(v & 0xff); }

Bytes ipv4(const char* src, const char* dst, uint8_t proto, uint16_t sport, uint16_t dport, uint16_t frag = 0) {
    Bytes f = eth(0x0800);
    Bytes ip = {0x45, 0, 0, 40, 0, 1};
    put16(ip, frag);
    ip.push_back(64), ip.push_back(proto), ip.push_back(0), ip.push_back(0);
    in_addr a;
    inet_pton(AF_INET, src, &a);
    ip.insert(ip.end(), (uint8_t*)&a, (uint8_t*)&a + 4);
    inet_pton(AF_INET, dst, &a);
    ip.insert(ip.end(), (uint8_t*)&a, (uint8_t*)&a + 4);
    f.insert(f.end(), ip.begin(), ip.end());
    put16(f, sport), put16(f, dport);
    f.resize(f.size() + 16);  // the rest of a TCP header, or UDP's and payload
    return f;
}

Bytes ipv6(const char* src, const char* dst, uint8_t next, uint16_t sport, uint16_t dport) {
    Bytes f = eth(0x86dd);
    Bytes ip = {0x60, 0, 0, 0, 0, 20, next, 64};
    in6_addr a;
    inet_pton(AF_INET6, src, &a);
    ip.insert(ip.end(), (uint8_t*)&a, (uint8_t*)&a + 16);
    inet_pton(AF_INET6, dst, &a);
    ip.insert(ip.end(), (uint8_t*)&a, (uint8_t*)&a + 16);
    f.insert(f.end(), ip.begin(), ip.end());
    put16(f, sport), put16(f, dport);
    f.resize(f.size() + 16);
    return f;
}

uint32_t run(const TapSteering& s, const Bytes& frame) {
    Bytes copy = frame;
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = copy.data(), .data_size_in = uint32_t(copy.size()));
    int err = bpf_prog_test_run_opts(s.program_fd(), &opts);
    EXPECT_EQ(err, 0) << "BPF_PROG_TEST_RUN: " << std::strerror(-err);
    return opts.retval;
}

// The vectors: source, destination and ports, the hash over the addresses
// alone, and over addresses and ports.
struct Vector {
    const char *src, *dst;
    uint16_t sport, dport;
    uint32_t ip_hash, l4_hash;
};
const Vector kIpv4[] = {
    {"66.9.149.187", "161.142.100.80", 2794, 1766, 0x323e8fc2, 0x51ccc178},
    {"199.92.111.2", "65.69.140.83", 14230, 4739, 0xd718262a, 0xc626b0ea},
    {"24.19.198.95", "12.22.207.184", 12898, 38024, 0xd2d0a5de, 0x5c2b394a},
    {"38.27.205.30", "209.142.163.6", 48228, 2217, 0x82989176, 0xafc7327f},
    {"153.39.163.191", "202.188.127.2", 44251, 1303, 0x5d1809c5, 0x10e828a2},
};
const Vector kIpv6[] = {
    {"3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", 2794, 1766, 0x2cc18cd5, 0x40207d3d},
    {"3ffe:501:8::260:97ff:fe40:efab", "ff02::1", 14230, 4739, 0x0f0c461c, 0xdde51bbf},
    {"3ffe:1900:4545:3:200:f8ff:fe21:67cf", "fe80::200:f8ff:fe21:67cf", 44251, 38024, 0x4b61e985, 0x02d1feef},
};

// With no guest settings the program returns the hash itself (the tap
// takes it modulo its queues), over every type, with this same key.
TEST(TapSteering, VerificationVectorsWithoutGuestSettings) {
    auto s = load();
    if (!s) return;
    for (const Vector& v : kIpv4) {
        EXPECT_EQ(run(*s, ipv4(v.src, v.dst, 6, v.sport, v.dport)), v.l4_hash) << v.src << " TCP";
        EXPECT_EQ(run(*s, ipv4(v.src, v.dst, 17, v.sport, v.dport)), v.l4_hash) << v.src << " UDP";
        EXPECT_EQ(run(*s, ipv4(v.src, v.dst, 1, v.sport, v.dport)), v.ip_hash) << v.src << " ICMP";
    }
    for (const Vector& v : kIpv6) {
        EXPECT_EQ(run(*s, ipv6(v.src, v.dst, 6, v.sport, v.dport)), v.l4_hash) << v.src << " TCP";
        EXPECT_EQ(run(*s, ipv6(v.src, v.dst, 17, v.sport, v.dport)), v.l4_hash) << v.src << " UDP";
        EXPECT_EQ(run(*s, ipv6(v.src, v.dst, 58, v.sport, v.dport)), v.ip_hash) << v.src << " ICMPv6";
    }
    EXPECT_EQ(run(*s, eth(0x0806)), 0u) << "ARP: not hashed";
}

std::vector<uint16_t> identity(unsigned n) {
    std::vector<uint16_t> t(n);
    for (unsigned i = 0; i < n; i++) t[i] = uint16_t(i);
    return t;
}

TEST(TapSteering, GuestTableAndHashTypes) {
    auto s = load();
    if (!s) return;
    auto t = identity(128);
    const Vector& v = kIpv4[0];
    s->set(net::kHashIpv4 | net::kHashTcpv4, kMsKey, t, 77);
    EXPECT_EQ(run(*s, ipv4(v.src, v.dst, 6, v.sport, v.dport)), v.l4_hash & 127);
    // UDP not enabled: the addresses' hash.
    EXPECT_EQ(run(*s, ipv4(v.src, v.dst, 17, v.sport, v.dport)), v.ip_hash & 127);
    // A fragment (more fragments, or an offset) carries no ports to trust.
    EXPECT_EQ(run(*s, ipv4(v.src, v.dst, 6, v.sport, v.dport, 0x2000)), v.ip_hash & 127);
    EXPECT_EQ(run(*s, ipv4(v.src, v.dst, 6, v.sport, v.dport, 0x0010)), v.ip_hash & 127);
    EXPECT_EQ(run(*s, ipv4(v.src, v.dst, 6, v.sport, v.dport, 0x4000)), v.l4_hash & 127) << "DF is no fragment";
    // Not hashable: the unclassified queue.
    EXPECT_EQ(run(*s, eth(0x0806)), 77u);
    const Vector& w = kIpv6[0];
    EXPECT_EQ(run(*s, ipv6(w.src, w.dst, 6, w.sport, w.dport)), 77u) << "IPv6 not enabled";

    s->set(net::kHashTcpv4, kMsKey, t, 5);
    EXPECT_EQ(run(*s, ipv4(v.src, v.dst, 6, v.sport, v.dport)), v.l4_hash & 127);
    EXPECT_EQ(run(*s, ipv4(v.src, v.dst, 1, 0, 0)), 5u) << "IPv4 alone not enabled";

    s->set(net::kHashIpv6 | net::kHashUdpv6, kMsKey, t, 3);
    EXPECT_EQ(run(*s, ipv6(w.src, w.dst, 17, w.sport, w.dport)), w.l4_hash & 127);
    EXPECT_EQ(run(*s, ipv6(w.src, w.dst, 6, w.sport, w.dport)), w.ip_hash & 127);
    EXPECT_EQ(run(*s, ipv4(v.src, v.dst, 6, v.sport, v.dport)), 3u);

    // A smaller table: the hash's low bits pick the entry.
    std::vector<uint16_t> four = {3, 2, 1, 0};
    s->set(net::kRssHashTypes, kMsKey, four, 0);
    for (const Vector& x : kIpv4) EXPECT_EQ(run(*s, ipv4(x.src, x.dst, 6, x.sport, x.dport)), 3 - (x.l4_hash & 3));
    // Back to spreading after a reset.
    s->clear();
    EXPECT_EQ(run(*s, ipv4(v.src, v.dst, 6, v.sport, v.dport)), v.l4_hash);
    // A frame that ends before its ports: the addresses' hash. (The
    // kernel's test run itself refuses a frame shorter than its IP header.)
    Bytes cut = ipv4(v.src, v.dst, 6, v.sport, v.dport);
    cut.resize(14 + 20 + 2);
    s->set(net::kRssHashTypes, kMsKey, t, 9);
    EXPECT_EQ(run(*s, cut), v.ip_hash & 127);
}

// Toeplitz by its definition, one input bit at a time.
uint32_t toeplitz_reference(const Bytes& key, const Bytes& in) {
    auto key_bit = [&](size_t i) { return i / 8 < key.size() ? (key[i / 8] >> (7 - i % 8)) & 1 : 0; };
    uint32_t hash = 0;
    for (size_t i = 0; i < 8 * in.size(); i++) {
        if (!((in[i / 8] >> (7 - i % 8)) & 1)) continue;
        uint32_t window = 0;
        for (size_t j = 0; j < 32; j++) window = window << 1 | key_bit(i + j);
        hash ^= window;
    }
    return hash;
}

TEST(TapSteering, MatchesTheDefinitionOnRandomKeysAndFlows) {
    auto s = load();
    if (!s) return;
    std::mt19937 rng(1234);
    auto t = identity(128);
    for (int round = 0; round < 200; round++) {
        Bytes key(rng() % (net::kRssMaxKey + 1));
        for (auto& b : key) b = uint8_t(rng());
        s->set(net::kRssHashTypes, key, t, 0);
        Bytes in(12);
        for (auto& b : in) b = uint8_t(rng());
        char src[16], dst[16];
        std::snprintf(src, sizeof src, "%u.%u.%u.%u", in[0], in[1], in[2], in[3]);
        std::snprintf(dst, sizeof dst, "%u.%u.%u.%u", in[4], in[5], in[6], in[7]);
        uint16_t sport = uint16_t(in[8] << 8 | in[9]), dport = uint16_t(in[10] << 8 | in[11]);
        ASSERT_EQ(run(*s, ipv4(src, dst, 17, sport, dport)), toeplitz_reference(key, in) & 127)
            << "round " << round << ", key of " << key.size() << " bytes";
    }
}

// A real tap with two queues: frames the host sends into it arrive on the
// queue the guest's table names, read from that queue's fd.
std::array<unsigned, 2> udp_frames_per_queue(Tap& tap, unsigned flows) {
    Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    int one = 1;
    setsockopt(sock.get(), SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
    setsockopt(sock.get(), SOL_SOCKET, SO_BINDTODEVICE, tap.name().c_str(), socklen_t(tap.name().size()));
    for (unsigned f = 0; f < flows; f++) {
        Fd from(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        setsockopt(from.get(), SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
        setsockopt(from.get(), SOL_SOCKET, SO_BINDTODEVICE, tap.name().c_str(), socklen_t(tap.name().size()));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(uint16_t(20000 + f));
        ::bind(from.get(), (sockaddr*)&a, sizeof a);
        // The subnet's broadcast: no neighbour to resolve first, so no ARP.
        a.sin_port = htons(7777);
        inet_pton(AF_INET, "10.77.0.255", &a.sin_addr);
        EXPECT_EQ(::sendto(from.get(), "x", 1, 0, (sockaddr*)&a, sizeof a), 1) << std::strerror(errno);
    }
    std::array<unsigned, 2> got{};
    for (unsigned q = 0; q < 2; q++) {
        uint8_t buf[2048];
        ssize_t n;
        while ((n = ::read(tap.fd(q), buf, sizeof buf)) > 0) {
            // After the 12-byte virtio-net header: IPv4, UDP to 7777.
            const uint8_t* f = buf + 12;
            if (n >= 12 + 14 + 20 + 4 && f[12] == 0x08 && f[13] == 0x00 && f[14 + 9] == 17 && f[14 + 22] == 0x1e &&
                f[14 + 23] == 0x61)
                got[q]++;
        }
    }
    return got;
}

TEST(TapSteering, SteersARealTapsQueues) {
    testing::in_netns([] {
        Tap tap("rsst0", 2);
        std::string why = tap.attach_steering();
        ASSERT_EQ(why, "");
        ASSERT_NE(tap.steering(), nullptr);
        ASSERT_EQ(std::system("ip addr add 10.77.0.1/24 dev rsst0"), 0);
        constexpr unsigned kFlows = 16;
        auto spread = udp_frames_per_queue(tap, kFlows);
        EXPECT_EQ(spread[0] + spread[1], kFlows);
        EXPECT_GT(spread[0], 0u) << "no guest table: flows spread over both queues";
        EXPECT_GT(spread[1], 0u);
        std::vector<uint16_t> all_one(128, 1);
        tap.steering()->set(net::kRssHashTypes, kMsKey, all_one, 0);
        EXPECT_EQ(udp_frames_per_queue(tap, kFlows), (std::array<unsigned, 2>{0, kFlows}));
        std::vector<uint16_t> all_zero(128, 0);
        tap.steering()->set(net::kRssHashTypes, kMsKey, all_zero, 1);
        EXPECT_EQ(udp_frames_per_queue(tap, kFlows), (std::array<unsigned, 2>{kFlows, 0}));
        auto halves = identity(2);
        tap.steering()->set(net::kRssHashTypes, kMsKey, halves, 0);
        auto even = udp_frames_per_queue(tap, kFlows);
        EXPECT_EQ(even[0] + even[1], kFlows);
        EXPECT_GT(even[0], 0u);
        EXPECT_GT(even[1], 0u);
    });
}

// A persistent tap keeps a program attached when the process that attached
// it dies without detaching it (SIGKILL, a seccomp trap). The next minivmm
// to open the tap detaches it first: without RSS its flows spread again
// instead of following a table nobody updates.
TEST(TapSteering, AProgramLeftByAKilledProcessIsDetachedWhenTheTapIsOpenedAgain) {
    testing::in_netns([] {
        ASSERT_EQ(std::system("ip tuntap add dev rsst2 mode tap multi_queue && ip link set rsst2 up && "
                              "ip addr add 10.77.0.1/24 dev rsst2"),
                  0);
        int ready[2];
        ASSERT_EQ(::pipe(ready), 0);
        pid_t child = ::fork();
        ASSERT_GE(child, 0);
        if (child == 0) {  // every flow to queue 1, then killed with the program attached
            Tap tap("rsst2", 2);
            if (tap.attach_steering() != "") ::_exit(1);
            tap.steering()->set(net::kRssHashTypes, kMsKey, std::vector<uint16_t>(128, 1), 0);
            [[maybe_unused]] ssize_t n = ::write(ready[1], "x", 1);
            ::raise(SIGKILL);
            ::_exit(1);
        }
        ::close(ready[1]);
        char c;
        EXPECT_EQ(::read(ready[0], &c, 1), 1) << "the child could not attach its program";
        ::close(ready[0]);
        int status = 0;
        ASSERT_EQ(::waitpid(child, &status, 0), child);
        ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        Tap tap("rsst2", 2);
        ASSERT_EQ(tap.steering(), nullptr);
        constexpr unsigned kFlows = 16;
        auto spread = udp_frames_per_queue(tap, kFlows);
        EXPECT_EQ(spread[0] + spread[1], kFlows);
        EXPECT_GT(spread[0], 0u) << "the dead process's table still steers every flow to queue 1";
        EXPECT_GT(spread[1], 0u);
    });
}

// A failed TUNSETSTEERINGEBPF is the ioctl's error alone, in one line:
// whatever libbpf last said while loading is no part of it.
TEST(TapSteering, AFailedAttachSaysTheIoctlsErrorOnly) {
    auto s = std::make_unique<TapSteering>();
    Fd not_a_tap = testing::make_eventfd();
    try {
        s->attach(not_a_tap.get());
        ADD_FAILURE() << "attached to an eventfd";
    } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()), std::string("TUNSETSTEERINGEBPF: ") + std::strerror(ENOTTY));
    }
}

// Without CAP_BPF and CAP_SYS_ADMIN (dropped in this thread only) the
// program does not load: the tap says why, in one line, and has no
// steering, so the device will not offer RSS.
TEST(TapSteering, WithoutBpfPrivilegesSaysWhyAndOffersNone) {
    testing::in_netns([] {
        Tap tap("rsst1", 2);
        capng_get_caps_process();
        capng_update(CAPNG_DROP, capng_type_t(CAPNG_EFFECTIVE | CAPNG_PERMITTED), 39 /* CAP_BPF */);
        capng_update(CAPNG_DROP, capng_type_t(CAPNG_EFFECTIVE | CAPNG_PERMITTED), CAP_SYS_ADMIN);
        ASSERT_EQ(capng_apply(CAPNG_SELECT_CAPS), 0);
        std::string why = tap.attach_steering();
        EXPECT_EQ(why.rfind("RSS not offered: ", 0), 0u) << why;
        EXPECT_NE(why.find("CAP_BPF"), std::string::npos) << why;
        EXPECT_EQ(why.find('\n'), std::string::npos) << why;
        EXPECT_EQ(tap.steering(), nullptr);
    });
}

}  // namespace
}  // namespace minivmm
