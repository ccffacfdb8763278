// The control class VIRTIO_NET_CTRL_NOTF_COAL: what the driver may set,
// where it goes, and what a hostile driver gets for the rest (VIRTIO_NET_ERR,
// nothing changed). Then the same through a whole device's control queue,
// where VQ_GET answers in the writable bytes after the status.
#include <gtest/gtest.h>

#include <map>

#include "tests/unit/net_rig.hpp"
#include "virtio/net_coalesce.hpp"
#include "vmm/bytes.hpp"
#include "vmm/error.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
constexpr uint8_t kTxSet = 0, kRxSet = 1, kVqSet = 2, kVqGet = 3;
constexpr uint64_t kBoth = net::kNotfCoal | net::kVqNotfCoal;

std::vector<uint8_t> le(std::initializer_list<std::pair<uint64_t, int>> fields) {
    std::vector<uint8_t> b;
    for (auto [v, n] : fields)
        for (int i = 0; i < n; i++) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return b;
}
std::vector<uint8_t> params(uint32_t packets, uint32_t usecs) { return le({{packets, 4}, {usecs, 4}}); }
std::vector<uint8_t> vq(uint16_t vqn, uint32_t packets, uint32_t usecs) {
    return le({{vqn, 2}, {0, 2}, {packets, 4}, {usecs, 4}});
}

// Four pairs: eight data queues, each change recorded as the backend sees it.
struct Model {
    std::map<unsigned, Coalesce> applied;
    unsigned calls = 0;
    NetCoalesce c{8, [this](unsigned q, const Coalesce& v) { applied[q] = v, calls++; }};
    std::vector<uint8_t> reply;
    bool run(uint8_t cmd, const std::vector<uint8_t>& d, uint64_t features = kBoth, unsigned queues = 8) {
        reply.clear();
        return c.command(cmd, d, features, queues, reply);
    }
};

TEST(NetCoalesce, RxAndTxSetReachEveryQueueOfTheirDirection) {
    Model m;
    ASSERT_TRUE(m.run(kRxSet, params(16, 300)));
    ASSERT_TRUE(m.run(kTxSet, params(8, 100)));
    for (unsigned q = 0; q < 8; q++) {
        Coalesce want = q % 2 ? Coalesce{8, 100} : Coalesce{16, 300};
        EXPECT_EQ(m.c.get(q), want) << q;
        EXPECT_EQ(m.applied[q], want) << q;
    }
    EXPECT_EQ(m.calls, 8u);
}

TEST(NetCoalesce, WithoutMqOnlyTheFirstPairExists) {
    Model m;
    ASSERT_TRUE(m.run(kRxSet, params(4, 50), kBoth, 2));
    EXPECT_EQ(m.c.get(0), (Coalesce{4, 50}));
    EXPECT_EQ(m.c.get(2), Coalesce{});
    EXPECT_FALSE(m.run(kVqSet, vq(2, 4, 50), kBoth, 2));  // queue 2 is the control queue then
}

TEST(NetCoalesce, VqSetAndGetOneQueue) {
    Model m;
    ASSERT_TRUE(m.run(kVqSet, vq(5, 32, 1000)));
    EXPECT_EQ(m.c.get(5), (Coalesce{32, 1000}));
    EXPECT_EQ(m.calls, 1u);
    ASSERT_TRUE(m.run(kVqGet, le({{5, 2}})));
    EXPECT_EQ(m.reply, params(32, 1000));
    ASSERT_TRUE(m.run(kVqGet, vq(4, 99, 99)));  // the whole struct: its parameters are not a SET
    EXPECT_EQ(m.reply, params(0, 0));
    EXPECT_EQ(m.c.get(4), Coalesce{});
}

TEST(NetCoalesce, HostileCommandsChangeNothing) {
    Model m;
    ASSERT_TRUE(m.run(kVqSet, vq(1, 2, 3)));
    unsigned calls = m.calls;
    std::vector<std::pair<uint8_t, std::vector<uint8_t>>> bad = {
        {kRxSet, {}},
        {kRxSet, std::vector<uint8_t>(7, 0)},                       // one byte short
        {kTxSet, std::vector<uint8_t>(9, 0)},                       // one byte too many
        {kRxSet, params(kMaxCoalescePackets + 1, 10)},              // beyond any ring
        {kTxSet, params(10, kMaxCoalesceUsecs + 1)},                // beyond a second
        {kTxSet, params(0xffffffff, 0xffffffff)},
        {kVqSet, vq(8, 1, 1)},                                      // the control queue
        {kVqSet, vq(0xffff, 1, 1)},                                 // far beyond
        {kVqSet, vq(0, 1, kMaxCoalesceUsecs + 1)},
        {kVqSet, le({{0, 2}, {0, 2}, {1, 4}})},                     // short
        {kVqSet, le({{0, 1}})},                                     // shorter than vqn
        {kVqGet, le({{8, 2}})},
        {kVqGet, le({{0, 2}, {0, 1}})},                             // neither vqn alone nor the struct
        {kVqGet, {}},
        {4, params(1, 1)},                                          // no such command
        {0xff, {}},
    };
    for (auto& [cmd, d] : bad) {
        EXPECT_FALSE(m.run(cmd, d)) << int(cmd) << " with " << d.size() << " bytes";
        EXPECT_TRUE(m.reply.empty());
    }
    EXPECT_EQ(m.calls, calls);
    for (unsigned q = 0; q < 8; q++) EXPECT_EQ(m.c.get(q), (q == 1 ? Coalesce{2, 3} : Coalesce{})) << q;
    // The upper bounds themselves are fine.
    EXPECT_TRUE(m.run(kVqSet, vq(7, kMaxCoalescePackets, kMaxCoalesceUsecs)));
}

