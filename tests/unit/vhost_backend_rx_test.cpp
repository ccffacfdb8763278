// The vhost backend's receive ring against a simulated guest driver, with
// a real tap as the packet backend (tests/unit/vhost_rig.hpp): frames land in
// posted buffers, spread over mergeable ones, or wait for enough of them.
// Each test runs in a thread of its own that first enters a private network
// namespace, so the tap (and anything the test does to it) is gone with the
// thread. Suite VhostBackend: the tests that also run against the kernel's
// vhost-net (MINIVMM_TEST_VHOST=kernel, tests/integration/test_vhost_kernel.py);
// VhostWorker: those that read the worker's own counters.
#include <gtest/gtest.h>

#include "tests/unit/vhost_rig.hpp"

using namespace minivmm;
using namespace minivmm::testing;

TEST(VhostWorker, RxFrameLandsInAPostedBuffer) {
    in_netns([] {
        Rig r;
        r.start_rx(2, 2048);
        auto f = r.send_frame(200, 6);
        ASSERT_NO_FATAL_FAILURE(r.expect_rx(0, f));
        EXPECT_TRUE(wait_event(r.call[kRx].get(), kTimeoutMs)) << "no interrupt for the received frame";
        EXPECT_EQ(r.stats(kRx).packets.load(), 1u);
        EXPECT_EQ(r.stats(kRx).bytes.load(), f.size());

        auto f2 = r.send_frame(1514, 7);
        ASSERT_NO_FATAL_FAILURE(r.expect_rx(1, f2));
        EXPECT_EQ(r.get(rx_slot(1) + net::kHeaderLen + f2.size(), 16), std::vector<uint8_t>(16, 0xee))
            << "wrote past the frame";
        EXPECT_FALSE(wait_event(r.err[kRx].get(), 0));
    });
}

TEST(VhostWorker, RxMergeableSpreadsAFrameOverSmallBuffers) {
    in_netns([] {
        Rig r(Options{.features = virtio::kFVersion1 | net::kMrgRxbuf});
        r.start_rx(4, 256);
        auto f = make_frame(700, 8);  // 712 bytes with the header: three buffers
        r.send_frame(f);
        ASSERT_TRUE(r.ring[kRx].wait_used(3));
        EXPECT_EQ(r.ring[kRx].used_elem(0), std::make_pair(0u, 256u));
        EXPECT_EQ(r.ring[kRx].used_elem(1), std::make_pair(1u, 256u));
        EXPECT_EQ(r.ring[kRx].used_elem(2), std::make_pair(2u, 200u));
        auto all = r.rx_used_bytes(0, 3);
        expect_rx_header(all, 3);
        EXPECT_EQ(payload(all), f);
        EXPECT_TRUE(wait_event(r.call[kRx].get(), kTimeoutMs));
        EXPECT_EQ(r.get(rx_slot(3), 256), std::vector<uint8_t>(256, 0xee)) << "the fourth buffer was touched";
        EXPECT_EQ(r.ring[kRx].used_idx(), 3);

        // A small frame next takes just the one buffer left.
        auto f2 = r.send_frame(100, 9);
        ASSERT_NO_FATAL_FAILURE(r.expect_rx(3, f2));
        EXPECT_EQ(r.stats(kRx).packets.load(), 2u);
    });
}

// Without MRG_RXBUF one buffer must hold the whole frame: a frame too big
// for it is dropped and counted, and the buffer is kept for the next one.
TEST(VhostWorker, RxWithoutMergeableDropsAFrameTooBigForABuffer) {
    in_netns([] {
        Rig r;
        r.start_rx(4, 256);
        r.send_frame(make_frame(700, 31));
        std::this_thread::sleep_for(std::chrono::milliseconds(kQuietMs));
        EXPECT_EQ(r.ring[kRx].used_idx(), 0) << "a frame spread over buffers without MRG_RXBUF";
        EXPECT_EQ(r.stats(kRx).errors.load(), 1u);
        EXPECT_FALSE(wait_event(r.err[kRx].get(), 0)) << "the guest's small buffers are not a broken ring";
        auto f = r.send_frame(200, 32);
        ASSERT_NO_FATAL_FAILURE(r.expect_rx(0, f));
    });
}

// A frame that finds too few buffers waits for the driver to post more (and
// must ask for the kick that says so), with and without event indexes.
TEST(VhostWorker, RxWaitsForEnoughBuffers) {
    for (bool event_idx : {false, true}) {
        SCOPED_TRACE(event_idx ? "EVENT_IDX" : "no EVENT_IDX");
        in_netns([event_idx] {
            Rig r(Options{.features = virtio::kFVersion1 | net::kMrgRxbuf | (event_idx ? virtio::kFEventIdx : 0)});
            r.start_rx(1, 256);
            auto f = r.send_frame(700, 10);
            std::this_thread::sleep_for(std::chrono::milliseconds(kQuietMs));
            EXPECT_EQ(r.ring[kRx].used_idx(), 0) << "a frame delivered into too little room";
            r.rx_buffers(1, 2, 256);
            r.publish(kRx, {1, 2});
            ASSERT_TRUE(r.ring[kRx].wait_used(3)) << "the frame was lost, or the device never asked for a kick";
            for (uint16_t k = 0; k < 3; k++) EXPECT_EQ(r.ring[kRx].used_elem(k).first, k);
            auto all = r.rx_used_bytes(0, 3);
            expect_rx_header(all, 3);
            EXPECT_EQ(payload(all), f);
            EXPECT_EQ(r.stats(kRx).errors.load(), 0u);
        });
    }
}

TEST(VhostWorker, RxBufferWithReadablePartBreaksTheRing) {
    in_netns([] {
        Rig r;
        r.ring[kRx].desc(0, rx_slot(0), 1024, 0);  // device-readable: not a receive buffer
        r.publish(kRx, {0});
        r.start(kRx);
        r.send_frame(make_frame(100, 11));
        EXPECT_TRUE(wait_event(r.err[kRx].get(), kTimeoutMs)) << "the broken ring was not reported";
        EXPECT_EQ(r.ring[kRx].used_idx(), 0);
        EXPECT_GE(r.stats(kRx).errors.load(), 1u);
    });
}
