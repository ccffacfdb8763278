// One split virtqueue (virtio 1.x, 2.7) as a guest's driver keeps it, in
// memory the benchmark owns, with event-index notification suppression as
// Linux negotiates it. Written out here because linux/virtio_ring.h is C.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstring>

#include "vhost/vhost.hpp"

namespace bench {

constexpr uint16_t kQSize = 256;  // a Linux guest's virtio-net ring size

class DriverRing {
public:
    struct Desc {
        uint64_t addr;
        uint32_t len;
        uint16_t flags, next;
    };
    struct UsedElem {
        uint32_t id, len;
    };
    static constexpr uint16_t kWrite = 2;  // VRING_DESC_F_WRITE
    // Desc table, avail and used rings a page apart from gpa.
    static constexpr uint64_t kAvail = 0x1000, kUsed = 0x2000;

    DriverRing(uint8_t* mem, uint64_t gpa)
        : mem_(mem),
          gpa_(gpa),
          desc_(reinterpret_cast<Desc*>(mem + gpa)),
          avail_(reinterpret_cast<uint16_t*>(mem + gpa + kAvail)),
          used_(reinterpret_cast<uint16_t*>(mem + gpa + kUsed)) {}
    minivmm::VringAddr addr() const {
        auto hva = [this](uint64_t off) { return reinterpret_cast<uint64_t>(mem_ + gpa_ + off); };
        return {hva(0), hva(kAvail), hva(kUsed), gpa_ + kUsed, false};
    }
    Desc& desc(uint16_t i) { return desc_[i]; }
    uint16_t avail_idx() const { return avail_idx_; }
    // Queues head for the device; publish() makes it visible.
    void add(uint16_t head) { avail_[2 + avail_idx_++ % kQSize] = head; }
    // Publishes what add() queued since index old; true if the device asked
    // for a kick (its avail_event lies among the entries just added).
    bool publish(uint16_t old) {
        u16(avail_[1]).store(avail_idx_, std::memory_order_release);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        uint16_t event = u16(used_[2 + 4 * kQSize]).load(std::memory_order_relaxed);
        return static_cast<uint16_t>(avail_idx_ - event - 1) < static_cast<uint16_t>(avail_idx_ - old);
    }
    bool next_used(UsedElem& e) {
        if (u16(used_[1]).load(std::memory_order_acquire) == last_used_) return false;
        std::memcpy(&e, &used_[2 + 4 * (last_used_++ % kQSize)], sizeof e);
        return true;
    }
    // Asks for an interrupt at the next used entry (used_event); false if
    // one came meanwhile, so the caller must not sleep.
    bool arm() {
        u16(avail_[2 + kQSize]).store(last_used_, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        return u16(used_[1]).load(std::memory_order_acquire) == last_used_;
    }

private:
    static std::atomic_ref<uint16_t> u16(uint16_t& v) { return std::atomic_ref<uint16_t>(v); }
    uint8_t* mem_;
    uint64_t gpa_;
    Desc* desc_;
    uint16_t* avail_;  // flags, idx, ring[kQSize], used_event
    uint16_t* used_;   // flags, idx, {id, len}[kQSize], avail_event
    uint16_t avail_idx_ = 0, last_used_ = 0;
};

}  // namespace bench