TEST(NetCoalesce, CommandsNeedTheirFeatures) {
    Model m;
    EXPECT_FALSE(m.run(kRxSet, params(1, 1), 0));
    EXPECT_FALSE(m.run(kRxSet, params(1, 1), net::kVqNotfCoal));
    EXPECT_TRUE(m.run(kRxSet, params(1, 1), net::kNotfCoal));
    EXPECT_FALSE(m.run(kVqSet, vq(0, 1, 1), net::kNotfCoal));  // per-queue commands need VQ_NOTF_COAL
    EXPECT_FALSE(m.run(kVqGet, le({{0, 2}}), net::kNotfCoal));
    // VQ_NOTF_COAL alone: its own commands, not NOTF_COAL's.
    EXPECT_TRUE(m.run(kVqSet, vq(2, 7, 9), net::kVqNotfCoal));
    EXPECT_EQ(m.c.get(2), (Coalesce{7, 9}));
    ASSERT_TRUE(m.run(kVqGet, le({{2, 2}}), net::kVqNotfCoal));
    EXPECT_EQ(m.reply, params(7, 9));
    EXPECT_FALSE(m.run(kTxSet, params(1, 1), net::kVqNotfCoal));
}

TEST(NetCoalesce, ResetPutsEveryQueueBackToZero) {
    Model m;
    ASSERT_TRUE(m.run(kRxSet, params(16, 300)));
    ASSERT_TRUE(m.run(kVqSet, vq(3, 5, 6)));
    m.c.reset();
    for (unsigned q = 0; q < 8; q++) {
        EXPECT_EQ(m.c.get(q), Coalesce{}) << q;
        EXPECT_EQ(m.applied[q], Coalesce{}) << q;  // and the backend was told
    }
}

// Through the device (vhost=off, whose I/O threads hold interrupts back):
// the features are offered, SET reaches the queue, VQ_GET writes the
// status first among the writable bytes and then its 8 (virtio 1.3, and
// how Linux's driver places its buffers), and a bad command is
// answered VIRTIO_NET_ERR and counted.
struct DeviceRig {
    static constexpr uint64_t kFeatures = kMqFeatures | kBoth;
    static constexpr uint64_t kReply = 0x22000;
    CtrlRig r{2, kFeatures, "co0"};

    // VQ_GET for vqn: the command, then the status byte, then the reply
    // split over two writable buffers (5 and 3 bytes); or the status and
    // the reply in one buffer of 9.
    int get(uint16_t vqn, std::vector<uint8_t>& out, uint32_t room = 8, bool one_buffer = false) {
        std::vector<uint8_t> cmd = {6, kVqGet, uint8_t(vqn), uint8_t(vqn >> 8)};
        std::memcpy(r.mem.ptr(kCmdBuf, 4), cmd.data(), 4);
        std::memset(r.mem.ptr(kReply, 16), 0xee, 16);
        *r.mem.ptr(kStatusBuf, 1) = 0xee;
        r.desc(0, kCmdBuf, 4, kNext, 1);
        if (one_buffer) {
            r.desc(1, kReply, room + 1, kWrite, 0);
        } else {
            r.desc(1, kStatusBuf, 1, kWrite | kNext, 2);
            r.desc(2, kReply, 5, kWrite | kNext, 3);
            r.desc(3, kReply + 8, room - 5, kWrite, 0);
        }
        uint16_t before = r.used_idx();
        r.ctrl.offer(0);
        r.net->notify(r.ctrl_index);
        if (r.used_idx() != uint16_t(before + 1)) return -1;
        if (one_buffer) {
            out.assign(r.mem.ptr(kReply + 1, 8), r.mem.ptr(kReply + 1, 8) + 8);
            return *r.mem.ptr(kReply, 1);
        }
        out.assign(r.mem.ptr(kReply, 5), r.mem.ptr(kReply, 5) + 5);
        out.insert(out.end(), r.mem.ptr(kReply + 8, 3), r.mem.ptr(kReply + 8, 3) + 3);
        return *r.mem.ptr(kStatusBuf, 1);
    }
    uint64_t ctrl_errors() {
        std::optional<DeviceStats> s = r.net->stats();
        if (s)
            for (const QueueCounters& q : s->queues)
                if (q.name == "ctrl") return q.errors;
        return ~0ull;
    }
};

