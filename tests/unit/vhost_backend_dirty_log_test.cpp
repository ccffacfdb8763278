// The vhost backend's dirty log for migration (VHOST_F_LOG_ALL, the ring's
// log flag): every page the device writes is marked, and nothing else.
// Each test runs in a thread of its own that first enters a private network
// namespace, so the tap (and anything the test does to it) is gone with the
// thread. Suite VhostBackend: the tests that also run against the kernel's
// vhost-net (MINIVMM_TEST_VHOST=kernel, tests/integration/test_vhost_kernel.py);
// VhostWorker: those that read the worker's own counters.
#include <gtest/gtest.h>

#include <set>

#include "tests/unit/vhost_rig.hpp"

using namespace minivmm;
using namespace minivmm::testing;

// With VHOST_F_LOG_ALL every page the device writes is marked: receive
// buffers (only as far as the frame goes) and the used ring; nothing else.
TEST(VhostBackend, DirtyLogMarksEveryPageWritten) {
    in_netns([] {
        // Mergeable buffers, as Linux always takes them: without, vhost-net
        // leaves num_buffers 0 where the spec (and the worker) say 1.
        Rig r(Options{.features = virtio::kFVersion1 | net::kMrgRxbuf | vhost::kFLogAll, .log = true});
        // One chain: 256 bytes straddling pages 0x200/0x201, then 2 KiB in
        // page 0x300, then 2 KiB in page 0x400 the frame does not reach.
        r.ring[kRx].desc(0, 0x200f80, 256, kWrite | kNext, 1);
        r.ring[kRx].desc(1, 0x300000, 2048, kWrite | kNext, 2);
        r.ring[kRx].desc(2, 0x400000, 2048, kWrite);
        r.publish(kRx, {0});
        r.start(kRx);
        auto f = make_frame(600, 16);  // 612 bytes: 256 + 356
        r.send_frame(f);
        ASSERT_TRUE(r.ring[kRx].wait_used(1));
        EXPECT_EQ(r.ring[kRx].used_elem(0), std::make_pair(0u, 612u));
        auto b = r.get(0x200f80, 256);
        auto rest = r.get(0x300000, 356);
        b.insert(b.end(), rest.begin(), rest.end());
        expect_rx_header(b, 1);
        EXPECT_EQ(payload(b), f);
        std::set<uint64_t> want = {kRxRing.used >> 12, 0x200, 0x201, 0x300};
        EXPECT_EQ(r.dirty_pages(), want);
    });
}

// As in vhost-net: the ring's VHOST_VRING_F_LOG flag logs the used ring;
// the buffers the device fills are logged only with VHOST_F_LOG_ALL.
TEST(VhostBackend, DirtyLogOfDataOnlyWithLogAll) {
    in_netns([] {
        Rig r(Options{.log = true});  // a log base and the ring's log flag, but no VHOST_F_LOG_ALL
        r.start_rx(1, 2048);
        r.send_frame(make_frame(100, 17));
        ASSERT_TRUE(r.ring[kRx].wait_used(1));
        EXPECT_EQ(r.dirty_pages(), (std::set<uint64_t>{kRxRing.used >> 12}));
    });
}

// The device also writes avail_event (EVENT_IDX) at the end of the used
// ring; with the used ring ending right at a page boundary that word is in a
// page of its own, which must be logged too.
TEST(VhostBackend, DirtyLogCoversTheAvailEventWord) {
    in_netns([] {
        const uint64_t used = 0x24000 - (4 + 8 * kQSize);  // avail_event at 0x24000
        Rig r(Options{.features = virtio::kFVersion1 | virtio::kFEventIdx | vhost::kFLogAll,
                      .tx = {0x20000, 0x21000, used},
                      .log = true});
        r.start(kTx);
        auto f = make_frame(64, 18);
        r.tx_chain(0, f);
        r.publish(kTx, {0});
        ASSERT_TRUE(r.recv_frame());
        ASSERT_TRUE(r.ring[kTx].wait_used(1));
        // The worker asks for the next kick once it is idle.
        ASSERT_TRUE(r.ring[kTx].wait_avail_event(1)) << "avail_event " << r.ring[kTx].avail_event();
        EXPECT_TRUE(r.dirty(0x23)) << "used entries and index";
        EXPECT_TRUE(r.dirty(0x24)) << "avail_event written but not logged";
        // Not the descriptors, the avail ring or the send buffer: those are only read.
        EXPECT_EQ(r.dirty_pages(), (std::set<uint64_t>{0x23, 0x24}));
    });
}
