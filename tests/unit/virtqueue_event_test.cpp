// Notification suppression on the split virtqueue: the NO_NOTIFY and
// NO_INTERRUPT flags, and VIRTIO_F_EVENT_IDX's used_event/avail_event words,
// against a simulated driver.
#include <gtest/gtest.h>

#include <cstring>

#include "tests/unit/notify_rig.hpp"
#include "virtio/virtqueue.hpp"
#include "vmm/guest_memory.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
using Driver = NotifyRig;
constexpr uint16_t kSize = NotifyRig::kSize;
}  // namespace

TEST(VirtqueueNotify, FlagsWithoutEventIdx) {
    Driver d(false);
    d.q.disable_notify();
    EXPECT_EQ(d.driver.used_flags(), 1);  // VRING_USED_F_NO_NOTIFY
    EXPECT_FALSE(d.q.enable_notify());
    EXPECT_EQ(d.driver.used_flags(), 0);
    EXPECT_EQ(d.driver.avail_event(), 0);  // not ours to write without EVENT_IDX

    EXPECT_FALSE(d.q.need_interrupt());  // nothing used yet
    d.driver.offer(0);
    d.pop_head();
    d.q.push_used(0, 10);
    EXPECT_TRUE(d.q.need_interrupt());
    EXPECT_FALSE(d.q.need_interrupt());  // nothing new since
    d.driver.set_avail_flags(1);                // VRING_AVAIL_F_NO_INTERRUPT
    d.driver.offer(1);
    d.pop_head();
    d.q.push_used(1, 10);
    EXPECT_FALSE(d.q.need_interrupt());
    d.driver.set_avail_flags(0);
    EXPECT_FALSE(d.q.need_interrupt());  // that entry was already judged
}

TEST(VirtqueueNotify, EventIdxLeavesTheFlagsAlone) {
    Driver d(true);
    d.q.disable_notify();
    EXPECT_EQ(d.driver.used_flags(), 0);
    d.driver.set_avail_flags(1);  // ignored with EVENT_IDX: used_event rules
    d.driver.set_used_event(0);
    d.driver.offer(0);
    d.pop_head();
    d.q.push_used(0, 1);
    EXPECT_TRUE(d.q.need_interrupt());
}

TEST(VirtqueueNotify, EnableNotifyWritesAvailEventAndReportsARace) {
    Driver d(true);
    d.driver.offer(0);
    d.driver.offer(1);
    EXPECT_EQ(d.pop_head(), 0);
    EXPECT_EQ(d.pop_head(), 1);
    EXPECT_TRUE(d.empty());
    EXPECT_FALSE(d.q.enable_notify());
    EXPECT_EQ(d.driver.avail_event(), 2);  // kick me when you add entry 2
    EXPECT_EQ(d.driver.used_flags(), 0);
    // The driver adds a buffer after pop() looked but before the device
    // asked for kicks: enable_notify must say so, or the buffer sits there.
    d.driver.offer(2);
    EXPECT_TRUE(d.q.enable_notify());
    EXPECT_EQ(d.pop_head(), 2);
    EXPECT_TRUE(d.empty());
    EXPECT_FALSE(d.q.enable_notify());
    EXPECT_EQ(d.driver.avail_event(), 3);
}

TEST(VirtqueueNotify, EnableNotifyWithoutEventIdxAlsoReportsARace) {
    Driver d(false);
    EXPECT_TRUE(d.empty());
    d.q.disable_notify();
    d.driver.offer(0);
    EXPECT_TRUE(d.q.enable_notify());
    EXPECT_EQ(d.driver.used_flags(), 0);
    EXPECT_EQ(d.pop_head(), 0);
    EXPECT_TRUE(d.empty());
    EXPECT_FALSE(d.q.enable_notify());
}

TEST(VirtqueueNotify, NeedInterruptFollowsUsedEvent) {
    Driver d(true);
    auto use = [&](uint16_t head) {
        d.driver.offer(head);
        d.pop_head();
        d.q.push_used(head, 1);
    };
    d.driver.set_used_event(0);
    use(0);  // used idx 0 -> 1 passes used_event 0
    EXPECT_TRUE(d.q.need_interrupt());
    use(1);  // 1 -> 2: used_event 0 is behind
    EXPECT_FALSE(d.q.need_interrupt());
    d.driver.set_used_event(3);
    use(2);  // 2 -> 3: not yet past entry 3
    EXPECT_FALSE(d.q.need_interrupt());
    use(3);  // 3 -> 4
    EXPECT_TRUE(d.q.need_interrupt());
    // A batch: one interrupt if used_event lies anywhere inside it.
    d.driver.set_used_event(5);
    use(4);
    use(5);
    use(6);
    EXPECT_TRUE(d.q.need_interrupt());
    EXPECT_FALSE(d.q.need_interrupt());
}

// Checks need_interrupt against the definition, across the 16-bit wrap: an
// interrupt is due iff one of the entries used since the last check sits at
// ring position used_event.
TEST(VirtqueueNotify, NeedInterruptAcrossTheIndexWrap) {
    Driver d(true);
    uint16_t used = 0;
    unsigned total = 0, checks = 0, interrupts = 0;
    for (unsigned round = 0; total < 0x10000 + 100; round++) {
        uint16_t batch = 1 + round % 5;
        uint16_t event = static_cast<uint16_t>(used + round % 9 - 2);
        d.driver.set_used_event(event);
        bool want = false;
        for (uint16_t k = 0; k < batch; k++) {
            want |= static_cast<uint16_t>(used + k) == event;
            // Recycle heads without going through the avail ring: only the
            // used side matters here.
            ASSERT_TRUE(d.q.push_used(k % kSize, 0));
        }
        used = static_cast<uint16_t>(used + batch);
        total += batch;
        ASSERT_EQ(d.q.need_interrupt(), want) << "used " << used << " batch " << batch << " event " << event;
        checks++;
        interrupts += want;
    }
    EXPECT_EQ(d.driver.used_idx(), used);
    EXPECT_GT(interrupts, 0);
    EXPECT_LT(interrupts, checks);
}

TEST(VirtqueueNotify, InvalidRingsNeverTouchMemory) {
    GuestMemory mem(1ull << 20);
    SplitQueue q(mem, kSize, (1ull << 20) - 16, QueueRig::kRing.avail, QueueRig::kRing.used);  // desc past RAM
    ASSERT_FALSE(q.valid());
    q.set_event_idx(true);
    EXPECT_FALSE(q.enable_notify());
    q.disable_notify();
    EXPECT_FALSE(q.push_used(0, 1));
    EXPECT_FALSE(q.need_interrupt());
    uint16_t flags;
    std::memcpy(&flags, mem.ptr(QueueRig::kRing.used, 2), 2);
    EXPECT_EQ(flags, 0);
}
