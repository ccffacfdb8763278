// The split virtqueue (virtio 1.x, 2.7), seen from the device side, with every
// guest-supplied index, address and length checked before use.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace minivmm {

class GuestMemory;

struct Segment {
    uint64_t gpa;
    uint32_t len;
    bool device_writable;
};

struct Chain {
    uint16_t head = 0;
    std::vector<Segment> segs;
    uint64_t readable_bytes = 0, writable_bytes = 0;
};

class SplitQueue {
public:
    static constexpr uint16_t kMaxSize = 32768;  // spec maximum queue size
    // Ring addresses are guest-physical; size must be a power of two.
    SplitQueue(const GuestMemory& mem, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used);

    enum class Pop { Empty, Ok, Broken };
    // Takes the next available chain. Broken means the driver violated the
    // spec; `why` says how, and the caller marks the device DEVICE_NEEDS_RESET.
    Pop pop(Chain& out, std::string& why);
    // Returns a chain to the driver with the bytes the device wrote.
    bool push_used(uint16_t head, uint32_t written);
    // Ring placement itself is checked here: rings outside RAM are broken.
    bool valid() const { return valid_; }

private:
    bool walk(uint64_t table, uint32_t count, uint16_t first, bool indirect, Chain& out, std::string& why);

    const GuestMemory& mem_;
    uint16_t size_;
    uint64_t desc_, avail_, used_;
    uint16_t last_avail_ = 0, used_idx_ = 0;
    bool valid_ = false;
};

}  // namespace minivmm
