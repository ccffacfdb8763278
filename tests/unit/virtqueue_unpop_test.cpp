// SplitQueue::unpop(): chains given back to the ring (a frame that did not
// fit waits for more buffers) are taken again, in order, and the device
// still asks for the kick of the next new entry.
#include <gtest/gtest.h>

#include "tests/unit/notify_rig.hpp"
#include "virtio/virtqueue.hpp"

using namespace minivmm;
using namespace minivmm::testing;

TEST(VirtqueueUnpop, GivesChainsBackInOrder) {
    NotifyRig d(true);
    for (uint16_t h : {5, 3, 7}) d.driver.offer(h);
    EXPECT_EQ(d.pop_head(), 5);
    EXPECT_EQ(d.pop_head(), 3);
    EXPECT_EQ(d.pop_head(), 7);
    d.q.unpop(2);
    EXPECT_EQ(d.pop_head(), 3);
    EXPECT_EQ(d.pop_head(), 7);
    EXPECT_TRUE(d.empty());
    d.q.unpop(1);
    // A frame that did not fit waits for more buffers: the kick must come
    // for the next new entry, not the given-back one.
    EXPECT_FALSE(d.q.enable_notify());
    EXPECT_EQ(d.driver.avail_event(), 3);
    d.driver.offer(1);
    EXPECT_TRUE(d.q.enable_notify());
    EXPECT_EQ(d.pop_head(), 7);
    EXPECT_EQ(d.pop_head(), 1);
}

TEST(VirtqueueUnpop, TooFarIsCaughtAsBroken) {
    NotifyRig d(false);
    d.driver.offer(0);
    d.pop_head();
    d.q.unpop(NotifyRig::kSize + 1);  // a device bug, but the ring checks still hold
    Chain c;
    std::string why;
    EXPECT_EQ(d.q.pop(c, why), SplitQueue::Pop::Broken);
}
