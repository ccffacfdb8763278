// virtio-net's saved state through the virtio-pci transport, on a real tap
// in a private network namespace: a NIC driven with traffic and control
// commands, quiesced and saved, loads into a fresh NIC of any datapath
// (off or worker) and carries on where it was: the next frame lands in the
// next descriptor, the next send goes out, the control queue answers. A
// quiesced NIC touches nothing until resumed, then catches up.
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <cstring>
#include <optional>

#include "tests/unit/netns_helpers.hpp"
#include "tests/unit/vhost_rig.hpp"
#include "tests/unit/virtio_pci_guest.hpp"
#include "vhost/net_backends.hpp"
#include "vhost/ports/tap.hpp"
#include "virtio/net.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {

constexpr uint16_t kRing = 8;
constexpr uint64_t kRxBase = 0x10000, kTxBase = 0x20000, kCtrlBase = 0x30000, kCmd = 0x300000, kAck = 0x301000;
constexpr uint64_t kFeatures = virtio::kFVersion1 | virtio::kFEventIdx | net::kCtrlVq | net::kCtrlRx |
                               net::kCtrlMacAddr | net::kNotfCoal | net::kVqNotfCoal;
constexpr uint8_t kOkStatus = virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk | virtio::kDriverOk;
const char* const kTapName = "st0";

// The NIC, behind virtio-pci with a fake KVM (ioeventfds and irqfds for
// the worker), on a fresh tap st0.
struct Nic {
    FakeKvm kvm;
    VirtioPci::KvmHooks hooks{kvm, kvm};
    Guest g;
    Nic(GuestMemory& mem, const std::string& datapath, unsigned pairs = 1)
        : g(&hooks, std::make_unique<VirtioNet>(
                        mem,
                        make_net_backend(std::make_unique<Tap>(kTapName, pairs),
                                         datapath == "worker" ? make_worker_vhost(pairs, "st0") : nullptr, "st0"),
                        VirtioNet::Mac{0x52, 0x54, 0, 0, 0, 1}, "st0")) {}
    // A 16-bit write of q at its notify address: an ioeventfd, or an exit.
    void kick(uint16_t q) {
        uint64_t at = notify(g.pci->bar_address(0), q);
        auto it = kvm.ioeventfds.find({at, 2});
        if (it != kvm.ioeventfds.end()) {
            uint64_t one = 1;
            EXPECT_EQ(::write(it->second, &one, sizeof one), 8);
            return;
        }
        g.write(0, VirtioPci::kNotify + VirtioPci::kNotifyMultiplier * q, q, 2);
    }
    std::vector<uint8_t> save() {
        state::Writer w;
        g.pci->save(w);
        return w.take();
    }
    void load(const std::vector<uint8_t>& bytes, const MemView& ram) {
        state::Reader r(bytes, "test");
        g.pci->load(r, ram);
        r.expect_end();
    }
    std::array<uint8_t, 6> mac() {
        std::array<uint8_t, 6> m;
        for (unsigned i = 0; i < 6; i++) m[i] = static_cast<uint8_t>(g.read(0, VirtioPci::kDeviceCfg + i, 1));
        return m;
    }
};

// The test's end of the tap: what it sends arrives at the NIC, what the NIC
// sends it receives.
struct Wire {
    Fd pkt;
    int ifindex;
    Wire() : ifindex(static_cast<int>(if_nametoindex(kTapName))) {
        pkt = Fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL)));
        sockaddr_ll sll{};
        sll.sll_family = AF_PACKET;
        sll.sll_protocol = htons(ETH_P_ALL);
        sll.sll_ifindex = ifindex;
        if (!pkt || ::bind(pkt.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0)
            throw std::runtime_error(std::string("AF_PACKET: ") + std::strerror(errno));
    }
    void send(const std::vector<uint8_t>& f) {
        ASSERT_EQ(send_to_tap(pkt.get(), ifindex, f), static_cast<ssize_t>(f.size())) << std::strerror(errno);
    }
    std::optional<std::vector<uint8_t>> recv(int ms = kTimeoutMs) {
        std::vector<uint8_t> buf(65536);
        for (;;) {
            pollfd p{pkt.get(), POLLIN, 0};
            if (::poll(&p, 1, ms) <= 0) return std::nullopt;
            sockaddr_ll from{};
            socklen_t fl = sizeof from;
            ssize_t n = ::recvfrom(pkt.get(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &fl);
            if (n < 14 || from.sll_pkttype == PACKET_OUTGOING || ((buf[12] << 8) | buf[13]) != kEtherType) continue;
            return std::vector<uint8_t>(buf.begin(), buf.begin() + n);
        }
    }
};

