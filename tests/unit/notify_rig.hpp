// Shared by the notification and unpop tests of SplitQueue: a small queue
// whose every descriptor is a one-buffer chain, so any head can be offered.
#pragma once
#include "tests/unit/queue_rig.hpp"

namespace minivmm::testing {

struct NotifyRig : QueueRig {
    static constexpr uint16_t kSize = 8;

    explicit NotifyRig(bool event_idx) : QueueRig(kSize, 4ull << 20) {
        q.set_event_idx(event_idx);
        for (uint16_t i = 0; i < kSize; i++) driver.desc(i, kBuf + 0x100ull * i, 64, kWrite);
    }
};

}  // namespace minivmm::testing
