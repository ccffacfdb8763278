// Notification suppression on the split virtqueue: the NO_NOTIFY and
// NO_INTERRUPT flags, and VIRTIO_F_EVENT_IDX's used_event/avail_event words,
// against a simulated driver; and giving chains back with unpop().
#include <gtest/gtest.h>

#include <cstring>

#include "virtio/virtqueue.hpp"
#include "vmm/guest_memory.hpp"

using namespace minivmm;

namespace {
constexpr uint16_t kSize = 8;
constexpr uint64_t kDesc = 0x10000, kAvail = 0x11000, kUsed = 0x12000, kBuf = 0x20000;

struct Driver {
    GuestMemory mem{4ull << 20};
    SplitQueue q{mem, kSize, kDesc, kAvail, kUsed};
    uint16_t avail_idx = 0;

    explicit Driver(bool event_idx) {
        q.set_event_idx(event_idx);
        // One single-buffer chain per descriptor: any head is poppable.
        for (uint16_t i = 0; i < kSize; i++) {
            uint64_t addr = kBuf + 0x100ull * i;
            uint32_t len = 64;
            uint16_t flags = 2, next = 0;
            uint8_t* d = mem.ptr(kDesc + 16ull * i, 16);
            std::memcpy(d, &addr, 8);
            std::memcpy(d + 8, &len, 4);
            std::memcpy(d + 12, &flags, 2);
            std::memcpy(d + 14, &next, 2);
        }
    }
    void put16(uint64_t gpa, uint16_t v) { std::memcpy(mem.ptr(gpa, 2), &v, 2); }
    uint16_t get16(uint64_t gpa) {
        uint16_t v;
        std::memcpy(&v, mem.ptr(gpa, 2), 2);
        return v;
    }
    void offer(uint16_t head) {
        put16(kAvail + 4 + 2 * (avail_idx % kSize), head);
        put16(kAvail + 2, ++avail_idx);
    }
    uint16_t pop() {
        Chain c;
        std::string why;
        EXPECT_EQ(q.pop(c, why), SplitQueue::Pop::Ok) << why;
        return c.head;
    }
    bool empty() {
        Chain c;
        std::string why;
        return q.pop(c, why) == SplitQueue::Pop::Empty;
    }
    // The driver's words in the rings.
    void set_avail_flags(uint16_t f) { put16(kAvail, f); }
    void set_used_event(uint16_t e) { put16(kAvail + 4 + 2 * kSize, e); }
    uint16_t used_flags() { return get16(kUsed); }
    uint16_t avail_event() { return get16(kUsed + 4 + 8 * kSize); }
};
}  // namespace

TEST(VirtqueueNotify, FlagsWithoutEventIdx) {
    Driver d(false);
    d.q.disable_notify();
    EXPECT_EQ(d.used_flags(), 1);  // VRING_USED_F_NO_NOTIFY
    EXPECT_FALSE(d.q.enable_notify());
    EXPECT_EQ(d.used_flags(), 0);
    EXPECT_EQ(d.avail_event(), 0);  // not ours to write without EVENT_IDX

    EXPECT_FALSE(d.q.need_interrupt());  // nothing used yet
    d.offer(0);
    d.pop();
    d.q.push_used(0, 10);
    EXPECT_TRUE(d.q.need_interrupt());
    EXPECT_FALSE(d.q.need_interrupt());  // nothing new since
    d.set_avail_flags(1);                // VRING_AVAIL_F_NO_INTERRUPT
    d.offer(1);
    d.pop();
    d.q.push_used(1, 10);
    EXPECT_FALSE(d.q.need_interrupt());
    d.set_avail_flags(0);
    EXPECT_FALSE(d.q.need_interrupt());  // that entry was already judged
}

TEST(VirtqueueNotify, EventIdxLeavesTheFlagsAlone) {
    Driver d(true);
    d.q.disable_notify();
    EXPECT_EQ(d.used_flags(), 0);
    d.set_avail_flags(1);  // ignored with EVENT_IDX: used_event rules
    d.set_used_event(0);
    d.offer(0);
    d.pop();
    d.q.push_used(0, 1);
    EXPECT_TRUE(d.q.need_interrupt());
}

