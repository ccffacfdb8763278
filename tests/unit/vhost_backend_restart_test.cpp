// The vhost backend's rings stopped and restarted at the vring base, and
// moved to new guest addresses while running, as a VMM does across a
// migration or a remapping: no frame lost, none sent twice.
// Each test runs in a thread of its own that first enters a private network
// namespace, so the tap (and anything the test does to it) is gone with the
// thread. Suite VhostBackend: the tests that also run against the kernel's
// vhost-net (MINIVMM_TEST_VHOST=kernel, tests/integration/test_vhost_kernel.py);
// VhostWorker: those that read the worker's own counters.
#include <gtest/gtest.h>

#include <cstring>

#include "tests/unit/vhost_rig.hpp"

using namespace minivmm;
using namespace minivmm::testing;

TEST(VhostBackend, TxStopAndRestartContinuesAtTheBase) {
    in_netns([] {
        Rig r;
        r.start(kTx);
        std::vector<std::vector<uint8_t>> f;
        for (uint8_t i = 0; i < 3; i++) f.push_back(make_frame(80 + i, static_cast<uint8_t>(22 + i)));
        r.tx_chain(0, f[0]);
        r.tx_chain(1, f[1]);
        r.publish(kTx, {0, 1});
        for (int i = 0; i < 2; i++) {
            auto got = r.recv_frame();
            ASSERT_TRUE(got);
            EXPECT_EQ(*got, f[i]);
        }
        ASSERT_TRUE(r.ring[kTx].wait_used(2));

        r.vh->set_backend(kTx, -1);
        unsigned base = r.vh->get_vring_base(kTx);
        EXPECT_EQ(base, 2u);
        r.tx_chain(2, f[2]);
        r.ring[kTx].offer(2);
        r.kick_now(kTx);
        EXPECT_FALSE(r.recv_frame(kQuietMs)) << "a stopped ring sent";

        // Restarted, the worker looks at the ring without waiting for a kick.
        r.vh->set_vring_base(kTx, base);
        r.start(kTx);
        auto got = r.recv_frame();
        ASSERT_TRUE(got);
        EXPECT_EQ(*got, f[2]);
        ASSERT_TRUE(r.ring[kTx].wait_used(3));
        EXPECT_EQ(r.ring[kTx].used_elem(2).first, 2u);
        EXPECT_FALSE(r.recv_frame(kQuietMs)) << "frames sent again after the restart";
    });
}

TEST(VhostBackend, RxStopAndRestartContinuesAtTheBase) {
    in_netns([] {
        Rig r;
        r.start_rx(4, 2048);
        auto a = r.send_frame(100, 19);
        ASSERT_TRUE(r.ring[kRx].wait_used(1));

        r.vh->set_backend(kRx, -1);
        unsigned base = r.vh->get_vring_base(kRx);
        EXPECT_EQ(base, 1u);
        // Stopped: a frame waits in the tap.
        auto b = r.send_frame(150, 20);
        std::this_thread::sleep_for(std::chrono::milliseconds(kQuietMs));
        EXPECT_EQ(r.ring[kRx].used_idx(), 1) << "a stopped ring received";

        r.vh->set_vring_base(kRx, base);
        r.start(kRx);
        ASSERT_TRUE(r.ring[kRx].wait_used(2));
        EXPECT_EQ(r.ring[kRx].used_elem(1), std::make_pair(1u, uint32_t(net::kHeaderLen + b.size())));
        EXPECT_EQ(payload(r.rx_used_bytes(1)), b);
        EXPECT_EQ(payload(r.rx_used_bytes(0)), a) << "the first buffer was overwritten";
        auto c = r.send_frame(120, 21);
        ASSERT_TRUE(r.ring[kRx].wait_used(3));
        EXPECT_EQ(r.ring[kRx].used_elem(2).first, 2u);
        EXPECT_EQ(payload(r.rx_used_bytes(2)), c);
        EXPECT_EQ(r.vh->get_vring_base(kRx), 3u);
    });
}

namespace {
// The driver copies its ring to new guest addresses, as a VMM migrating or
// remapping it would, and the device is told while it runs.
RingLayout move_ring(Rig& r, unsigned q, const RingLayout& to) {
    const RingLayout& from = r.ring[q].at;
    auto copy = [&](uint64_t dst, uint64_t src, uint64_t n) { std::memcpy(r.host(dst, n), r.host(src, n), n); };
    copy(to.desc, from.desc, RingLayout::desc_bytes(kQSize));
    copy(to.avail, from.avail, RingLayout::avail_bytes(kQSize));
    copy(to.used, from.used, RingLayout::used_bytes(kQSize));
    RingLayout old = from;
    r.ring[q].at = to;
    r.vh->set_vring_addr(q, r.vring_addr(to));
    return old;
}
constexpr RingLayout kMovedRing{0x50000, 0x51000, 0x52000};
}  // namespace

TEST(VhostBackend, TxRingMovedWhileRunning) {
    in_netns([] {
        Rig r;
        r.start(kTx);
        auto f0 = make_frame(70, 25), f1 = make_frame(71, 26), f2 = make_frame(72, 27);
        r.tx_chain(0, f0);
        r.tx_chain(1, f1);
        r.publish(kTx, {0, 1});
        ASSERT_TRUE(r.recv_frame());
        ASSERT_TRUE(r.recv_frame());
        ASSERT_TRUE(r.ring[kTx].wait_used(2));

        RingLayout old = move_ring(r, kTx, kMovedRing);
        ASSERT_NO_FATAL_FAILURE(r.expect_tx(2, f2));
        ASSERT_TRUE(r.ring[kTx].wait_used(3)) << "used entry not in the moved ring";
        EXPECT_EQ(r.ring[kTx].used_elem(2).first, 2u);
        EXPECT_EQ(GuestRing(r.mem, kQSize, old).used_idx(), 2) << "the old ring was written after the move";
        EXPECT_FALSE(r.recv_frame(kQuietMs)) << "frames sent again after the move";
    });
}

TEST(VhostBackend, RxRingMovedWhileRunning) {
    in_netns([] {
        Rig r;
        r.start_rx(4, 2048);
        auto a = make_frame(100, 28), b = make_frame(110, 29);
        r.send_frame(a);
        ASSERT_TRUE(r.ring[kRx].wait_used(1));

        RingLayout old = move_ring(r, kRx, kMovedRing);
        r.send_frame(b);
        ASSERT_TRUE(r.ring[kRx].wait_used(2)) << "used entry not in the moved ring";
        EXPECT_EQ(r.ring[kRx].used_elem(1).first, 1u);
        EXPECT_EQ(payload(r.rx_used_bytes(1)), b);
        EXPECT_EQ(GuestRing(r.mem, kQSize, old).used_idx(), 1) << "the old ring was written after the move";
    });
}

// A frame read from the tap while no buffer was posted is held for the
// driver; moving the ring (or a new memory table, or the start of dirty
// logging) is not a reset and must not lose it.
TEST(VhostWorker, HeldFrameSurvivesARingMove) {
    in_netns([] {
        Rig r;
        r.start(kRx);
        auto f = r.send_frame(200, 30);
        std::this_thread::sleep_for(std::chrono::milliseconds(kQuietMs));  // read and held
        EXPECT_EQ(r.ring[kRx].used_idx(), 0);
        move_ring(r, kRx, kMovedRing);
        r.rx_buffers(0, 1, 2048);
        r.publish(kRx, {0});
        ASSERT_TRUE(r.ring[kRx].wait_used(1)) << "the held frame was lost";
        EXPECT_EQ(payload(r.rx_used_bytes(0)), f);
    });
}
