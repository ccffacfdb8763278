// The worker's receive ring against a driver that breaks the ring's rules:
// descriptor loops, avail index jumps, bad indirect tables, buffers outside
// memory. The worker takes receive buffers before a frame arrives, so each
// is found at once; it must report the ring (err eventfd), count the error,
// write nothing, stop serving the ring, and never spin or hang. The
// transmit ring goes on, and a reset starts the receive ring afresh.
// Worker-only: the counters checked are the worker's.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "tests/unit/vhost_rig.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
constexpr uint64_t kTable = 0x30000;  // an indirect table's place

struct BadRx {
    const char* name;
    std::function<void(GuestRing&)> make;  // sets up head 0 and offers it
};
const BadRx kBadRx[] = {
    {"DescriptorLoop",
     [](GuestRing& d) {
         d.desc(0, rx_slot(0), 64, kWrite | kNext, 1);
         d.desc(1, rx_slot(1), 64, kWrite | kNext, 0);
         d.offer(0);
     }},
    {"ChainLongerThanTheTable",
     [](GuestRing& d) {
         for (uint16_t i = 0; i < kQSize; i++) d.desc(i, rx_slot(i), 64, kWrite | kNext, uint16_t((i + 1) % kQSize));
         d.offer(3);
     }},
    {"NextOutOfRange",
     [](GuestRing& d) {
         d.desc(0, rx_slot(0), 64, kWrite | kNext, 200);
         d.offer(0);
     }},
    {"HeadOutOfRange", [](GuestRing& d) { d.offer(kQSize + 1); }},
    {"AvailIndexJump",
     [](GuestRing& d) {
         d.desc(0, rx_slot(0), 2048, kWrite);
         d.avail_idx = kQSize + 5;
         d.offer(0);
     }},
    {"AvailIndexJumpByAlmostTheWholeRange",
     [](GuestRing& d) {
         d.desc(0, rx_slot(0), 2048, kWrite);
         d.avail_idx = 0xfffe;
         d.offer(0);
     }},
    {"BufferOutsideMemory",
     [](GuestRing& d) {
         d.desc(0, kMemSize - 8, 64, kWrite);
         d.offer(0);
     }},
    {"ZeroLengthBuffer",
     [](GuestRing& d) {
         d.desc(0, rx_slot(0), 0, kWrite);
         d.offer(0);
     }},
    {"IndirectTableOfZeroLength",
     [](GuestRing& d) {
         d.desc(0, kTable, 0, kIndirect);
         d.offer(0);
     }},
    {"IndirectTableNotWholeDescriptors",
     [](GuestRing& d) {
         write_desc(*d.mem, kTable, 0, rx_slot(0), 2048, kWrite, 0);
         d.desc(0, kTable, 24, kIndirect);
         d.offer(0);
     }},
    {"IndirectTableOutsideMemory",
     [](GuestRing& d) {
         d.desc(0, kMemSize - 16, 64, kIndirect);
         d.offer(0);
     }},
    {"IndirectTableWrappingTheAddressSpace",
     [](GuestRing& d) {
         d.desc(0, ~0ull - 15, 32, kIndirect);
         d.offer(0);
     }},
    {"NestedIndirectTable",
     [](GuestRing& d) {
         write_desc(*d.mem, kTable, 0, kTable + 0x100, 16, kIndirect, 0);
         write_desc(*d.mem, kTable + 0x100, 0, rx_slot(0), 2048, kWrite, 0);
         d.desc(0, kTable, 16, kIndirect);
         d.offer(0);
     }},
    {"IndirectWithNext",
     [](GuestRing& d) {
         write_desc(*d.mem, kTable, 0, rx_slot(0), 2048, kWrite, 0);
         d.desc(0, kTable, 16, kIndirect | kNext, 1);
         d.desc(1, rx_slot(1), 2048, kWrite);
         d.offer(0);
     }},
    {"LoopInsideAnIndirectTable",
     [](GuestRing& d) {
         write_desc(*d.mem, kTable, 0, rx_slot(0), 64, kWrite | kNext, 1);
         write_desc(*d.mem, kTable, 1, rx_slot(1), 64, kWrite | kNext, 0);
         d.desc(0, kTable, 32, kIndirect);
         d.offer(0);
     }},
    {"IndirectNextOutOfItsTable",
     [](GuestRing& d) {
         write_desc(*d.mem, kTable, 0, rx_slot(0), 64, kWrite | kNext, 2);  // a two-entry table
         d.desc(0, kTable, 32, kIndirect);
         d.offer(0);
     }},
};
void PrintTo(const BadRx& b, std::ostream* os) { *os << b.name; }
struct VhostWorkerHostileRx : ::testing::TestWithParam<BadRx> {};
}  // namespace

TEST_P(VhostWorkerHostileRx, ReportsStopsAndWritesNothing) {
    in_netns([this] {
        Rig r(Options{.features = virtio::kFVersion1 | virtio::kFIndirectDesc | net::kMrgRxbuf});
        r.start(kTx);
        GetParam().make(r.ring[kRx]);
        r.start(kRx);
        r.send_frame(make_frame(100, 50));
        ASSERT_TRUE(wait_event(r.err[kRx].get(), kTimeoutMs)) << "the broken ring was not reported";
        EXPECT_GE(r.stats(kRx).errors.load(), 1u);
        EXPECT_EQ(r.stats(kRx).packets.load(), 0u);
        EXPECT_EQ(r.ring[kRx].used_idx(), 0);

        // The driver repairs the ring and kicks: a worker still serving it
        // would receive the frames now waiting in the tap.
        r.ring[kRx].avail_idx = 0;
        r.rx_buffers(0, 2, 2048);
        r.publish(kRx, {0, 1});
        r.kick_now(kRx);
        r.send_frame(make_frame(100, 51));
        std::this_thread::sleep_for(std::chrono::milliseconds(kQuietMs));
        EXPECT_EQ(r.ring[kRx].used_idx(), 0) << "the worker went on with a ring it found broken";
        EXPECT_FALSE(wait_event(r.call[kRx].get(), 0));

        // The transmit ring is not affected.
        ASSERT_NO_FATAL_FAILURE(r.expect_tx(0, make_frame(80, 52)));

        // A reset: the ring restarts from its start and receives the two
        // frames waiting in the tap into the two buffers.
        r.vh->set_backend(kRx, -1);
        EXPECT_EQ(r.vh->get_vring_base(kRx), 0u);
        r.vh->set_vring_base(kRx, 0);
        r.start(kRx);
        ASSERT_TRUE(r.ring[kRx].wait_used(2));
        EXPECT_EQ(payload(r.rx_used_bytes(1)), make_frame(100, 51));
        EXPECT_FALSE(wait_event(r.err[kRx].get(), 0));
    });
}

INSTANTIATE_TEST_SUITE_P(VhostWorker, VhostWorkerHostileRx, ::testing::ValuesIn(kBadRx),
                         [](const ::testing::TestParamInfo<BadRx>& i) { return std::string(i.param.name); });
