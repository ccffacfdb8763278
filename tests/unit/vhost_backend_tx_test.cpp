// The vhost backend's transmit ring against a simulated guest driver, with
// a real tap as the packet backend (tests/unit/vhost_rig.hpp): frames reach
// the tap and the used ring, interrupts as the driver asks, bad chains dropped.
// Each test runs in a thread of its own that first enters a private network
// namespace, so the tap (and anything the test does to it) is gone with the
// thread. Suite VhostBackend: the tests that also run against the kernel's
// vhost-net (MINIVMM_TEST_VHOST=kernel, tests/integration/test_vhost_kernel.py);
// VhostWorker: those that read the worker's own counters.
#include <gtest/gtest.h>

#include "tests/unit/vhost_rig.hpp"

using namespace minivmm;
using namespace minivmm::testing;

TEST(VhostWorker, TxFrameReachesTheTapAndTheUsedRing) {
    in_netns([] {
        Rig r;
        r.start(kTx);
        // The usual Linux layout: the header in a descriptor of its own.
        auto f1 = make_frame(100, 1);
        r.put(tx_slot(0), std::vector<uint8_t>(net::kHeaderLen, 0));
        r.put(tx_slot(1), f1);
        r.ring[kTx].desc(0, tx_slot(0), net::kHeaderLen, kNext, 1);
        r.ring[kTx].desc(1, tx_slot(1), static_cast<uint32_t>(f1.size()), 0);
        r.publish(kTx, {0});
        auto got = r.recv_frame();
        ASSERT_TRUE(got) << "the frame never came out of the tap";
        EXPECT_EQ(*got, f1);
        ASSERT_TRUE(r.ring[kTx].wait_used(1));
        EXPECT_EQ(r.ring[kTx].used_elem(0), std::make_pair(0u, 0u));  // id 0, nothing written
        EXPECT_TRUE(wait_event(r.call[kTx].get(), kTimeoutMs)) << "no interrupt for the used entry";
        EXPECT_EQ(r.stats(kTx).packets.load(), 1u);
        EXPECT_EQ(r.stats(kTx).bytes.load(), f1.size());
        EXPECT_EQ(r.stats(kTx).errors.load(), 0u);

        // VRING_AVAIL_F_NO_INTERRUPT: the frame goes, the interrupt does not.
        r.ring[kTx].set_avail_flags(1);
        ASSERT_NO_FATAL_FAILURE(r.expect_tx(2, make_frame(300, 2)));
        ASSERT_TRUE(r.ring[kTx].wait_used(2));
        EXPECT_EQ(r.ring[kTx].used_elem(1), std::make_pair(2u, 0u));
        EXPECT_FALSE(wait_event(r.call[kTx].get(), kQuietMs)) << "interrupt although the driver suppressed it";
        EXPECT_FALSE(r.recv_frame(kQuietMs)) << "a frame sent twice";
        EXPECT_FALSE(wait_event(r.err[kTx].get(), 0));
    });
}

TEST(VhostBackend, TxThroughAnIndirectTable) {
    in_netns([] {
        Rig r(Options{.features = virtio::kFVersion1 | virtio::kFIndirectDesc});
        r.start(kTx);
        auto f = make_frame(64, 3);
        const uint64_t table = 0x30000;
        r.put(tx_slot(0), std::vector<uint8_t>(net::kHeaderLen, 0));
        r.put(tx_slot(1), f);
        write_desc(r.mem, table, 0, tx_slot(0), net::kHeaderLen, kNext, 1);
        write_desc(r.mem, table, 1, tx_slot(1), static_cast<uint32_t>(f.size()), 0);
        r.ring[kTx].desc(5, table, 32, kIndirect);
        r.publish(kTx, {5});
        auto got = r.recv_frame();
        ASSERT_TRUE(got);
        EXPECT_EQ(*got, f);
        ASSERT_TRUE(r.ring[kTx].wait_used(1));
        EXPECT_EQ(r.ring[kTx].used_elem(0).first, 5u);
    });
}

// A send chain with a device-writable part is the guest's error: that chain
// is dropped and counted, but the ring keeps going (no err signal).
TEST(VhostWorker, TxChainWithWritablePartIsDroppedNotSent) {
    in_netns([] {
        Rig r;
        r.start(kTx);
        auto bad = make_frame(80, 4);
        r.tx_chain(0, bad);
        r.ring[kTx].desc(0, tx_slot(0), static_cast<uint32_t>(net::kHeaderLen + bad.size()), kNext, 1);
        r.ring[kTx].desc(1, tx_slot(1), 64, kWrite);
        r.publish(kTx, {0});
        ASSERT_TRUE(r.ring[kTx].wait_used(1));
        EXPECT_EQ(r.ring[kTx].used_elem(0), std::make_pair(0u, 0u));
        EXPECT_FALSE(r.recv_frame(kQuietMs)) << "a chain with a writable part was sent";
        EXPECT_EQ(r.stats(kTx).errors.load(), 1u);
        EXPECT_EQ(r.stats(kTx).packets.load(), 0u);
        EXPECT_FALSE(wait_event(r.err[kTx].get(), 0));
        ASSERT_NO_FATAL_FAILURE(r.expect_tx(2, make_frame(80, 5)));
    });
}
