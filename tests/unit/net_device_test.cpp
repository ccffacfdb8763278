// The virtio-net device model with several queue pairs and its control
// queue, driven as a guest driver would (rings in GuestMemory, kicks through
// notify()) against a multi-queue tap in a private network namespace.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <iterator>
#include <sstream>
#include <chrono>
#include <thread>
#include <set>
#include <string>
#include <vector>

#include "tests/unit/net_rig.hpp"
#include "tests/unit/test_helpers.hpp"
#include "tests/unit/netns_helpers.hpp"
#include "vhost/net_backends.hpp"
#include "vhost/ports/tap.hpp"
#include "virtio/net.hpp"
#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
// Sends 64 UDP flows into the tap (as the host would) and returns how many
// frames each tap queue received: the kernel hashes flows over the queues
// that are attached, so a detached queue gets none.
std::vector<int> spread(const Tap& tap) {
    Fd pkt(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
    if (!pkt) throw std::runtime_error("AF_PACKET socket");
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = static_cast<int>(if_nametoindex(tap.name().c_str()));
    sll.sll_halen = 6;
    for (int flow = 0; flow < 64; flow++) {
        uint8_t f[14 + 20 + 8 + 4] = {0x52, 0x54, 0, 1, 2, 3, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00};
        uint8_t* ip = f + 14;
        ip[0] = 0x45;
        ip[3] = 20 + 8 + 4;  // total length
        ip[8] = 64;          // TTL
        ip[9] = 17;          // UDP
        ip[12] = 10, ip[15] = 2;
        ip[16] = 10, ip[19] = 15;
        uint8_t* udp = ip + 20;
        udp[0] = 0x80, udp[1] = static_cast<uint8_t>(flow);  // a source port per flow
        udp[2] = 0x13, udp[3] = 0x88;
        udp[5] = 8 + 4;
        if (::sendto(pkt.get(), f, sizeof f, 0, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != sizeof f)
            throw std::runtime_error(std::string("sendto: ") + std::strerror(errno));
    }
    std::vector<int> got(tap.queues());
    for (unsigned q = 0; q < tap.queues(); q++) {
        uint8_t b[2048];
        while (::read(tap.fd(q), b, sizeof b) > 0) got[q]++;
    }
    return got;
}
}  // namespace

TEST(NetDevice, OffersMultiqueueOnlyWithSeveralPairs) {
    in_netns([] {
        GuestMemory mem(16ull << 20);
        VirtioNet one(mem, make_net_backend(std::make_unique<Tap>("mqtest1"), nullptr, "net0"), {0x52, 0x54, 0, 0, 0, 1});
        EXPECT_EQ(one.num_queues(), 3);  // rx0, tx0, ctrl
        EXPECT_FALSE(one.features() & net::kMq);
        EXPECT_TRUE(one.features() & net::kCtrlVq);
        VirtioNet four(mem, make_net_backend(std::make_unique<Tap>("mqtest4", 4), nullptr, "net0"), {0x52, 0x54, 0, 0, 0, 4});
        EXPECT_EQ(four.num_queues(), 9);
        EXPECT_TRUE(four.features() & net::kMq);
        uint8_t cfg[2];
        four.config_read(8, cfg, 2);  // max_virtqueue_pairs
        EXPECT_EQ(cfg[0] | cfg[1] << 8, 4);
    });
}

TEST(NetDevice, PairsSetAttachesAndDetachesTapQueues) {
    in_netns([] {
        CtrlRig r(3, kMqFeatures);
        // Until VQ_PAIRS_SET the driver uses the first pair only (5.1.6.5.5).
        // (A pair's receive thread may hold one frame, having no buffers for it.)
        auto got = spread(*r.tap);
        EXPECT_GE(got[0], 63);
        EXPECT_EQ(got[1] + got[2], 0);
        EXPECT_EQ(r.pairs_set(3), kOk);
        got = spread(*r.tap);
        EXPECT_TRUE(got[0] && got[1] && got[2]) << got[0] << " " << got[1] << " " << got[2];
        EXPECT_EQ(r.pairs_set(2), kOk);
        got = spread(*r.tap);
        EXPECT_TRUE(got[0] && got[1]) << got[0] << " " << got[1];
        EXPECT_EQ(got[2], 0);
        EXPECT_TRUE(r.t.signalled.count(r.ctrl_index));
        EXPECT_EQ(r.t.broken, "");
    });
}

TEST(NetDevice, BadPairCountsAreRefused) {
    in_netns([] {
        CtrlRig r(2, kMqFeatures);
        EXPECT_EQ(r.pairs_set(0), kErr);
        EXPECT_EQ(r.pairs_set(3), kErr);
        EXPECT_EQ(r.command(4, 0, {2}), kErr);  // one byte where two belong
        EXPECT_EQ(spread(*r.tap)[1], 0);
        EXPECT_EQ(r.t.broken, "");
    });
}

TEST(NetDevice, UnknownAndUnnegotiatedCommandsAreErrors) {
    in_netns([] {
        CtrlRig r(2, kMqFeatures & ~net::kCtrlMacAddr);
        EXPECT_EQ(r.command(9, 0, {}), kErr);              // no such class
        EXPECT_EQ(r.command(4, 7, {1, 0}), kErr);          // no such MQ command
        EXPECT_EQ(r.command(2, 0, {0, 1}), kErr);          // VLAN: not offered
        EXPECT_EQ(r.command(1, 1, {2, 0, 0, 0, 0, 9}), kErr);  // MAC_ADDR_SET not negotiated
        EXPECT_EQ(r.command(0, 0, {}), kErr);              // PROMISC without its byte
        EXPECT_EQ(r.command(0, 0, {1}), kOk);
        EXPECT_EQ(r.command(0, 1, {0}), kOk);
        EXPECT_EQ(r.t.broken, "");
    });
}

TEST(NetDevice, MacAddressAndFilterTable) {
    in_netns([] {
        CtrlRig r(1, virtio::kFVersion1 | net::kCtrlVq | net::kCtrlRx | net::kCtrlMacAddr);
        EXPECT_EQ(r.ctrl_index, 2);  // no MQ: the control queue follows the one pair
        EXPECT_EQ(r.command(1, 1, {0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}), kOk);
        uint8_t mac[6];
        r.net->config_read(0, mac, 6);
        EXPECT_EQ(mac[1], 0xaa);
        EXPECT_EQ(mac[5], 0xee);
        EXPECT_EQ(r.command(1, 1, {0x01, 0, 0x5e, 0, 0, 1}), kErr);  // multicast
        EXPECT_EQ(r.command(1, 1, {0x02, 0xaa}), kErr);              // short
        // One unicast entry, two multicast entries: exactly 4+6+4+12 bytes.
        std::vector<uint8_t> table = {1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0};
        table.resize(4 + 6 + 4 + 12);
        table[10] = 2;  // the multicast count, after the unicast entry
        table[11] = table[12] = table[13] = 0;
        EXPECT_EQ(r.command(1, 0, table), kOk);
        table.pop_back();
        EXPECT_EQ(r.command(1, 0, table), kErr);
        // A count that promises far more entries than were sent.
        EXPECT_EQ(r.command(1, 0, {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}), kErr);
        EXPECT_EQ(r.t.broken, "");
    });
}

TEST(NetDevice, CommandWithNoStatusBufferBreaksTheDevice) {
    in_netns([] {
        CtrlRig r(2, kMqFeatures);
        EXPECT_EQ(r.command(4, 0, {2, 0}, false), -1);
        EXPECT_NE(r.t.broken, "");
    });
}

namespace {
// Names of this process's threads that start with prefix, as a set.
std::set<std::string> thread_names(const std::string& prefix) {
    auto names = threads_named(prefix);
    return {names.begin(), names.end()};
}

// The same, once they are want: threads name themselves as they start
// (enter_thread), a moment after the call that started them returned.
std::set<std::string> thread_names_soon(const std::string& prefix, const std::set<std::string>& want) {
    auto names = thread_names(prefix);
    for (int i = 0; i < 200 && names != want; i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        names = thread_names(prefix);
    }
    return names;
}
}  // namespace

TEST(NetDevice, ReceiveThreadsAreNamedPerPair) {
    in_netns([] {
        CtrlRig r(2, kMqFeatures, "nt7");
        EXPECT_EQ(thread_names_soon("nt7-io", {"nt7-io0", "nt7-io1"}), (std::set<std::string>{"nt7-io0", "nt7-io1"}));
    });
}

TEST(NetDevice, WorkerVhostHasTwoRingsPerPair) {
    in_netns([] {
        auto vh = make_worker_vhost(2, "wt3");
        EXPECT_THROW(vh->set_vring_num(4, 8), InternalError);  // two pairs: rings 0 to 3
        EXPECT_NE(vh->stats(3), nullptr);
        EXPECT_EQ(vh->stats(4), nullptr);
    });
}

namespace {
// A tap made without multi_queue, as `ip tuntap add mode tap` makes one,
// held open (minivmm makes its own taps multi_queue).
Fd single_queue_tap(const char* name) {
    Fd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    EXPECT_EQ(ioctl(fd.get(), TUNSETIFF, &ifr), 0) << std::strerror(errno);
    return fd;
}
}  // namespace

TEST(NetDevice, SingleQueueTapRefusesSeveralQueues) {
    in_netns([] {
        Fd one = single_queue_tap("sqtap0");
        try {
            Tap two("sqtap0", 2);
            ADD_FAILURE() << "a single-queue tap gave two queues";
        } catch (const UserError& e) {
            EXPECT_NE(std::string(e.what()).find("multi_queue"), std::string::npos) << e.what();
        }
    });
}

// A live migration on one host: the source's queues go, the destination's
// (opened meanwhile on the same tap) take the frames, and the source's come
// back if the migration fails. Only a multi-queue tap allows it, so the
// taps minivmm creates are made so, even for one queue.
TEST(NetDevice, CreatedTapsHandTheirQueuesOver) {
    in_netns([] {
        Tap source("mqtap0");
        Tap destination("mqtap0");  // a second process's queue on the same tap
        EXPECT_TRUE(source.hand_over_queue(0, false));
        EXPECT_TRUE(source.hand_over_queue(0, true));
        {
            Fd made = single_queue_tap("sqtap1");
            EXPECT_EQ(ioctl(made.get(), TUNSETPERSIST, 1), 0);  // as `ip tuntap add` leaves it
        }
        Tap attached("sqtap1");  // opened as the user made it: no hand over
        EXPECT_FALSE(attached.hand_over_queue(0, false));
        // While it is held, another process cannot open it: the destination says so.
        EXPECT_NE(minivmm::testing::error_of([] { Tap("sqtap1"); }).find("in use"), std::string::npos);
    });
}

namespace {
// Whether the tap segments for its readers (TSO on: the offloads minivmm set).
bool tap_tso(const char* name) {
    Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ethtool_value v{ETHTOOL_GTSO, 0};
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    ifr.ifr_data = reinterpret_cast<char*>(&v);
    EXPECT_EQ(ioctl(s.get(), SIOCETHTOOL, &ifr), 0) << std::strerror(errno);
    return v.data != 0;
}
}  // namespace

// A migration's destination opens the tap the source's guest still runs
// on: the tap's offloads belong to the device, so the destination leaves
// them as the source set them until it takes the tap, and a source that
// takes it back (a failed migration) sets its own again.
TEST(NetDevice, ASharedTapKeepsTheSourcesOffloadsUntilHandedOver) {
    in_netns([] {
        constexpr unsigned kTso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
        Tap source("shtap0");
        source.set_offload(kTso);
        ASSERT_TRUE(tap_tso("shtap0"));
        Tap destination("shtap0", 1, true);
        destination.set_offload(0);  // what its NIC wants before its guest's features arrive
        EXPECT_TRUE(tap_tso("shtap0")) << "the destination changed the source's offloads while it runs";
        ASSERT_TRUE(source.hand_over_queue(0, false));
        ASSERT_TRUE(destination.hand_over_queue(0, true));
        EXPECT_FALSE(tap_tso("shtap0")) << "the destination took the tap but not its offloads";
        ASSERT_TRUE(destination.hand_over_queue(0, false));
        ASSERT_TRUE(source.hand_over_queue(0, true));
        EXPECT_TRUE(tap_tso("shtap0")) << "the source took the tap back without its offloads";
    });
}

namespace {
// A transport that hands out eventfds as KVM's ioeventfd/irqfd would.
class EventfdTransport : public FakeTransport {
public:
    explicit EventfdTransport(unsigned queues) {
        for (unsigned i = 0; i < 3 * queues; i++) fds.push_back(make_eventfd());
    }
    int kick_eventfd(uint16_t q) override { return fds[3 * q].get(); }
    int call_eventfd(uint16_t q) override { return fds[3 * q + 1].get(); }
    int error_eventfd(uint16_t q) override { return fds[3 * q + 2].get(); }
    std::vector<Fd> fds;
};

// CPU time (user + system, clock ticks) of this process's threads whose name starts with prefix.
long thread_ticks(const std::string& prefix) {
    long ticks = 0;
    DIR* d = ::opendir("/proc/self/task");
    while (dirent* e = d ? ::readdir(d) : nullptr) {
        std::string base = std::string("/proc/self/task/") + e->d_name;
        std::ifstream comm(base + "/comm"), stat(base + "/stat");
        std::string name, line;
        if (!std::getline(comm, name) || name.rfind(prefix, 0) != 0 || !std::getline(stat, line)) continue;
        // Fields after the ")" that ends the name: state is field 3, utime 14, stime 15.
        std::istringstream rest(line.substr(line.rfind(')') + 2));
        std::vector<std::string> f{std::istream_iterator<std::string>(rest), {}};
        ticks += std::stol(f[11]) + std::stol(f[12]);
    }
    if (d) ::closedir(d);
    return ticks;
}
}  // namespace

// Idle vhost workers sleep, with pairs in use and out of use: a spinning
// ring thread would eat a host CPU for nothing.
TEST(NetDevice, IdleWorkersOfAllPairsSleep) {
    in_netns([] {
        GuestMemory mem(16ull << 20);
        auto net = std::make_unique<VirtioNet>(
            mem, make_net_backend(std::make_unique<Tap>("mqidle0", 2), make_worker_vhost(2, "idl"), "idl"),
            VirtioNet::Mac{0x52, 0x54, 0, 0, 0, 9}, "idl");
        EventfdTransport t(net->num_queues());
        std::vector<QueueConfig> qs(net->num_queues());
        for (uint16_t i = 0; i < qs.size(); i++) {
            uint64_t base = 0x100000 + 0x4000ull * i;
            qs[i] = {kQSize, base, base + 0x1000, base + 0x2000, true, i};
        }
        net->activate(kMqFeatures | virtio::kFEventIdx, qs, t);
        auto idle_for = [](int ms) {
            long before = thread_ticks("vhost-idl");
            std::this_thread::sleep_for(std::chrono::milliseconds(ms));
            return thread_ticks("vhost-idl") - before;
        };
        // Measuring no threads would pass: first check they are all there,
        // a receive and a transmit worker for each pair in use.
        using Names = std::set<std::string>;
        Names one{"vhost-idl-rx0", "vhost-idl-tx0"};
        ASSERT_EQ(thread_names_soon("vhost-idl", one), one);
        EXPECT_LE(idle_for(500), 5) << "workers busy with one pair in use";
        // Put both pairs in use through the control queue, as the driver does.
        uint8_t* cmd = mem.ptr(kCmdBuf, 4);
        cmd[0] = 4, cmd[1] = 0, cmd[2] = 2, cmd[3] = 0;
        uint64_t ring = 0x100000 + 0x4000ull * 4;  // the control queue's, as placed above
        GuestRing ctrl(mem, kQSize, RingLayout::paged(ring));
        ctrl.desc(0, kCmdBuf, 4, kNext, 1);
        ctrl.desc(1, kStatusBuf, 1, kWrite);
        ctrl.offer(0);
        net->notify(4);
        ASSERT_EQ(*mem.ptr(kStatusBuf, 1), kOk);
        Names both{"vhost-idl-rx0", "vhost-idl-tx0", "vhost-idl-rx1", "vhost-idl-tx1"};
        ASSERT_EQ(thread_names_soon("vhost-idl", both), both);
        EXPECT_LE(idle_for(500), 5) << "workers busy with both pairs in use";
        EXPECT_EQ(t.broken, "");
        net->reset();
    });
}
