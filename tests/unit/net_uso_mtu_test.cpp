// UDP segmentation offload and the MTU: what the device offers for what the
// port can do, the tap offloads that follow the driver's acks, the tap's own
// probe and MTU, the datapaths carrying UDP_L4 GSO frames both ways through
// a real tap, and --net mtu= parsing.
#include <arpa/inet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "tests/unit/net_rig.hpp"
#include "tests/unit/netns_helpers.hpp"
#include "tests/unit/queue_rig.hpp"
#include "vhost/net_backends.hpp"
#include "vhost/ports/link_mtu.hpp"
#include "vhost/ports/tap.hpp"
#include "virtio/net.hpp"
#include "virtio/net_datapath.hpp"
#include "vmm/uapi_compat.hpp"
#include "vmm/bytes.hpp"
#include "vmm/cli.hpp"
#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
constexpr uint64_t kUso = net::kHostUso | net::kGuestUso4 | net::kGuestUso6;

// A port that says what the test wants and records the offloads it is given.
struct ProbedPort : NetPort {
    Fd ours, theirs;
    bool header, takes_uso;
    unsigned link_mtu;
    std::vector<unsigned> offloads;
    ProbedPort(bool h, bool u, unsigned m) : header(h), takes_uso(u), link_mtu(m) {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0)
            throw std::runtime_error("socketpair");
        ours = Fd(sv[0]), theirs = Fd(sv[1]);
    }
    std::string describe() const override { return "probed"; }
    unsigned queues() const override { return 1; }
    int fd(unsigned) const override { return ours.get(); }
    bool vnet_header() const override { return header; }
    bool uso() const override { return takes_uso; }
    unsigned mtu() const override { return link_mtu; }
    void set_offload(unsigned f) override { offloads.push_back(f); }
};

struct Nic {
    GuestMemory mem{16ull << 20};
    ProbedPort* port;
    std::unique_ptr<VirtioNet> net;
    FakeTransport t;
    Nic(bool header, bool uso, unsigned mtu) {
        auto p = std::make_unique<ProbedPort>(header, uso, mtu);
        port = p.get();
        net = std::make_unique<VirtioNet>(mem, make_net_backend(std::move(p), nullptr, "t0"),
                                          VirtioNet::Mac{0x52, 0x54, 0, 1, 2, 3}, "t0");
    }
    ~Nic() { net->reset(); }
    // DRIVER_OK with every ring placed; returns the offloads the port got.
    unsigned activate(uint64_t features) {
        std::vector<QueueConfig> qs(net->num_queues());
        for (uint16_t i = 0; i < qs.size(); i++) {
            uint64_t r = 0x100000 + 0x4000ull * i;
            qs[i] = {kQSize, r, r + 0x1000, r + 0x2000, true, i};
        }
        net->activate(features | virtio::kFVersion1, qs, t);
        EXPECT_EQ(t.broken_why(), "");
        return port->offloads.back();
    }
    uint16_t config_mtu() {
        uint8_t b[2];
        net->config_read(10, b, 2);
        return static_cast<uint16_t>(b[0] | b[1] << 8);
    }
};

bool kernel_at_least(int major, int minor) {
    utsname u{};
    ::uname(&u);
    int ma = 0, mi = 0;
    std::sscanf(u.release, "%d.%d", &ma, &mi);
    return ma > major || (ma == major && mi >= minor);
}

void sh(const std::string& cmd) {
    // Forked from the test's thread: the child is in its network namespace.
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

uint16_t csum_fold(uint32_t s) {
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return static_cast<uint16_t>(s);
}

uint32_t sum16(const uint8_t* p, size_t n, uint32_t s = 0) {
    for (size_t i = 0; i + 1 < n; i += 2) s += p[i] << 8 | p[i + 1];
    if (n & 1) s += p[n - 1] << 8;
    return s;
}
}  // namespace

TEST(NetUso, OfferedOnlyWhenThePortTakesIt) {
    EXPECT_EQ(Nic(true, true, 1500).net->features() & kUso, kUso);
    EXPECT_EQ(Nic(true, false, 1500).net->features() & kUso, 0u) << "the tap refused TUN_F_USO4/6";
    EXPECT_EQ(Nic(false, true, 1500).net->features() & kUso, 0u) << "no header: no offload can be described";
    // USO rides on checksum offload both ways (5.1.3.1).
    uint64_t f = Nic(true, true, 1500).net->features();
    EXPECT_TRUE((f & net::kCsum) && (f & net::kGuestCsum));
}

