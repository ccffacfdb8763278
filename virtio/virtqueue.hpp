// The split virtqueue (virtio 1.x, 2.7), seen from the device side, with every
// guest-supplied index, address and length checked before use.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace minivmm {

class MemView;

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
    // Buffers in one chain, direct and indirect together: Linux's vhost
    // (UIO_MAXIOV) and QEMU (VIRTQUEUE_MAX_SIZE) take no more either, and a
    // chain is re-walked each time it is taken again (unpop), so its
    // length bounds the work one avail entry can make.
    static constexpr uint32_t kMaxChainSegments = 1024;
    // Ring addresses are guest-physical; size must be a power of two.
    SplitQueue(const MemView& mem, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used);

    enum class Pop { Empty, Ok, Broken };
    // Takes the next available chain. Broken means the driver violated the
    // spec; `why` says how, and the caller marks the device DEVICE_NEEDS_RESET.
    Pop pop(Chain& out, std::string& why);
    // Returns a chain to the driver with the bytes the device wrote.
    bool push_used(uint16_t head, uint32_t written) { return add_used(head, written) && (publish_used(), true); }
    // The same for a frame spread over several chains: each is added, then
    // all are published by one index update. The driver reads num_buffers
    // and takes that many at once; published one by one, it can find the
    // first without the rest and drop the frame.
    bool add_used(uint16_t head, uint32_t written);
    void publish_used();
    // Ring placement itself is checked here: rings outside RAM are broken.
    bool valid() const { return valid_; }
    // Gives back the last n chains taken (a packet that did not fit waits for
    // more buffers); they are taken again, re-read from the ring, later.
    void unpop(uint16_t n) { last_avail_ = static_cast<uint16_t>(last_avail_ - n); }

    // Notification suppression (2.7.7, 2.7.10): with VIRTIO_F_EVENT_IDX the
    // used_event/avail_event words, otherwise the NO_INTERRUPT/NO_NOTIFY flags.
    void set_event_idx(bool on) { event_idx_ = on; }
    // Ask the driver to kick (or not) when it adds buffers. Enabling returns
    // whether buffers arrived since pop() last looked, closing the race with
    // the driver.
    bool enable_notify();
    void disable_notify();
    // Whether the driver wants an interrupt for the used entries added since
    // the last time this returned true.
    bool need_interrupt();
    // Used entries published since need_interrupt() last looked: what an
    // interrupt held back for coalescing would cover.
    uint16_t unsignalled() const { return static_cast<uint16_t>(published_used_ - signalled_used_); }
    uint16_t size() const { return size_; }
    // Where the device is in the avail ring: vhost's vring base, saved when
    // a backend stops and given to the next one.
    uint16_t last_avail() const { return last_avail_; }
    // Continue a ring a previous backend served: next avail entry to take is
    // base, and the used index is whatever the ring says now.
    void resume(uint16_t base);
    // Dirty logging for migration: called for every range of guest memory
    // the device writes through this queue (used ring entries and index, and
    // the notification word: used->flags, or avail_event with EVENT_IDX).
    void set_write_log(std::function<void(uint64_t gpa, uint64_t len)> log) { log_ = std::move(log); }

private:
    bool walk(uint64_t table, uint32_t count, uint16_t first, bool indirect, Chain& out, std::string& why);

    const MemView& mem_;
    uint16_t size_;
    uint64_t desc_, avail_, used_;
    uint16_t last_avail_ = 0, avail_seen_ = 0, used_idx_ = 0, published_used_ = 0, signalled_used_ = 0;
    bool valid_ = false, event_idx_ = false;
    std::function<void(uint64_t, uint64_t)> log_;
};

}  // namespace minivmm