TEST(VirtqueueNotify, EnableNotifyWritesAvailEventAndReportsARace) {
    Driver d(true);
    d.offer(0);
    d.offer(1);
    EXPECT_EQ(d.pop(), 0);
    EXPECT_EQ(d.pop(), 1);
    EXPECT_TRUE(d.empty());
    EXPECT_FALSE(d.q.enable_notify());
    EXPECT_EQ(d.avail_event(), 2);  // kick me when you add entry 2
    EXPECT_EQ(d.used_flags(), 0);
    // The driver adds a buffer after pop() looked but before the device
    // asked for kicks: enable_notify must say so, or the buffer sits there.
    d.offer(2);
    EXPECT_TRUE(d.q.enable_notify());
    EXPECT_EQ(d.pop(), 2);
    EXPECT_TRUE(d.empty());
    EXPECT_FALSE(d.q.enable_notify());
    EXPECT_EQ(d.avail_event(), 3);
}

TEST(VirtqueueNotify, EnableNotifyWithoutEventIdxAlsoReportsARace) {
    Driver d(false);
    EXPECT_TRUE(d.empty());
    d.q.disable_notify();
    d.offer(0);
    EXPECT_TRUE(d.q.enable_notify());
    EXPECT_EQ(d.used_flags(), 0);
    EXPECT_EQ(d.pop(), 0);
    EXPECT_TRUE(d.empty());
    EXPECT_FALSE(d.q.enable_notify());
}

TEST(VirtqueueNotify, NeedInterruptFollowsUsedEvent) {
    Driver d(true);
    auto use = [&](uint16_t head) {
        d.offer(head);
        d.pop();
        d.q.push_used(head, 1);
    };
    d.set_used_event(0);
    use(0);  // used idx 0 -> 1 passes used_event 0
    EXPECT_TRUE(d.q.need_interrupt());
    use(1);  // 1 -> 2: used_event 0 is behind
    EXPECT_FALSE(d.q.need_interrupt());
    d.set_used_event(3);
    use(2);  // 2 -> 3: not yet past entry 3
    EXPECT_FALSE(d.q.need_interrupt());
    use(3);  // 3 -> 4
    EXPECT_TRUE(d.q.need_interrupt());
    // A batch: one interrupt if used_event lies anywhere inside it.
    d.set_used_event(5);
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
        d.set_used_event(event);
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
    EXPECT_EQ(d.get16(kUsed + 2), used);
    EXPECT_GT(interrupts, 0);
    EXPECT_LT(interrupts, checks);
}

TEST(VirtqueueNotify, UnpopGivesChainsBackInOrder) {
    Driver d(true);
    for (uint16_t h : {5, 3, 7}) d.offer(h);
    EXPECT_EQ(d.pop(), 5);
    EXPECT_EQ(d.pop(), 3);
    EXPECT_EQ(d.pop(), 7);
    d.q.unpop(2);
    EXPECT_EQ(d.pop(), 3);
    EXPECT_EQ(d.pop(), 7);
    EXPECT_TRUE(d.empty());
    d.q.unpop(1);
    // A frame that did not fit waits for more buffers: the kick must come
    // for the next new entry, not the given-back one.
    EXPECT_FALSE(d.q.enable_notify());
    EXPECT_EQ(d.avail_event(), 3);
    d.offer(1);
    EXPECT_TRUE(d.q.enable_notify());
    EXPECT_EQ(d.pop(), 7);
    EXPECT_EQ(d.pop(), 1);
}

TEST(VirtqueueNotify, UnpopTooFarIsCaughtAsBroken) {
    Driver d(false);
    d.offer(0);
    d.pop();
    d.q.unpop(kSize + 1);  // a device bug, but the ring checks still hold
    Chain c;
    std::string why;
    EXPECT_EQ(d.q.pop(c, why), SplitQueue::Pop::Broken);
}

TEST(VirtqueueNotify, InvalidRingsNeverTouchMemory) {
    GuestMemory mem(1ull << 20);
    SplitQueue q(mem, kSize, (1ull << 20) - 16, kAvail, kUsed);  // desc past RAM
    ASSERT_FALSE(q.valid());
    q.set_event_idx(true);
    EXPECT_FALSE(q.enable_notify());
    q.disable_notify();
    EXPECT_FALSE(q.push_used(0, 1));
    EXPECT_FALSE(q.need_interrupt());
    uint16_t flags;
    std::memcpy(&flags, mem.ptr(kUsed, 2), 2);
    EXPECT_EQ(flags, 0);
}