TEST(NetUso, TapOffloadsFollowTheDriversAcks) {
    const unsigned base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    uint64_t tso = net::kGuestCsum | net::kGuestTso4 | net::kGuestTso6 | net::kGuestEcn;
    EXPECT_EQ(Nic(true, true, 1500).activate(tso | net::kGuestUso4 | net::kGuestUso6), base | TUN_F_USO4 | TUN_F_USO6);
    EXPECT_EQ(Nic(true, true, 1500).activate(tso), base) << "USO not acked";
    // The kernel takes USO4 and USO6 only together: one alone is left to the tap.
    EXPECT_EQ(Nic(true, true, 1500).activate(tso | net::kGuestUso4), base);
    EXPECT_EQ(Nic(true, true, 1500).activate(tso | net::kGuestUso6), base);
    EXPECT_EQ(Nic(true, true, 1500).activate(net::kGuestUso4 | net::kGuestUso6), 0u) << "no GUEST_CSUM: no offload";
    // ECN without TSO (a driver breaking the spec's rule): the tap would
    // refuse the whole set, so ECN is left out and checksums still go.
    EXPECT_EQ(Nic(true, true, 1500).activate(net::kGuestCsum | net::kGuestEcn), unsigned(TUN_F_CSUM));
}

TEST(NetMtu, ConfigSpaceHasTheLinksMtu) {
    Nic jumbo(true, false, 9000);
    EXPECT_TRUE(jumbo.net->features() & net::kMtu);
    EXPECT_EQ(jumbo.config_mtu(), 9000);
    Nic raw(false, false, 1500);  // a raw socket's interface has an MTU too
    EXPECT_TRUE(raw.net->features() & net::kMtu);
    EXPECT_EQ(raw.config_mtu(), 1500);
    // Unknown, or more than the 16-bit field holds (loopback's 65536): not offered.
    for (unsigned m : {0u, 65536u, 67u}) {
        Nic n(true, false, m);
        EXPECT_FALSE(n.net->features() & net::kMtu) << m;
        EXPECT_EQ(n.config_mtu(), 0) << m;
    }
    // The fields before it are where they were.
    uint8_t cfg[12];
    jumbo.net->config_read(0, cfg, sizeof cfg);
    EXPECT_EQ(cfg[0], 0x52);
    EXPECT_EQ(cfg[6] | cfg[7] << 8, 1) << "status: link up";
    EXPECT_EQ(cfg[8] | cfg[9] << 8, 1) << "max_virtqueue_pairs";
}

TEST(NetUso, TapProbeMatchesTheKernel) {
    in_netns([] {
        Tap t("usotest0");
        // TUN_F_USO4/6 came with Linux 6.2.
        EXPECT_EQ(t.uso(), kernel_at_least(6, 2));
        EXPECT_EQ(t.offload_note().empty(), t.uso()) << t.offload_note();
        // The probe leaves the tap with no offload: the driver's acks set them.
        sh("ethtool -k usotest0 | grep -q 'tx-udp-segmentation: off'");
        sh("ethtool -k usotest0 | grep -q 'tx-checksumming: off'");
        EXPECT_EQ(t.mtu(), 1500u);
    });
}

TEST(NetMtu, TapMtuIsSetAndRefusalsSaid) {
    in_netns([] {
        Tap t("mtutest0");
        t.set_mtu(9000);
        EXPECT_EQ(t.mtu(), 9000u);
        EXPECT_EQ(link_mtu("mtutest0", "test"), 9000u);
        // A tap's largest is 65535 less its Ethernet header.
        try {
            t.set_mtu(65535);
            ADD_FAILURE() << "a tap took MTU 65535";
        } catch (const UserError& e) {
            EXPECT_NE(std::string(e.what()).find("refuses"), std::string::npos) << e.what();
        }
        EXPECT_EQ(t.mtu(), 9000u);
    });
}