TEST(NetCoalesceDevice, OfferedSetAndReadBackThroughTheControlQueue) {
    DeviceRig d;
    EXPECT_EQ(d.r.net->features() & kBoth, kBoth);
    ASSERT_EQ(d.r.command(6, kVqSet, vq(3, 16, 250)), kOk);
    std::vector<uint8_t> got;
    ASSERT_EQ(d.get(3, got), kOk);
    EXPECT_EQ(got, params(16, 250));
    EXPECT_EQ(d.r.ctrl.used_elem(uint16_t(d.r.used_idx() - 1)).second, 9u);  // the status and the answer
    got.clear();
    ASSERT_EQ(d.get(3, got, 8, true), kOk);
    EXPECT_EQ(got, params(16, 250));
    ASSERT_EQ(d.r.command(6, kRxSet, params(8, 40)), kOk);
    ASSERT_EQ(d.get(2, got), kOk);
    EXPECT_EQ(got, params(8, 40));
    EXPECT_EQ(d.ctrl_errors(), 0u);
}

TEST(NetCoalesceDevice, BadCommandsAreRefusedAndCounted) {
    DeviceRig d;
    EXPECT_EQ(d.r.command(6, kVqSet, vq(4, 1, 1)), kErr);  // the control queue of two pairs
    EXPECT_EQ(d.r.command(6, kRxSet, params(1, 2000000)), kErr);
    // No answer: the status goes where any command's does, the first
    // writable byte, and nothing else is written.
    std::vector<uint8_t> got, none(8, 0xee);
    EXPECT_EQ(d.get(9, got), kErr);
    EXPECT_EQ(got, none);
    EXPECT_EQ(d.get(0, got, 9), kErr);  // room for more than the answer
    EXPECT_EQ(got, none);
    EXPECT_EQ(d.ctrl_errors(), 4u);
    EXPECT_TRUE(d.r.t.broken_why().empty());
}

TEST(NetCoalesceDevice, ResetClearsTheValues) {
    DeviceRig d;
    ASSERT_EQ(d.r.command(6, kTxSet, params(16, 250)), kOk);
    d.r.net->reset();
    std::vector<QueueConfig> qs(d.r.net->num_queues());
    for (uint16_t i = 0; i < qs.size(); i++)
        qs[i] = {kQSize, CtrlRig::ring(i), CtrlRig::ring(i) + 0x1000, CtrlRig::ring(i) + 0x2000, true, i};
    qs[d.r.ctrl_index] = {kQSize, kCtrlDesc, kCtrlAvail, kCtrlUsed, true, 0};
    d.r.ctrl = GuestRing(d.r.mem, kQSize, {kCtrlDesc, kCtrlAvail, kCtrlUsed});
    std::memset(d.r.mem.ptr(kCtrlDesc, 0x3000), 0, 0x3000);
    d.r.net->activate(DeviceRig::kFeatures, qs, d.r.t);
    std::vector<uint8_t> got;
    ASSERT_EQ(d.get(1, got), kOk);
    EXPECT_EQ(got, params(0, 0));
}

TEST(NetCoalesceDevice, VhostNetIsNeverOfferedIt) {
    // The kernel's rings signal the irqfd themselves: nothing to hold back.
    struct Kernelish : VhostBackend {
        const char* name() const override { return "kernel"; }
        void set_owner() override {}
        uint64_t get_features() override { return 0; }
        void set_features(uint64_t) override {}
        void set_mem_table(const std::vector<VhostRegion>&) override {}
        void set_log_base(uint64_t, uint64_t) override {}
        void set_vring_num(unsigned, unsigned) override {}
        void set_vring_base(unsigned, unsigned) override {}
        unsigned get_vring_base(unsigned) override { return 0; }
        void set_vring_addr(unsigned, const VringAddr&) override {}
        void set_vring_kick(unsigned, int) override {}
        void set_vring_call(unsigned, int) override {}
        void set_vring_err(unsigned, int) override {}
        void set_backend(unsigned, int) override {}
    } k;
    EXPECT_FALSE(k.coalescing());
    EXPECT_THROW(k.set_vring_coalesce(0, {1, 1}), InternalError);
    GuestMemory mem(1 << 20);
    VirtioNet net(mem, make_net_backend(std::make_unique<Tap>("coalk0", 1), std::make_unique<Kernelish>(), "k0"),
                  VirtioNet::Mac{0x52, 0x54, 0, 1, 2, 4}, "k0");
    EXPECT_EQ(net.features() & kBoth, 0u);
    auto worker = make_worker_vhost(1, "w");
    EXPECT_TRUE(worker->coalescing());
}
}  // namespace