// The guest's driver: its rings and buffers live in guest RAM, which
// outlives every NIC (as RAM is loaded before the devices).
struct Driver {
    GuestMemory& mem;
    GuestRing rx{mem, kRing, RingLayout::paged(kRxBase), true}, tx{mem, kRing, RingLayout::paged(kTxBase), true},
        ctrl{mem, kRing, RingLayout::paged(kCtrlBase), true};
    explicit Driver(GuestMemory& m) : mem(m) {}

    void start(Nic& n) {
        ASSERT_TRUE(n.g.negotiate(kFeatures) & virtio::kFeaturesOk);
        n.g.setup_queue(0, kRing, kRxBase);
        n.g.setup_queue(1, kRing, kTxBase);
        n.g.setup_queue(2, kRing, kCtrlBase);
        n.g.set_status(kOkStatus);
        ASSERT_EQ(n.g.status(), kOkStatus);
    }
    // Posts receive buffers at heads first.. (4 KiB each) and kicks if asked to.
    void post_rx(Nic& n, uint16_t first, uint16_t count) {
        uint16_t old = rx.avail_idx;
        for (uint16_t h = first; h < first + count; h++) {
            rx.desc(h, rx_slot(h), 4096, kWrite);
            rx.add(h);
        }
        if (rx.publish_since(old)) n.kick(0);
    }
    void send(Nic& n, uint16_t head, const std::vector<uint8_t>& frame) {
        std::vector<uint8_t> b(net::kHeaderLen, 0);
        b.insert(b.end(), frame.begin(), frame.end());
        std::memcpy(mem.ptr(tx_slot(head), b.size()), b.data(), b.size());
        tx.desc(head, tx_slot(head), static_cast<uint32_t>(b.size()), 0);
        uint16_t old = tx.avail_idx;
        tx.add(head);
        if (tx.publish_since(old)) n.kick(1);
    }
    // Used entry k of the receive ring: which head, and the frame after its header.
    std::pair<uint32_t, std::vector<uint8_t>> received(uint16_t k) {
        auto [id, len] = rx.used_elem(k);
        if (len < net::kHeaderLen || len > 4096) return {id, {}};
        uint8_t* p = mem.ptr(rx_slot(static_cast<uint16_t>(id)) + net::kHeaderLen, len - net::kHeaderLen);
        return {id, std::vector<uint8_t>(p, p + len - net::kHeaderLen)};
    }
    // A control command; the status byte, or -1 if it did not complete.
    int command(Nic& n, uint8_t cls, uint8_t cmd, const std::vector<uint8_t>& data) {
        std::vector<uint8_t> b = {cls, cmd};
        b.insert(b.end(), data.begin(), data.end());
        std::memcpy(mem.ptr(kCmd, b.size()), b.data(), b.size());
        *mem.ptr(kAck, 1) = 0xee;
        ctrl.desc(0, kCmd, static_cast<uint32_t>(b.size()), kNext, 1);
        ctrl.desc(1, kAck, 1, kWrite);
        uint16_t old = ctrl.avail_idx, before = ctrl.used_idx();
        ctrl.add(0);
        if (ctrl.publish_since(old)) n.kick(2);
        if (!ctrl.wait_used(static_cast<uint16_t>(before + 1))) return -1;
        return *mem.ptr(kAck, 1);
    }
};

