// The worker's rings hold interrupts back as the guest asked (notification
// coalescing, set through VhostBackend::set_vring_coalesce while they run):
// until max_packets used buffers wait, or the timer ends the wait, and a
// ring that stops sends what it held. The driver's EVENT_IDX still decides.
// "Held" is watched for kQuietMs against timers of a second: no timing is
// asserted, only that what must come comes within the rig's timeout.
#include <gtest/gtest.h>

#include "tests/unit/vhost_rig.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
constexpr uint32_t kLong = 1'000'000;  // a second: only the count, or a stop, ends these waits

TEST(VhostWorker, TxInterruptWaitsForMaxPackets) {
    in_netns([] {
        Rig r;
        r.vh->set_vring_coalesce(kTx, {3, kLong});
        r.start(kTx);
        for (uint16_t h = 0; h < 2; h++) ASSERT_NO_FATAL_FAILURE(r.expect_tx(h, make_frame(100, uint8_t(h))));
        ASSERT_TRUE(r.ring[kTx].wait_used(2));
        EXPECT_FALSE(wait_event(r.call[kTx].get(), kQuietMs)) << "interrupt before 3 used buffers";
        ASSERT_NO_FATAL_FAILURE(r.expect_tx(2, make_frame(100, 2)));
        ASSERT_TRUE(r.ring[kTx].wait_used(3));
        EXPECT_TRUE(wait_event(r.call[kTx].get(), kTimeoutMs)) << "no interrupt at the third";
        EXPECT_EQ(r.stats(kTx).interrupts.load(), 1u);
        // Off again (0): every batch decides at once, as before.
        r.vh->set_vring_coalesce(kTx, {});
        ASSERT_NO_FATAL_FAILURE(r.expect_tx(3, make_frame(100, 3)));
        EXPECT_TRUE(wait_event(r.call[kTx].get(), kTimeoutMs));
    });
}

TEST(VhostWorker, CoalescingTimerEndsTheWait) {
    in_netns([] {
        Rig r;
        r.vh->set_vring_coalesce(kTx, {64, 20000});  // 20 ms, far under the rig's timeout
        r.start(kTx);
        ASSERT_NO_FATAL_FAILURE(r.expect_tx(0, make_frame(100, 0)));
        ASSERT_TRUE(r.ring[kTx].wait_used(1));
        EXPECT_TRUE(wait_event(r.call[kTx].get(), kTimeoutMs)) << "the timer never sent the held interrupt";
        EXPECT_EQ(r.stats(kTx).interrupts.load(), 1u);
    });
}

// A ring that never runs dry loops without waiting, so the timerfd is
// never read: the deadline must end the wait anyway, or a guest that keeps
// a ring busy gets one interrupt per lull instead of one per rx/tx-usecs.
// Four passes of 64 buffers (the worker's budget), a 1 us timer: each pass
// writes 64 frames to the tap, far longer than that, so the timer armed in
// one pass has run out by the next.
TEST(VhostWorker, TheTimerEndsTheWaitOfABusyRing) {
    in_netns([] {
        Rig r(Options{.size = 256});
        r.vh->set_vring_coalesce(kTx, {32768, 1});
        for (uint16_t h = 0; h < 256; h++) {
            r.tx_chain(h, make_frame(100, uint8_t(h)));
            r.ring[kTx].add(h);
        }
        r.ring[kTx].publish();
        r.start(kTx);
        ASSERT_TRUE(r.ring[kTx].wait_used(256));
        EXPECT_TRUE(GuestRing::wait_for([&] { return r.stats(kTx).interrupts.load() >= 2; }, kTimeoutMs))
            << "one interrupt for 256 buffers: the timer never ended a wait while the ring was busy";
    });
}

TEST(VhostWorker, AStoppedRingSendsTheInterruptItHeld) {
    in_netns([] {
        Rig r;
        r.vh->set_vring_coalesce(kTx, {64, kLong});
        r.start(kTx);
        ASSERT_NO_FATAL_FAILURE(r.expect_tx(0, make_frame(100, 0)));
        ASSERT_TRUE(r.ring[kTx].wait_used(1));
        EXPECT_FALSE(wait_event(r.call[kTx].get(), kQuietMs));
        // The next ring thread starts from the used index as it stands and
        // would never send it: stopping must.
        EXPECT_EQ(r.vh->get_vring_base(kTx), 1u);
        EXPECT_TRUE(wait_event(r.call[kTx].get(), 0)) << "the held interrupt was lost with the stop";
    });
}

TEST(VhostWorker, RxCoalescingStillFollowsEventIdx) {
    in_netns([] {
        Rig r(Options{.features = virtio::kFVersion1 | virtio::kFEventIdx});
        r.vh->set_vring_coalesce(kRx, {2, kLong});
        r.ring[kRx].set_used_event(0);  // an interrupt once entry 0 is used
        r.start_rx(8, 2048);
        r.send_frame(100, 1);
        ASSERT_TRUE(r.ring[kRx].wait_used(1));
        EXPECT_FALSE(wait_event(r.call[kRx].get(), kQuietMs)) << "interrupt before 2 used buffers";
        r.send_frame(100, 2);
        ASSERT_TRUE(r.ring[kRx].wait_used(2));
        EXPECT_TRUE(wait_event(r.call[kRx].get(), kTimeoutMs)) << "no interrupt at the second";
        // The driver wants the next one only after entry 5: two more reach
        // the count, but not the driver's index, so nothing goes out.
        r.ring[kRx].set_used_event(5);
        r.send_frame(100, 3);
        r.send_frame(100, 4);
        ASSERT_TRUE(r.ring[kRx].wait_used(4));
        EXPECT_FALSE(wait_event(r.call[kRx].get(), kQuietMs)) << "an interrupt the driver did not ask for";
        EXPECT_EQ(r.stats(kRx).interrupts.load(), 1u);
    });
}
}  // namespace
