// A queue's notification coalescing parameters (virtio 1.3, 5.1.6.5.7): the
// device holds a used buffer notification back until max_packets used
// buffers wait for it or max_usecs passed since the first of them. Either
// at 0 means no holding back: every notification goes out as before.
#pragma once
#include <cstdint>

namespace minivmm {

struct Coalesce {
    uint32_t max_packets = 0, max_usecs = 0;
    bool active() const { return max_packets > 0 && max_usecs > 0; }
    bool operator==(const Coalesce&) const = default;
};

// What a driver may ask for. A notification held a second is already far
// past any use (NICs cap theirs at milliseconds), and more used buffers
// than the largest ring can never be waiting together.
constexpr uint32_t kMaxCoalesceUsecs = 1'000'000, kMaxCoalescePackets = 32768;

}  // namespace minivmm