// Drives a NIC on `datapath` into a state worth saving: two frames
// received, one sent, MAC changed and promiscuous mode set, then saved.
std::vector<uint8_t> busy_nic_state(GuestMemory& mem, Driver& d, const std::string& datapath) {
    Nic a(mem, datapath);
    d.start(a);
    Wire w;
    d.post_rx(a, 0, 6);
    auto f1 = make_frame(100, 1), f2 = make_frame(300, 2);
    w.send(f1);
    EXPECT_TRUE(d.rx.wait_used(1));
    w.send(f2);
    EXPECT_TRUE(d.rx.wait_used(2));
    EXPECT_EQ(d.received(0), std::make_pair(uint32_t(0), f1));
    EXPECT_EQ(d.received(1), std::make_pair(uint32_t(1), f2));
    auto t1 = make_frame(200, 3);
    d.send(a, 0, t1);
    EXPECT_EQ(w.recv(), t1);
    EXPECT_TRUE(d.tx.wait_used(1));
    EXPECT_EQ(d.command(a, 1, 1, {0x02, 0, 0, 0, 0, 0x42}), 0);  // MAC_ADDR_SET
    EXPECT_EQ(d.command(a, 0, 0, {1}), 0);                         // RX_PROMISC on
    EXPECT_EQ(d.command(a, 6, 1, {4, 0, 0, 0, 50, 0, 0, 0}), 0);   // NOTF_COAL RX_SET: 4 frames or 50 us
    a.g.pci->quiesce();
    return a.save();
}

class NetStateAcross : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

}  // namespace

// Saved on one datapath, loaded on another (or the same): equal state, and
// the guest's next frame, send and command go where they would have.
TEST_P(NetStateAcross, LoadedNicCarriesOnWhereTheSavedOneWas) {
    auto [from, to] = GetParam();
    in_netns([from = std::string(from), to = std::string(to)] {
        GuestMemory mem(16ull << 20);
        Driver d(mem);
        auto bytes = busy_nic_state(mem, d, from);
        if (::testing::Test::HasFailure()) return;

        Nic b(mem, to);
        b.load(bytes, mem);
        EXPECT_EQ(b.g.status(), kOkStatus);
        EXPECT_EQ(b.mac(), (std::array<uint8_t, 6>{0x02, 0, 0, 0, 0, 0x42}));
        b.g.pci->quiesce();
        EXPECT_EQ(b.save(), bytes) << "saved again: the same state";
        b.g.pci->resume();

        Wire w;
        auto f3 = make_frame(120, 4);
        w.send(f3);
        ASSERT_TRUE(d.rx.wait_used(3));
        EXPECT_EQ(d.received(2), std::make_pair(uint32_t(2), f3)) << "the next frame in the next buffer";
        auto t2 = make_frame(220, 5);
        d.send(b, 1, t2);
        EXPECT_EQ(w.recv(), t2);
        ASSERT_TRUE(d.tx.wait_used(2));
        EXPECT_EQ(d.tx.used_elem(1).first, 1u);
        EXPECT_EQ(d.command(b, 0, 1, {1}), 0) << "RX_ALLMULTI, on the control queue where it was";
        EXPECT_EQ(d.ctrl.used_idx(), 4);
    });
}

INSTANTIATE_TEST_SUITE_P(Datapaths, NetStateAcross,
                         ::testing::Values(std::make_pair("off", "off"), std::make_pair("off", "worker"),
                                           std::make_pair("worker", "off"), std::make_pair("worker", "worker")),
                         [](const auto& p) {
                             return std::string(p.param.first) + "_to_" + p.param.second;
                         });

class NetQuiesce : public ::testing::TestWithParam<const char*> {};

