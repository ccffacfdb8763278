// The guest's side of a split virtqueue (virtio 1.x, 2.7), for the unit
// tests, the fuzzers and the datapath benchmark alike: where a ring's parts
// lie, and a driver that writes descriptors, posts chains to the avail ring,
// reaps the used ring and keeps the EVENT_IDX words.
//
// Every access goes through a MemView and is dropped (or reads zero) where
// there is no RAM: a fuzzer's driver places rings and buffers anywhere. The
// ring's 16-bit words are shared with the device's threads, so they are
// atomic where aligned (a wild driver's may not be).
#pragma once
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <thread>
#include <utility>

#include "vmm/guest_memory.hpp"

namespace minivmm::testing {

// Descriptor flags (2.7.5) and the ring flags (2.7.6, 2.7.8): linux's
// virtio_ring.h spells them, but as C macros.
constexpr uint16_t kNext = 1, kWrite = 2, kIndirect = 4;
constexpr uint16_t kAvailNoInterrupt = 1, kUsedNoNotify = 1;

struct Desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};
static_assert(sizeof(Desc) == 16);
using UsedElem = std::pair<uint32_t, uint32_t>;  // id, len

inline void store(const MemView& mem, uint64_t gpa, const void* src, size_t n) {
    if (uint8_t* p = mem.ptr(gpa, n); p && n) std::memcpy(p, src, n);
}
template <typename T>
void put(const MemView& mem, uint64_t gpa, T v) {
    store(mem, gpa, &v, sizeof v);
}
template <typename T>
T get(const MemView& mem, uint64_t gpa) {
    T v{};
    if (const uint8_t* p = mem.ptr(gpa, sizeof v)) std::memcpy(&v, p, sizeof v);
    return v;
}
inline uint16_t load16(const MemView& mem, uint64_t gpa) {
    uint8_t* p = mem.ptr(gpa, 2);
    if (!p || gpa % 2) return get<uint16_t>(mem, gpa);
    return std::atomic_ref(*reinterpret_cast<uint16_t*>(p)).load(std::memory_order_acquire);
}
inline void store16(const MemView& mem, uint64_t gpa, uint16_t v) {
    uint8_t* p = mem.ptr(gpa, 2);
    if (!p || gpa % 2) return put<uint16_t>(mem, gpa, v);
    std::atomic_ref(*reinterpret_cast<uint16_t*>(p)).store(v, std::memory_order_release);
}

// Entry i of the descriptor table (or indirect table) at `table`.
inline void write_desc(const MemView& mem, uint64_t table, uint32_t i, uint64_t addr, uint32_t len, uint16_t flags,
                       uint16_t next = 0) {
    const Desc d{addr, len, flags, next};
    store(mem, table + sizeof(Desc) * i, &d, sizeof d);
}

// Where a ring's three parts lie, guest-physical.
struct RingLayout {
    uint64_t desc, avail, used;

    // Their sizes, the event words after the rings included.
    static constexpr uint64_t desc_bytes(uint16_t size) { return sizeof(Desc) * size; }
    static constexpr uint64_t avail_bytes(uint16_t size) { return 6 + 2ull * size; }
    static constexpr uint64_t used_bytes(uint16_t size) { return 6 + 8ull * size; }
    // A page each, for rings of up to 256 entries.
    static constexpr RingLayout paged(uint64_t base) { return {base, base + 0x1000, base + 0x2000}; }
    // One after another with the spec's alignment, as Linux's vring_init packs them.
    static constexpr RingLayout packed(uint64_t base, uint16_t size) {
        uint64_t avail = base + desc_bytes(size);
        return {base, avail, (avail + avail_bytes(size) + 3) & ~3ull};
    }
};

// The driver of one split ring. Plain data, so that a fuzzer can lie about
// any of it (avail_idx, the layout) before the next post.
struct GuestRing {
    const MemView* mem = nullptr;
    uint16_t size = 0;
    RingLayout at{};
    bool event_idx = false;  // VIRTIO_F_EVENT_IDX negotiated: kicks and interrupts by the event words
    uint16_t avail_idx = 0;  // the next avail entry, published or not
    uint16_t used_seen = 0;  // used entries reaped

    GuestRing() = default;
    GuestRing(const MemView& m, uint16_t n, RingLayout l, bool with_event_idx = false)
        : mem(&m), size(n), at(l), event_idx(with_event_idx) {}

    void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) const {
        write_desc(*mem, at.desc, i, addr, len, flags, next);
    }

    // The avail ring: add() fills the next entry, publish() shows the device
    // all added so far; offer() is both, for one chain.
    void add(uint16_t head) { put<uint16_t>(*mem, at.avail + 4 + 2ull * slot(avail_idx++), head); }
    void publish() const { store16(*mem, at.avail + 2, avail_idx); }
    void offer(uint16_t head) {
        add(head);
        publish();
    }
    // Publishes what add() queued since index old, if anything; whether the
    // device must be kicked for it.
    bool publish_since(uint16_t old) {
        if (avail_idx == old) return false;
        publish();
        return wants_kick(old);
    }
    // Whether a driver that just published from index old on must kick (2.7.10, 2.7.13.4).
    bool wants_kick(uint16_t old) const {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (event_idx)
            return static_cast<uint16_t>(avail_idx - avail_event() - 1) < static_cast<uint16_t>(avail_idx - old);
        return !(used_flags() & kUsedNoNotify);
    }
    void set_avail_flags(uint16_t f) const { store16(*mem, at.avail, f); }
    void set_used_event(uint16_t e) const { store16(*mem, at.avail + 4 + 2ull * size, e); }

    // The used ring, as the device left it.
    uint16_t used_flags() const { return load16(*mem, at.used); }
    uint16_t used_idx() const { return load16(*mem, at.used + 2); }
    uint16_t avail_event() const { return load16(*mem, at.used + 4 + 8ull * size); }
    // Used entry k, counting from the ring's start and wrapping.
    UsedElem used_elem(uint16_t k) const {
        uint64_t e = at.used + 4 + 8ull * slot(k);
        return {get<uint32_t>(*mem, e), get<uint32_t>(*mem, e + 4)};
    }
    // The next used entry not reaped yet, if the device has added one.
    bool next_used(UsedElem& e) {
        if (used_idx() == used_seen) return false;
        e = used_elem(used_seen++);
        return true;
    }
    // Asks for an interrupt at the next used entry (used_event); false if
    // one came meanwhile, so the caller must not sleep.
    bool arm() const {
        set_used_event(used_seen);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        return used_idx() == used_seen;
    }

    // For a device on threads of its own: the used index reaching n, or the
    // device asking for the kick after avail entry n; false after ms.
    bool wait_used(uint16_t n, int ms = kWaitMs) const { return wait_for([&] { return used_idx() == n; }, ms); }
    bool wait_avail_event(uint16_t n, int ms = kWaitMs) const {
        return wait_for([&] { return avail_event() == n; }, ms);
    }
    template <class Done>
    static bool wait_for(Done done, int ms) {
        auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
        while (!done()) {
            if (std::chrono::steady_clock::now() > end) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return true;
    }
    static constexpr int kWaitMs = 2000;  // a device that never answers fails a test instead of hanging it

private:
    // A fuzzer's ring may have no entries at all.
    uint16_t slot(uint16_t i) const { return size ? static_cast<uint16_t>(i % size) : 0; }
};

}  // namespace minivmm::testing
