// Shared by the tests of SplitQueue itself: the device's side of one ring
// in fake guest memory, called by the test, with the guest's driver beside it.
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "tests/support/guest_ring.hpp"
#include "virtio/virtqueue.hpp"
#include "vmm/guest_memory.hpp"

namespace minivmm::testing {

struct QueueRig {
    static constexpr RingLayout kRing = RingLayout::paged(0x10000);
    static constexpr uint64_t kBuf = 0x20000;  // above the rings

    GuestMemory mem;
    GuestRing driver;
    SplitQueue q;
    std::string why;  // what the last pop() found broken

    explicit QueueRig(uint16_t size = 8, uint64_t ram = 16ull << 20, RingLayout at = kRing)
        : mem(ram), driver(mem, size, at), q(mem, size, at.desc, at.avail, at.used) {}

    SplitQueue::Pop pop(Chain& c) {
        why.clear();
        return q.pop(c, why);
    }
    // The head of the next chain, which must be there.
    uint16_t pop_head() {
        Chain c;
        EXPECT_EQ(pop(c), SplitQueue::Pop::Ok) << why;
        return c.head;
    }
    bool empty() {
        Chain c;
        return pop(c) == SplitQueue::Pop::Empty;
    }
};

}  // namespace minivmm::testing