// Quiesced, a NIC moves nothing: a frame from the wire and a send queued by
// the driver wait. Resumed, it carries on with both, in order.
TEST_P(NetQuiesce, NothingMovesUntilResumed) {
    std::string datapath = GetParam();
    in_netns([datapath] {
        GuestMemory mem(16ull << 20);
        Driver d(mem);
        Nic a(mem, datapath);
        d.start(a);
        Wire w;
        d.post_rx(a, 0, 4);
        auto f1 = make_frame(90, 1);
        w.send(f1);
        ASSERT_TRUE(d.rx.wait_used(1));

        a.g.pci->quiesce();
        auto before = a.save();
        auto f2 = make_frame(91, 2), t1 = make_frame(92, 3);
        w.send(f2);
        d.send(a, 0, t1);
        EXPECT_FALSE(w.recv(kQuietMs)) << "sent while quiesced";
        EXPECT_EQ(d.rx.used_idx(), 1) << "received while quiesced";
        EXPECT_EQ(d.tx.used_idx(), 0);
        EXPECT_EQ(a.save(), before) << "the state holds still";

        a.g.pci->resume();
        EXPECT_EQ(w.recv(), t1);
        ASSERT_TRUE(d.rx.wait_used(2));
        EXPECT_EQ(d.received(1), std::make_pair(uint32_t(1), f2));
        ASSERT_TRUE(d.tx.wait_used(1));
        // And again, with traffic after.
        a.g.pci->quiesce();
        a.g.pci->resume();
        auto f3 = make_frame(93, 4);
        w.send(f3);
        ASSERT_TRUE(d.rx.wait_used(3));
        EXPECT_EQ(d.received(2), std::make_pair(uint32_t(2), f3));
    });
}

INSTANTIATE_TEST_SUITE_P(Datapaths, NetQuiesce, ::testing::Values("off", "worker"));

namespace {
// Where the NIC's own section starts in the saved bytes: after the config
// space, MSI-X (4 vectors) and the common configuration (3 queues).
constexpr size_t kNet = 256 + 4 + 17 * 4 + 25 + 29 * 3;
constexpr size_t kMacAt = kNet, kLinkAt = kNet + 6, kNetFeaturesAt = kNet + 8, kInUseAt = kNet + 16,
                 kPromiscAt = kNet + 20, kPositionsAt = kNet + 24;
}  // namespace

TEST(NetState, HostileFieldsAreRefused) {
    in_netns([] {
        GuestMemory mem(16ull << 20);
        Driver d(mem);
        const auto good = busy_nic_state(mem, d, "off");
        if (::testing::Test::HasFailure()) return;
        auto refused = [&](std::vector<uint8_t> bytes, const std::string& what, unsigned pairs = 1) {
            Nic b(mem, "off", pairs);
            state::Reader r(bytes, "test");
            try {
                b.g.pci->load(r, mem);
                ADD_FAILURE() << "loaded; expected an error about " << what;
            } catch (const state::Error& e) {
                EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
            }
        };
        auto with = [&](size_t at, std::initializer_list<uint8_t> v) {
            auto b = good;
            size_t i = at;
            for (uint8_t x : v) b[i++] = x;
            return b;
        };
        refused(with(kMacAt, {0x03}), "st0 MAC: a multicast address");
        refused(with(kLinkAt, {0}), "st0 link status");
        refused(with(kNetFeaturesAt + 2, {0}), "st0 features: not what the driver negotiated");
        refused(with(kInUseAt, {0}), "st0 queue pairs in use: 0 of 1");
        refused(with(kInUseAt, {2}), "st0 queue pairs in use: 2 of 1");
        refused(with(kPromiscAt, {2}), "neither 0 nor 1");
        refused(with(kPositionsAt - 2, {4}), "st0 queues: 4 saved");
        refused(with(kPositionsAt + 6, {0x10}), "st0 MTU: the driver was shown");
        refused(with(good.size() - 12, {0xff, 0xff, 0xff, 0xff}), "st0 queue 0 coalescing: beyond the limits");
        // Not started: nothing has moved, and no rx mode is set.
        size_t status_at = 256 + 4 + 17 * 4;
        auto unstarted = with(status_at, {virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk});
        refused(unstarted, "st0 features: not what the driver negotiated");
        for (size_t i = 0; i < 8; i++) unstarted[kNetFeaturesAt + i] = 0;
        refused(unstarted, "st0 rx mode: set without VIRTIO_NET_F_CTRL_RX");
        unstarted[kPromiscAt] = 0;
        refused(unstarted, "st0 queue 0 coalescing: set without VIRTIO_NET_F_NOTF_COAL");
        for (size_t i = unstarted.size() - 16; i < unstarted.size(); i++) unstarted[i] = 0;
        refused(unstarted, "st0 queue 0 position: moved, but the device does not serve it");
        for (size_t i = 0; i < 6; i++) unstarted[kPositionsAt + i] = 0;
        {
            Nic ok(mem, "off");
            state::Reader r(unstarted, "test");
            EXPECT_NO_THROW(ok.g.pci->load(r, mem)) << "with all of that undone, it loads";
        }
        // Truncated anywhere in the NIC's own part.
        for (size_t n = kNet; n < good.size(); n++) {
            Nic b(mem, "off");
            std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(n));
            state::Reader rr(cut, "test");
            EXPECT_THROW(b.g.pci->load(rr, mem), state::Error) << n;
        }
        // A NIC of two pairs is not this one: its config space already differs.
        refused(good, "st0 config", 2);
    });
}

