// Queue pairs the driver has not put in use (VQ_PAIRS_SET), and kicks for
// queues that do not exist, with minivmm's own datapath (vhost=off): a
// pair out of use sends and receives nothing, as vhost's backends do once
// their rings have no tap behind them.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tests/unit/net_rig.hpp"
#include "tests/unit/netns_helpers.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
constexpr uint64_t kFrames = 0x400000;

uint16_t used_idx(CtrlRig& r, uint16_t q) { return r.queue(q).used_idx(); }

// Waits up to ms for queue q's used index to reach want.
bool used_reaches(CtrlRig& r, uint16_t q, uint16_t want, int ms) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (used_idx(r, q) != want)
        if (std::chrono::steady_clock::now() > end) return false;
        else std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return true;
}

// The driver queues one frame (virtio-net header, then a broadcast
// Ethernet frame) on transmit queue q, and kicks it.
void send_frame(CtrlRig& r, uint16_t q, GuestRing& tx) {
    uint64_t buf = kFrames + 0x1000ull * q;
    uint8_t* p = r.mem.ptr(buf, 12 + 60);
    std::memset(p, 0, 12 + 60);
    std::memset(p + 12, 0xff, 6);
    p[12 + 6] = 0x02, p[12 + 12] = 0x88, p[12 + 13] = 0xb5;  // local source, experimental EtherType
    tx.desc(0, buf, 12 + 60, 0);
    tx.offer(0);
    r.net->notify(q);
}
}  // namespace

TEST(NetPairs, OffSendsNothingOnAPairNotInUse) {
    in_netns([] {
        CtrlRig r(2, kMqFeatures);
        GuestRing tx0 = r.queue(1), tx1 = r.queue(3);
        send_frame(r, 1, tx0);  // pair 0 is in use from the start
        EXPECT_TRUE(used_reaches(r, 1, 1, 2000));
        send_frame(r, 3, tx1);  // pair 1 is not until VQ_PAIRS_SET
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        EXPECT_EQ(used_idx(r, 3), 0) << "a pair not in use sent a frame";
        // Put in use, it sends what waited: the driver kicked for it.
        ASSERT_EQ(r.pairs_set(2), kOk);
        EXPECT_TRUE(used_reaches(r, 3, 1, 2000));
        // And out of use again, nothing more.
        ASSERT_EQ(r.pairs_set(1), kOk);
        send_frame(r, 3, tx1);
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        EXPECT_EQ(used_idx(r, 3), 1) << "a pair taken out of use sent a frame";
        EXPECT_EQ(r.t.broken_why(), "");
    });
}

// Kicks the transport would never pass on (it checks the index against
// the queue count), made straight to the device anyway, and kicks for
// queues that exist but are not in use: none may send, take buffers, or
// break the device, and the control queue still answers.
TEST(NetPairs, KicksForMissingQueuesOrPairsNotInUseDoNothing) {
    in_netns([] {
        CtrlRig r(2, kMqFeatures);  // rx0 tx0 rx1 tx1 ctrl: five queues
        ASSERT_EQ(r.net->num_queues(), 5);
        GuestRing tx1 = r.queue(3);
        send_frame(r, 3, tx1);  // kicks pair 1's transmit queue, not in use
        GuestRing rx1 = r.queue(2);
        rx1.desc(0, kFrames + 0x8000, 2048, kWrite);
        rx1.offer(0);
        for (uint16_t q : {2, 3, 5, 6, 0x7fff, 0xfffe, 0xffff}) r.net->notify(q);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        for (uint16_t q = 0; q < 4; q++) EXPECT_EQ(used_idx(r, q), 0) << "queue " << q;
        EXPECT_EQ(r.pairs_set(1), kOk);
        EXPECT_EQ(r.t.broken_why(), "");
    });
}

// Without MQ only the first pair exists for the driver and the control
// queue is queue 2: kicks for pair 1's queues, or where the control queue
// would be with MQ, find nothing to serve.
TEST(NetPairs, KicksBeyondTheQueuesOfADeviceWithoutMqDoNothing) {
    in_netns([] {
        CtrlRig r(2, kMqFeatures & ~net::kMq);
        ASSERT_EQ(r.ctrl_index, 2);
        GuestRing tx1 = r.queue(3);
        send_frame(r, 3, tx1);
        r.net->notify(4);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        EXPECT_EQ(used_idx(r, 3), 0);
        EXPECT_EQ(r.command(0, 0, {1}), kOk);  // PROMISC on: the control queue still answers
        EXPECT_EQ(r.t.broken_why(), "");
    });
}
