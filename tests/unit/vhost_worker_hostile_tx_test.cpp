// The worker's transmit ring against a driver that breaks the ring's rules,
// and rings placed outside the memory table: the worker reports the ring
// (err eventfd), stops serving it, and the other ring carries on.
// Worker-only: the counters checked are the worker's.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "tests/unit/vhost_rig.hpp"

using namespace minivmm;
using namespace minivmm::testing;

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
struct VhostWorkerHostileTx : ::testing::TestWithParam<BadTx> {};
}  // namespace

// The err eventfd fires, nothing crashes, the ring stops (a repaired ring is
// not served until the VMM restarts it) and the other ring carries on.
TEST_P(VhostWorkerHostileTx, SignalsErrAndStopsTheRing) {
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
        auto in = r.send_frame(70, 14);
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

INSTANTIATE_TEST_SUITE_P(VhostWorker, VhostWorkerHostileTx, ::testing::ValuesIn(kBadTx),
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