TEST(NetMtu, CliMtuOption) {
    EXPECT_FALSE(parse_net("tap0").mtu);
    EXPECT_EQ(parse_net("tap0,mtu=9000").mtu, 9000u);
    EXPECT_EQ(parse_net("tap0,mtu=68").mtu, 68u);
    EXPECT_EQ(parse_net("raw=eth0,mtu=65535").mtu, 65535u);
    EXPECT_EQ(parse_net("macvtap=mv0,vhost=worker,mtu=1400,queues=2").mtu, 1400u);
    for (const char* bad : {"tap0,mtu=67", "tap0,mtu=65536", "tap0,mtu=0", "tap0,mtu=", "tap0,mtu=9k",
                            "tap0,mtu=-1", "tap0,mtu=09000", "tap0,mtu=1000000000000", "tap0,mtu=1500,mtu=9000"})
        EXPECT_THROW(parse_net(bad), UserError) << bad;
}

// The datapaths copy the virtio-net header through: a UDP_L4 GSO frame from
// the driver reaches the tap whole and the host's stack splits it; a
// gso_type the kernel does not know is refused there and counted.
TEST(NetUso, UdpL4FrameFromTheGuestIsSegmentedByTheHost) {
    in_netns([] {
        Tap tap("usotx0");
        if (!tap.uso()) GTEST_FAIL() << "needs Linux 6.2 or later (a tap that takes USO)";
        sh("ip addr add 10.9.0.1/24 dev usotx0 && ip link set usotx0 up");
        Fd rx(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(7000);
        a.sin_addr.s_addr = htonl(0x0a090001);
        ASSERT_EQ(::bind(rx.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);

        constexpr size_t kSeg = 1000, kSegs = 3, kPayload = kSeg * kSegs;
        std::vector<uint8_t> f(net::kHeaderLen + 14 + 20 + 8 + kPayload, 0);
        uint8_t* h = f.data();
        uint8_t* eth = h + net::kHeaderLen;
        uint8_t* ip = eth + 14;
        uint8_t* udp = ip + 20;
        std::memcpy(eth, "\xff\xff\xff\xff\xff\xff\x52\x54\x00\x01\x02\x03\x08\x00", 14);
        // The tap's own address as destination: delivered locally.
        ifreq ifr{};
        std::strncpy(ifr.ifr_name, "usotx0", IFNAMSIZ - 1);
        ASSERT_EQ(::ioctl(rx.get(), SIOCGIFHWADDR, &ifr), 0);
        std::memcpy(eth, ifr.ifr_hwaddr.sa_data, 6);
        size_t ip_len = 20 + 8 + kPayload;
        ip[0] = 0x45, ip[2] = static_cast<uint8_t>(ip_len >> 8), ip[3] = static_cast<uint8_t>(ip_len);
        ip[6] = 0x40;  // DF
        ip[8] = 64, ip[9] = 17;
        const uint8_t src[4] = {10, 9, 0, 2}, dst[4] = {10, 9, 0, 1};
        std::memcpy(ip + 12, src, 4), std::memcpy(ip + 16, dst, 4);
        uint16_t ic = static_cast<uint16_t>(~csum_fold(sum16(ip, 20)));
        ip[10] = static_cast<uint8_t>(ic >> 8), ip[11] = static_cast<uint8_t>(ic);
        udp[0] = 0x1b, udp[1] = 0x58;  // 7000
        udp[2] = 0x1b, udp[3] = 0x58;
        size_t ul = 8 + kPayload;
        udp[4] = static_cast<uint8_t>(ul >> 8), udp[5] = static_cast<uint8_t>(ul);
        for (size_t i = 0; i < kPayload; i++) udp[8 + i] = static_cast<uint8_t>(i / kSeg + 1);
        // Partial checksum: the pseudo-header's sum, as the guest's stack leaves it.
        uint8_t pseudo[12] = {10, 9, 0, 2, 10, 9, 0, 1, 0, 17, static_cast<uint8_t>(ul >> 8), static_cast<uint8_t>(ul)};
        uint16_t pc = csum_fold(sum16(pseudo, 12));
        udp[6] = static_cast<uint8_t>(pc >> 8), udp[7] = static_cast<uint8_t>(pc);
        h[0] = 1;  // NEEDS_CSUM
        h[1] = VIRTIO_NET_HDR_GSO_UDP_L4;
        le_store(h + 2, 2, 14 + 20 + 8);  // hdr_len
        le_store(h + 4, 2, kSeg);         // gso_size
        le_store(h + 6, 2, 14 + 20);      // csum_start
        le_store(h + 8, 2, 6);            // csum_offset

        QueueRig r;
        std::memcpy(r.mem.ptr(QueueRig::kBuf, f.size()), f.data(), f.size());
        r.driver.desc(0, QueueRig::kBuf, static_cast<uint32_t>(f.size()), 0, 0);
        r.driver.offer(0);
        QueueStats st;
        std::string why;
        EXPECT_EQ(net_tx(r.q, r.mem, tap.fd(), st, 8, why), Work::Idle) << why;
        EXPECT_EQ(st.packets, 1u);
        EXPECT_EQ(st.errors, 0u);
        std::vector<uint8_t> got(4096);
        for (size_t k = 0; k < kSegs; k++) {
            ssize_t n = -1;
            for (int tries = 0; tries < 100 && n < 0; tries++, usleep(10000)) n = ::recv(rx.get(), got.data(), got.size(), 0);
            ASSERT_EQ(n, static_cast<ssize_t>(kSeg)) << "datagram " << k;
            EXPECT_EQ(got[0], k + 1);
            EXPECT_EQ(got[kSeg - 1], k + 1);
        }
        // A gso_type Linux does not know is refused by the tap: the guest's error.
        h[1] = 2;
        std::memcpy(r.mem.ptr(QueueRig::kBuf, f.size()), f.data(), f.size());
        r.driver.desc(1, QueueRig::kBuf, static_cast<uint32_t>(f.size()), 0, 0);
        r.driver.offer(1);
        EXPECT_EQ(net_tx(r.q, r.mem, tap.fd(), st, 8, why), Work::Idle) << why;
        EXPECT_EQ(st.errors, 1u);
    });
}

// Host to guest: a UDP_SEGMENT send routed to the tap comes out of it as one
// frame whose header says UDP_L4 (the driver acked GUEST_USO4/6), and the
// datapath puts it into the guest's buffers as it is.
TEST(NetUso, UdpGsoToTheGuestArrivesAsOneFrame) {
    in_netns([] {
        Tap tap("usorx0");
        if (!tap.uso()) GTEST_FAIL() << "needs Linux 6.2 or later (a tap that takes USO)";
        tap.set_offload(TUN_F_CSUM | TUN_F_USO4 | TUN_F_USO6);
        sh("ip addr add 10.9.1.1/24 dev usorx0 && ip link set usorx0 up && "
           "ip neigh add 10.9.1.2 lladdr 52:54:00:01:02:03 dev usorx0");
        uint8_t drain[70000];
        while (::read(tap.fd(), drain, sizeof drain) > 0) {
        }
        Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        int seg = 1200;
        ASSERT_EQ(::setsockopt(s.get(), IPPROTO_UDP, 103 /* UDP_SEGMENT */, &seg, sizeof seg), 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(7001);
        a.sin_addr.s_addr = htonl(0x0a090102);
        std::vector<uint8_t> payload(seg * 4, 0x77);
        ASSERT_EQ(::sendto(s.get(), payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a),
                  static_cast<ssize_t>(payload.size()));

        QueueRig r;
        constexpr uint32_t kLen = 9000;
        for (uint16_t i = 0; i < 8; i++) {
            r.driver.desc(i, QueueRig::kBuf + 0x4000ull * i, kLen, kWrite, 0);
            r.driver.offer(i);
        }
        NetRx rx;
        QueueStats st;
        std::string why;
        for (int tries = 0; tries < 100 && !st.packets; tries++, usleep(10000))
            ASSERT_NE(rx.run(r.q, r.mem, tap.fd(), {.mergeable = true, .fd_header = true, .budget = 8, .log = {}}, st,
                             why),
                      Work::Broken)
                << why;
        ASSERT_EQ(st.packets, 1u) << "one GSO frame, not four datagrams";
        const uint8_t* h = r.mem.ptr(QueueRig::kBuf, net::kHeaderLen);
        EXPECT_EQ(h[1], VIRTIO_NET_HDR_GSO_UDP_L4);
        EXPECT_EQ(h[4] | h[5] << 8, seg) << "gso_size";
        EXPECT_EQ(st.bytes, 14u + 20 + 8 + payload.size());
        rx.release(r.q);
    });
}
