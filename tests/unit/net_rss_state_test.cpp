// The RSS configuration in force is part of a NIC's saved state: loaded
// into another NIC (on another tap, with its own steering program), flows
// are steered as before, and a table the command would refuse is refused.
// Needs root (CAP_BPF), like the other RSS tests.
#include <bpf/bpf.h>

#include <gtest/gtest.h>

#include "tests/unit/net_rig.hpp"
#include "tests/unit/netns_helpers.hpp"
#include "vhost/ports/tap_steering.hpp"
#include "virtio/net_rss.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
constexpr uint64_t kRssFeatures = kMqFeatures | net::kRss;

// RSS_CONFIG: every flow to pair 1, over two pairs.
std::vector<uint8_t> all_to_pair1() {
    std::vector<uint8_t> b;
    auto le = [&](uint64_t v, int n) {
        for (int i = 0; i < n; i++) b.push_back(uint8_t(v >> (8 * i)));
    };
    le(net::kRssHashTypes, 4);
    le(127, 2);  // 128 entries
    le(0, 2);
    for (int i = 0; i < 128; i++) le(1, 2);
    le(2, 2);
    b.push_back(40);
    b.insert(b.end(), 40, 0x5a);
    return b;
}

// The steering program's queue for an IPv4 UDP frame from sport.
uint32_t steer_udp(Tap& tap, uint16_t sport) {
    std::vector<uint8_t> f = {0x52, 0x54, 0, 1, 2, 3, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0, 0, 28, 0, 1, 0, 0,
                              64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2};
    f.push_back(uint8_t(sport >> 8)), f.push_back(uint8_t(sport)), f.push_back(0x1e), f.push_back(0x61);
    f.resize(f.size() + 4);
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = f.data(), .data_size_in = uint32_t(f.size()));
    int fd = static_cast<TapSteering*>(tap.steering())->program_fd();
    EXPECT_EQ(bpf_prog_test_run_opts(fd, &opts), 0);
    return opts.retval;
}
}  // namespace

TEST(NetRssState, SteeringMovesWithTheNic) {
    in_netns([] {
        CtrlRig r(2, kRssFeatures, "rs5", kQSize, {}, true);
        ASSERT_EQ(r.steering_note, "");
        ASSERT_EQ(r.command(4, 1, all_to_pair1()), kOk);
        r.net->quiesce();
        state::Writer w;
        r.net->save(w);
        const auto bytes = w.take();

        // Another NIC on another tap, over the same RAM and rings.
        auto tp = std::make_unique<Tap>("mqtest1", 2);
        ASSERT_EQ(tp->attach_steering(), "");
        Tap& tap = *tp;
        VirtioNet n(r.mem, make_net_backend(std::move(tp), nullptr, "rs6"), VirtioNet::Mac{0x52, 0x54, 0, 1, 2, 3},
                    "rs6");
        std::vector<QueueConfig> qs(n.num_queues());
        for (uint16_t i = 0; i < qs.size(); i++)
            qs[i] = {kQSize, CtrlRig::ring(i), CtrlRig::ring(i) + 0x1000, CtrlRig::ring(i) + 0x2000, true, i};
        qs[r.ctrl_index] = {r.ctrl_size, kCtrlDesc, kCtrlAvail, kCtrlUsed, true, 0};
        FakeTransport t;
        for (uint16_t port = 1000; port < 1016; port++) EXPECT_GT(steer_udp(tap, port), 1u) << "spread by hash";
        state::Reader rd(bytes, "test");
        n.load(rd, {kRssFeatures, qs, true, false}, t);
        rd.expect_end();
        for (uint16_t port = 1000; port < 1016; port++) EXPECT_EQ(steer_udp(tap, port), 1u);
        n.quiesce();
        state::Writer again;
        n.save(again);
        EXPECT_EQ(again.data(), bytes);
        n.reset();

        // A table naming a pair the NIC does not have: refused, as the command is.
        auto bad = bytes;
        size_t table = 6 + 2 + 8 + 4 + 2 + 2 + 2 * 5 + 2 + 4 + 8;
        bad[table] = 3;
        VirtioNet m(r.mem, make_net_backend(std::make_unique<Tap>("mqtest2", 2), nullptr, "rs7"),
                    VirtioNet::Mac{0x52, 0x54, 0, 1, 2, 3}, "rs7");
        state::Reader rb(bad, "test");
        try {
            m.load(rb, {kRssFeatures, qs, true, false}, t);
            ADD_FAILURE() << "a bad RSS table loaded";
        } catch (const state::Error& e) {
            EXPECT_NE(std::string(e.what()).find("rs7 RSS: not a configuration"), std::string::npos) << e.what();
        }
    });
}
