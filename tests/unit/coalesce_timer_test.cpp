// A ring's interrupt coalescing (vhost/coalesce_timer.hpp) on a real
// SplitQueue: an interrupt is held until max_packets used buffers wait or
// the timer expires, and holding back only merges what need_interrupt()
// looks at, so the driver's EVENT_IDX and NO_INTERRUPT still decide.
// Timer tests wait for the timerfd with a generous bound; none measures
// how long it took.
#include <gtest/gtest.h>
#include <poll.h>

#include "tests/unit/queue_rig.hpp"
#include "vhost/coalesce_timer.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
// The device's side: takes and uses n buffers, then asks as the ring's
// thread does whether an interrupt goes out now.
struct Ring {
    QueueRig r{16};
    CoalesceTimer t;
    explicit Ring(bool event_idx) { r.q.set_event_idx(event_idx); }
    void use(unsigned n) {
        for (unsigned i = 0; i < n; i++) {
            r.driver.desc(uint16_t(i % 16), QueueRig::kBuf + 64 * i, 64, kWrite);
            r.driver.offer(uint16_t(i % 16));
            ASSERT_TRUE(r.q.push_used(r.pop_head(), 64));
        }
    }
    bool decide() { return t.due(r.q.unsignalled()) && r.q.need_interrupt(); }
    // Waits (at most 5 s, far past any timer here) for the timer's expiry.
    bool expires() {
        pollfd p{t.fd(), POLLIN, 0};
        return poll(&p, 1, 5000) == 1 && t.expired();
    }
};

TEST(CoalesceTimer, OffMeansEveryDecisionNow) {
    Ring g(false);
    g.use(1);
    EXPECT_TRUE(g.decide());
    g.t.set({16, 0});  // a zero either way: off
    g.use(1);
    EXPECT_TRUE(g.decide());
    g.t.set({0, 100});
    g.use(1);
    EXPECT_TRUE(g.decide());
    EXPECT_FALSE(g.t.holding());
}

TEST(CoalesceTimer, FramesThresholdReleasesAtOnce) {
    Ring g(false);
    g.t.set({4, 1'000'000});  // a second: only the count can end these
    for (int i = 0; i < 3; i++) {
        g.use(1);
        EXPECT_FALSE(g.decide()) << i;
        EXPECT_TRUE(g.t.holding());
    }
    g.use(1);
    EXPECT_TRUE(g.decide());  // the fourth: one interrupt for all four
    EXPECT_FALSE(g.t.holding());
    EXPECT_EQ(g.r.q.unsignalled(), 0);
    g.use(5);  // more than the threshold in one batch
    EXPECT_TRUE(g.decide());
}

TEST(CoalesceTimer, TimerEndsAHeldInterrupt) {
    Ring g(false);
    g.t.set({64, 2000});
    g.use(2);
    EXPECT_FALSE(g.decide());
    g.use(1);
    EXPECT_FALSE(g.decide());  // the timer runs from the first, not re-armed
    ASSERT_TRUE(g.expires());
    EXPECT_FALSE(g.t.holding());
    EXPECT_EQ(g.r.q.unsignalled(), 3);
    EXPECT_TRUE(g.r.q.need_interrupt());  // what the ring's thread does on expiry
    // Nothing pending: no timer is armed, no interrupt.
    EXPECT_TRUE(g.t.due(g.r.q.unsignalled()));
    EXPECT_FALSE(g.r.q.need_interrupt());
}

// A ring that stays busy asks due() again and again and never reads the
// timerfd: once the time is up, due() ends the wait itself, and leaves the
// timer disarmed (no stale expiry to flush later).
TEST(CoalesceTimer, TheDeadlineEndsTheWaitWithoutTheTimerfd) {
    Ring g(false);
    g.t.set({64, 1000});
    g.use(1);
    EXPECT_FALSE(g.decide());
    pollfd p{g.t.fd(), POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 5000), 1);  // the time is up (not read: as a busy ring never does)
    g.use(1);
    EXPECT_TRUE(g.decide());
    EXPECT_FALSE(g.t.holding());
    EXPECT_EQ(poll(&p, 1, 0), 0);
    EXPECT_FALSE(g.t.expired());
}

TEST(CoalesceTimer, ASignalDisarmsTheTimer) {
    Ring g(false);
    g.t.set({2, 2000});
    g.use(1);
    EXPECT_FALSE(g.decide());
    g.use(1);
    EXPECT_TRUE(g.decide());
    pollfd p{g.t.fd(), POLLIN, 0};
    EXPECT_EQ(poll(&p, 1, 50), 0);  // disarmed: never readable (50 ms is 25 timer lengths)
    EXPECT_FALSE(g.t.expired());
}

TEST(CoalesceTimer, TurnedOffWhileHoldingDecidesAtTheNextLook) {
    Ring g(false);
    g.t.set({8, 1'000'000});
    g.use(1);
    EXPECT_FALSE(g.decide());
    g.t.set({});
    g.use(1);
    EXPECT_TRUE(g.decide());
    EXPECT_FALSE(g.t.holding());
}

TEST(CoalesceTimer, EventIdxStillDecides) {
    Ring g(true);
    g.t.set({3, 1'000'000});
    // The driver wants an interrupt once entry 1 is used (used_event 1):
    // held through entries 0 and 1, sent with the third.
    g.r.driver.set_used_event(1);
    g.use(2);
    EXPECT_FALSE(g.decide());
    g.use(1);
    EXPECT_TRUE(g.decide());
    // Now it wants one only after entry 10: three more make a decision,
    // and the window [3, 6) does not reach it: no interrupt the ring
    // would not have sent.
    g.r.driver.set_used_event(10);
    g.use(3);
    EXPECT_FALSE(g.decide());
    EXPECT_FALSE(g.t.holding());
    // Held windows merge: entries 6..8 held, used_event 7 inside them.
    g.r.driver.set_used_event(7);
    g.use(2);
    EXPECT_FALSE(g.decide());
    g.use(1);
    EXPECT_TRUE(g.decide());
}

TEST(CoalesceTimer, NoInterruptFlagStillDecides) {
    Ring g(false);
    g.t.set({2, 1'000'000});
    g.r.driver.set_avail_flags(kAvailNoInterrupt);  // the driver polls
    g.use(2);
    EXPECT_FALSE(g.decide());
    g.r.driver.set_avail_flags(0);
    g.t.set({2, 1000});
    g.use(1);
    EXPECT_FALSE(g.decide());
    ASSERT_TRUE(g.expires());
    EXPECT_TRUE(g.r.q.need_interrupt());
}
}  // namespace
