// The in-process vhost backend (vhost=worker) against a simulated guest
// driver, with a real tap as the packet backend (tests/unit/vhost_rig.hpp).
// Each test runs in a thread of its own that first enters a private network
// namespace, so the tap (and anything the test does to it) is gone with the
// thread.
#include <sys/resource.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <functional>

#include "tests/unit/vhost_rig.hpp"
#include "vmm/error.hpp"

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

TEST(VhostWorker, TxThroughAnIndirectTable) {
    in_netns([] {
        Rig r(Options{.features = virtio::kFVersion1 | virtio::kFIndirectDesc});
        r.start(kTx);
        auto f = make_frame(64, 3);
        const uint64_t table = 0x30000;
        r.put(tx_slot(0), std::vector<uint8_t>(net::kHeaderLen, 0));
        r.put(tx_slot(1), f);
        r.ring[kTx].desc(0, tx_slot(0), net::kHeaderLen, kNext, 1, table);
        r.ring[kTx].desc(1, tx_slot(1), static_cast<uint32_t>(f.size()), 0, 0, table);
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

TEST(VhostWorker, RxFrameLandsInAPostedBuffer) {
    in_netns([] {
        Rig r;
        r.rx_buffers(0, 2, 2048);
        r.publish(kRx, {0, 1});
        r.start(kRx);
        auto f = make_frame(200, 6);
        r.send_frame(f);
        ASSERT_TRUE(r.ring[kRx].wait_used(1)) << "the frame never reached the RX ring";
        EXPECT_EQ(r.ring[kRx].used_elem(0), std::make_pair(0u, uint32_t(net::kHeaderLen + f.size())));
        auto b = r.rx_used_bytes(0);
        expect_rx_header(b, 1);
        EXPECT_EQ(payload(b), f);
        EXPECT_TRUE(wait_event(r.call[kRx].get(), kTimeoutMs)) << "no interrupt for the received frame";
        EXPECT_EQ(r.stats(kRx).packets.load(), 1u);
        EXPECT_EQ(r.stats(kRx).bytes.load(), f.size());

        auto f2 = make_frame(1514, 7);
        r.send_frame(f2);
        ASSERT_TRUE(r.ring[kRx].wait_used(2));
        EXPECT_EQ(r.ring[kRx].used_elem(1), std::make_pair(1u, uint32_t(net::kHeaderLen + f2.size())));
        b = r.rx_used_bytes(1);
        expect_rx_header(b, 1);
        EXPECT_EQ(payload(b), f2);
        EXPECT_EQ(r.get(rx_slot(1) + b.size(), 16), std::vector<uint8_t>(16, 0xee)) << "wrote past the frame";
        EXPECT_FALSE(wait_event(r.err[kRx].get(), 0));
    });
}

TEST(VhostWorker, RxMergeableSpreadsAFrameOverSmallBuffers) {
    in_netns([] {
        Rig r(Options{.features = virtio::kFVersion1 | net::kMrgRxbuf});
        r.rx_buffers(0, 4, 256);
        r.publish(kRx, {0, 1, 2, 3});
        r.start(kRx);
        auto f = make_frame(700, 8);  // 712 bytes with the header: three buffers
        r.send_frame(f);
        ASSERT_TRUE(r.ring[kRx].wait_used(3));
        EXPECT_EQ(r.ring[kRx].used_elem(0), std::make_pair(0u, 256u));
        EXPECT_EQ(r.ring[kRx].used_elem(1), std::make_pair(1u, 256u));
        EXPECT_EQ(r.ring[kRx].used_elem(2), std::make_pair(2u, 200u));
        std::vector<uint8_t> all;
        for (uint16_t k = 0; k < 3; k++) {
            auto part = r.rx_used_bytes(k);
            all.insert(all.end(), part.begin(), part.end());
        }
        expect_rx_header(all, 3);
        EXPECT_EQ(payload(all), f);
        EXPECT_TRUE(wait_event(r.call[kRx].get(), kTimeoutMs));
        EXPECT_EQ(r.get(rx_slot(3), 256), std::vector<uint8_t>(256, 0xee)) << "the fourth buffer was touched";
        EXPECT_EQ(r.ring[kRx].used_idx(), 3);

        // A small frame next takes just the one buffer left.
        auto f2 = make_frame(100, 9);
        r.send_frame(f2);
        ASSERT_TRUE(r.ring[kRx].wait_used(4));
        EXPECT_EQ(r.ring[kRx].used_elem(3), std::make_pair(3u, uint32_t(net::kHeaderLen + f2.size())));
        auto b = r.rx_used_bytes(3);
        expect_rx_header(b, 1);
        EXPECT_EQ(payload(b), f2);
        EXPECT_EQ(r.stats(kRx).packets.load(), 2u);
    });
}

// Without MRG_RXBUF one buffer must hold the whole frame: a frame too big
// for it is dropped and counted, and the buffer is kept for the next one.
TEST(VhostWorker, RxWithoutMergeableDropsAFrameTooBigForABuffer) {
    in_netns([] {
        Rig r;
        r.rx_buffers(0, 4, 256);
        r.publish(kRx, {0, 1, 2, 3});
        r.start(kRx);
        r.send_frame(make_frame(700, 31));
        std::this_thread::sleep_for(std::chrono::milliseconds(kQuietMs));
        EXPECT_EQ(r.ring[kRx].used_idx(), 0) << "a frame spread over buffers without MRG_RXBUF";
        EXPECT_EQ(r.stats(kRx).errors.load(), 1u);
        EXPECT_FALSE(wait_event(r.err[kRx].get(), 0)) << "the guest's small buffers are not a broken ring";
        auto f = make_frame(200, 32);
        r.send_frame(f);
        ASSERT_TRUE(r.ring[kRx].wait_used(1));
        EXPECT_EQ(r.ring[kRx].used_elem(0), std::make_pair(0u, uint32_t(net::kHeaderLen + f.size())));
        auto b = r.rx_used_bytes(0);
        expect_rx_header(b, 1);
        EXPECT_EQ(payload(b), f);
    });
}

// A frame that finds too few buffers waits for the driver to post more (and
// must ask for the kick that says so), with and without event indexes.
TEST(VhostWorker, RxWaitsForEnoughBuffers) {
    for (bool event_idx : {false, true}) {
        SCOPED_TRACE(event_idx ? "EVENT_IDX" : "no EVENT_IDX");
        in_netns([event_idx] {
            Rig r(Options{.features = virtio::kFVersion1 | net::kMrgRxbuf | (event_idx ? virtio::kFEventIdx : 0)});
            r.rx_buffers(0, 1, 256);
            r.publish(kRx, {0});
            r.start(kRx);
            auto f = make_frame(700, 10);
            r.send_frame(f);
            std::this_thread::sleep_for(std::chrono::milliseconds(kQuietMs));
            EXPECT_EQ(r.ring[kRx].used_idx(), 0) << "a frame delivered into too little room";
            r.rx_buffers(1, 2, 256);
            r.publish(kRx, {1, 2});
            ASSERT_TRUE(r.ring[kRx].wait_used(3)) << "the frame was lost, or the device never asked for a kick";
            std::vector<uint8_t> all;
            for (uint16_t k = 0; k < 3; k++) {
                EXPECT_EQ(r.ring[kRx].used_elem(k).first, k);
                auto part = r.rx_used_bytes(k);
                all.insert(all.end(), part.begin(), part.end());
            }
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

namespace {
struct BadTx {
    const char* name;
    std::function<void(Rig&)> make;
};
const BadTx kBadTx[] = {
    {"DescriptorLoop",
     [](Rig& r) {
         r.ring[kTx].desc(0, tx_slot(0), 64, kNext, 1);
         r.ring[kTx].desc(1, tx_slot(1), 64, kNext, 0);
         r.ring[kTx].offer(0);
     }},
    {"NextOutOfRange",
     [](Rig& r) {
         r.ring[kTx].desc(0, tx_slot(0), 64, kNext, 200);
         r.ring[kTx].offer(0);
     }},
    {"HeadOutOfRange", [](Rig& r) { r.ring[kTx].offer(kQSize + 1); }},
    {"AvailIndexJump",
     [](Rig& r) {
         r.tx_chain(0, make_frame(64, 12));
         r.ring[kTx].avail_idx = kQSize + 5;
         r.ring[kTx].offer(0);
     }},
    {"BufferOutsideMemory",
     [](Rig& r) {
         r.ring[kTx].desc(0, kMemSize - 8, 64, 0);
         r.ring[kTx].offer(0);
     }},
};
void PrintTo(const BadTx& b, std::ostream* os) { *os << b.name; }
struct VhostWorkerMaliciousTx : ::testing::TestWithParam<BadTx> {};
}  // namespace

// The err eventfd fires, nothing crashes, the ring stops (a repaired ring is
// not served until the VMM restarts it) and the other ring carries on.
TEST_P(VhostWorkerMaliciousTx, SignalsErrAndStopsTheRing) {
    in_netns([this] {
        Rig r;
        r.start(kTx);
        r.start(kRx);
        GetParam().make(r);
        r.kick_now(kTx);
        ASSERT_TRUE(wait_event(r.err[kTx].get(), kTimeoutMs)) << "the broken ring was not reported";
        EXPECT_GE(r.stats(kTx).errors.load(), 1u);
        EXPECT_EQ(r.ring[kTx].used_idx(), 0);

        // The driver repairs the ring: a worker still serving it would send.
        auto f = make_frame(90, 13);
        r.tx_chain(0, f);
        r.ring[kTx].avail_idx = 0;
        r.ring[kTx].offer(0);
        r.kick_now(kTx);
        EXPECT_FALSE(r.recv_frame(kQuietMs)) << "the worker went on with a ring it found broken";
        EXPECT_EQ(r.ring[kTx].used_idx(), 0);
        EXPECT_FALSE(wait_event(r.call[kTx].get(), 0));

        // The RX ring is not affected.
        r.rx_buffers(0, 1, 2048);
        r.publish(kRx, {0});
        auto in = make_frame(70, 14);
        r.send_frame(in);
        ASSERT_TRUE(r.ring[kRx].wait_used(1));
        EXPECT_EQ(payload(r.rx_used_bytes(0)), in);

        // A device reset restarts the ring from the start: the repaired chain goes.
        r.vh->set_backend(kTx, -1);
        EXPECT_EQ(r.vh->get_vring_base(kTx), 0u);
        r.vh->set_vring_base(kTx, 0);
        r.start(kTx);
        auto got = r.recv_frame();
        ASSERT_TRUE(got);
        EXPECT_EQ(*got, f);
        EXPECT_TRUE(r.ring[kTx].wait_used(1));
    });
}

INSTANTIATE_TEST_SUITE_P(VhostWorker, VhostWorkerMaliciousTx, ::testing::ValuesIn(kBadTx),
                         [](const ::testing::TestParamInfo<BadTx>& i) { return std::string(i.param.name); });

TEST(VhostWorker, RingOutsideTheMemoryTableSignalsErr) {
    in_netns([] {
        Rig r;
        uint8_t elsewhere[4096] __attribute__((aligned(16))) = {};
        auto a = r.vring_addr(kTxRing);
        a.used = reinterpret_cast<uint64_t>(elsewhere);  // VMM memory, but not guest memory
        r.vh->set_vring_addr(kTx, a);
        r.start(kTx);
        EXPECT_TRUE(wait_event(r.err[kTx].get(), kTimeoutMs));
        // Moved back into guest memory, it works.
        r.vh->set_vring_addr(kTx, r.vring_addr(kTxRing));
        r.start(kTx);
        ASSERT_NO_FATAL_FAILURE(r.expect_tx(0, make_frame(60, 15)));
    });
}

// With VHOST_F_LOG_ALL every page the device writes is marked: receive
// buffers (only as far as the frame goes) and the used ring; nothing else.
TEST(VhostWorker, DirtyLogMarksEveryPageWritten) {
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
TEST(VhostWorker, DirtyLogOfDataOnlyWithLogAll) {
    in_netns([] {
        Rig r(Options{.log = true});  // a log base and the ring's log flag, but no VHOST_F_LOG_ALL
        r.rx_buffers(0, 1, 2048);
        r.publish(kRx, {0});
        r.start(kRx);
        r.send_frame(make_frame(100, 17));
        ASSERT_TRUE(r.ring[kRx].wait_used(1));
        EXPECT_EQ(r.dirty_pages(), (std::set<uint64_t>{kRxRing.used >> 12}));
    });
}

// The device also writes avail_event (EVENT_IDX) at the end of the used
// ring; with the used ring ending right at a page boundary that word is in a
// page of its own, which must be logged too.
TEST(VhostWorker, DirtyLogCoversTheAvailEventWord) {
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

TEST(VhostWorker, RxStopAndRestartContinuesAtTheBase) {
    in_netns([] {
        Rig r;
        r.rx_buffers(0, 4, 2048);
        r.publish(kRx, {0, 1, 2, 3});
        r.start(kRx);
        auto a = make_frame(100, 19);
        r.send_frame(a);
        ASSERT_TRUE(r.ring[kRx].wait_used(1));

        r.vh->set_backend(kRx, -1);
        unsigned base = r.vh->get_vring_base(kRx);
        EXPECT_EQ(base, 1u);
        // Stopped: a frame waits in the tap.
        auto b = make_frame(150, 20);
        r.send_frame(b);
        std::this_thread::sleep_for(std::chrono::milliseconds(kQuietMs));
        EXPECT_EQ(r.ring[kRx].used_idx(), 1) << "a stopped ring received";

        r.vh->set_vring_base(kRx, base);
        r.start(kRx);
        ASSERT_TRUE(r.ring[kRx].wait_used(2));
        EXPECT_EQ(r.ring[kRx].used_elem(1), std::make_pair(1u, uint32_t(net::kHeaderLen + b.size())));
        EXPECT_EQ(payload(r.rx_used_bytes(1)), b);
        EXPECT_EQ(payload(r.rx_used_bytes(0)), a) << "the first buffer was overwritten";
        auto c = make_frame(120, 21);
        r.send_frame(c);
        ASSERT_TRUE(r.ring[kRx].wait_used(3));
        EXPECT_EQ(r.ring[kRx].used_elem(2).first, 2u);
        EXPECT_EQ(payload(r.rx_used_bytes(2)), c);
        EXPECT_EQ(r.vh->get_vring_base(kRx), 3u);
    });
}

TEST(VhostWorker, TxStopAndRestartContinuesAtTheBase) {
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

namespace {
// The driver copies its ring to new guest addresses, as a VMM migrating or
// remapping it would, and the device is told while it runs.
RingLayout move_ring(Rig& r, unsigned q, const RingLayout& to) {
    const RingLayout& from = r.ring[q].at;
    std::memcpy(r.ring[q].p(to.desc, 16 * kQSize), r.ring[q].p(from.desc, 16 * kQSize), 16 * kQSize);
    std::memcpy(r.ring[q].p(to.avail, 6 + 2 * kQSize), r.ring[q].p(from.avail, 6 + 2 * kQSize), 6 + 2 * kQSize);
    std::memcpy(r.ring[q].p(to.used, 6 + 8 * kQSize), r.ring[q].p(from.used, 6 + 8 * kQSize), 6 + 8 * kQSize);
    RingLayout old = from;
    r.ring[q].at = to;
    r.vh->set_vring_addr(q, r.vring_addr(to));
    return old;
}
constexpr RingLayout kMovedRing{0x50000, 0x51000, 0x52000};
}  // namespace

TEST(VhostWorker, TxRingMovedWhileRunning) {
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
        EXPECT_EQ(DriverRing({r.mem, old}).used_idx(), 2) << "the old ring was written after the move";
        EXPECT_FALSE(r.recv_frame(kQuietMs)) << "frames sent again after the move";
    });
}

TEST(VhostWorker, RxRingMovedWhileRunning) {
    in_netns([] {
        Rig r;
        r.rx_buffers(0, 4, 2048);
        r.publish(kRx, {0, 1, 2, 3});
        r.start(kRx);
        auto a = make_frame(100, 28), b = make_frame(110, 29);
        r.send_frame(a);
        ASSERT_TRUE(r.ring[kRx].wait_used(1));

        RingLayout old = move_ring(r, kRx, kMovedRing);
        r.send_frame(b);
        ASSERT_TRUE(r.ring[kRx].wait_used(2)) << "used entry not in the moved ring";
        EXPECT_EQ(r.ring[kRx].used_elem(1).first, 1u);
        EXPECT_EQ(payload(r.rx_used_bytes(1)), b);
        EXPECT_EQ(DriverRing({r.mem, old}).used_idx(), 1) << "the old ring was written after the move";
    });
}

// A frame read from the tap while no buffer was posted is held for the
// driver; moving the ring (or a new memory table, or the start of dirty
// logging) is not a reset and must not lose it.
TEST(VhostWorker, HeldFrameSurvivesARingMove) {
    in_netns([] {
        Rig r;
        r.start(kRx);
        auto f = make_frame(200, 30);
        r.send_frame(f);
        std::this_thread::sleep_for(std::chrono::milliseconds(kQuietMs));  // read and held
        EXPECT_EQ(r.ring[kRx].used_idx(), 0);
        move_ring(r, kRx, kMovedRing);
        r.rx_buffers(0, 1, 2048);
        r.publish(kRx, {0});
        ASSERT_TRUE(r.ring[kRx].wait_used(1)) << "the held frame was lost";
        EXPECT_EQ(payload(r.rx_used_bytes(0)), f);
    });
}

// Each ring's thread is stopped through an eventfd: a backend that cannot
// have one is refused before any thread could start.
TEST(VhostWorker, NoEventfdForStoppingIsAnError) {
    rlimit old;
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
    int lowest = ::dup(0);  // the next fd number handed out
    ASSERT_GE(lowest, 0);
    ::close(lowest);
    rlimit low = old;
    low.rlim_cur = static_cast<rlim_t>(lowest);  // so no new fd fits
    ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
    std::string what;
    try {
        make_worker_vhost(1, "nofd");
    } catch (const UserError& e) {
        what = e.what();
    }
    ::setrlimit(RLIMIT_NOFILE, &old);
    EXPECT_NE(what.find("eventfd"), std::string::npos) << "got: '" << what << "'";
}