// Two queue pairs, both put in use by the driver: the pairs in use and the
// second pair's positions move across datapaths too.
TEST_P(NetStateAcross, PairsInUseCarryOver) {
    auto [from, to] = GetParam();
    in_netns([from = std::string(from), to = std::string(to)] {
        GuestMemory mem(16ull << 20);
        Driver d(mem);
        d.ctrl.at = RingLayout::paged(0x50000);
        GuestRing tx1{mem, kRing, RingLayout::paged(0x40000), true};
        auto start = [&](Nic& n) {
            ASSERT_TRUE(n.g.negotiate(kFeatures | net::kMq) & virtio::kFeaturesOk);
            n.g.setup_queue(0, kRing, kRxBase);
            n.g.setup_queue(1, kRing, kTxBase);
            n.g.setup_queue(2, kRing, 0x38000);
            n.g.setup_queue(3, kRing, 0x40000);
            n.g.setup_queue(4, kRing, 0x50000);
            n.g.set_status(kOkStatus);
        };
        auto send1 = [&](Nic& n, uint16_t head, const std::vector<uint8_t>& frame) {
            std::vector<uint8_t> b(net::kHeaderLen, 0);
            b.insert(b.end(), frame.begin(), frame.end());
            uint64_t at = 0x280000 + 0x1000ull * head;
            std::memcpy(mem.ptr(at, b.size()), b.data(), b.size());
            tx1.desc(head, at, static_cast<uint32_t>(b.size()), 0);
            uint16_t old = tx1.avail_idx;
            tx1.add(head);
            if (tx1.publish_since(old)) n.kick(3);
        };
        std::vector<uint8_t> bytes;
        {
            Nic a(mem, from, 2);
            start(a);
            // The control queue is queue 4 now: Driver::command kicks queue 2.
            auto command4 = [&](uint8_t cls, uint8_t cmd, std::vector<uint8_t> data) {
                std::vector<uint8_t> b = {cls, cmd};
                b.insert(b.end(), data.begin(), data.end());
                std::memcpy(mem.ptr(kCmd, b.size()), b.data(), b.size());
                d.ctrl.desc(0, kCmd, static_cast<uint32_t>(b.size()), kNext, 1);
                d.ctrl.desc(1, kAck, 1, kWrite);
                uint16_t old = d.ctrl.avail_idx;
                d.ctrl.add(0);
                if (d.ctrl.publish_since(old)) a.kick(4);
                return d.ctrl.wait_used(static_cast<uint16_t>(old + 1)) ? *mem.ptr(kAck, 1) : -1;
            };
            ASSERT_EQ(command4(4, 0, {2, 0}), 0);  // VQ_PAIRS_SET 2
            Wire w;
            auto t1 = make_frame(150, 7);
            send1(a, 0, t1);
            EXPECT_EQ(w.recv(), t1);
            ASSERT_TRUE(tx1.wait_used(1));
            a.g.pci->quiesce();
            bytes = a.save();
        }
        Nic b(mem, to, 2);
        b.load(bytes, mem);
        b.g.pci->quiesce();
        EXPECT_EQ(b.save(), bytes);
        b.g.pci->resume();
        Wire w;
        auto t2 = make_frame(160, 8);
        send1(b, 1, t2);
        EXPECT_EQ(w.recv(), t2) << "the second pair is still in use";
        ASSERT_TRUE(tx1.wait_used(2));
        EXPECT_EQ(tx1.used_elem(1).first, 1u);
    });
}
