#include "virtio/virtqueue.hpp"

#include <atomic>
#include <cstring>

#include "vmm/guest_memory.hpp"

namespace minivmm {

namespace {
constexpr uint16_t kNext = 1, kWrite = 2, kIndirect = 4;
struct Desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags, next;
};
static_assert(sizeof(Desc) == 16);

// Ring fields are shared with a running guest: read and write them once,
// atomically, with the ordering the spec's barriers ask for.
uint16_t load16(const uint8_t* p) { return std::atomic_ref<const uint16_t>(*reinterpret_cast<const uint16_t*>(p)).load(std::memory_order_acquire); }
void store16(uint8_t* p, uint16_t v) { std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).store(v, std::memory_order_release); }
}  // namespace

SplitQueue::SplitQueue(const MemView& mem, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used)
    : mem_(mem), size_(size), desc_(desc), avail_(avail), used_(used) {
    bool pow2 = size && size <= kMaxSize && !(size & (size - 1));
    // Alignment from the spec (2.7): descriptors 16, avail 2, used 4.
    // The rings' sizes include the event words after them (used_event, avail_event).
    valid_ = pow2 && !(desc % 16) && !(avail % 2) && !(used % 4) &&
             mem.ptr(desc, 16ull * size) && mem.ptr(avail, 6 + 2ull * size) && mem.ptr(used, 6 + 8ull * size);
}

SplitQueue::Pop SplitQueue::pop(Chain& out, std::string& why) {
    if (!valid_) {
        why = "ring outside guest memory or misaligned";
        return Pop::Broken;
    }
    uint8_t* avail = mem_.ptr(avail_, 6 + 2ull * size_);
    uint16_t idx = load16(avail + 2);
    avail_seen_ = idx;
    uint16_t pending = static_cast<uint16_t>(idx - last_avail_);
    if (pending == 0) return Pop::Empty;
    if (pending > size_) {
        why = "avail index moved by " + std::to_string(pending) + ", more than the queue size";
        return Pop::Broken;
    }
    uint16_t head = load16(avail + 4 + 2 * (last_avail_ % size_));
    out = Chain{};
    out.head = head;
    if (!walk(desc_, size_, head, false, out, why)) return Pop::Broken;
    last_avail_++;
    return Pop::Ok;
}

bool SplitQueue::walk(uint64_t table, uint32_t count, uint16_t first, bool indirect, Chain& out,
                      std::string& why) {
    uint32_t i = first;
    // A chain can visit each descriptor at most once; more means a loop.
    for (uint32_t steps = 0;; steps++) {
        if (i >= count) {
            why = "descriptor index " + std::to_string(i) + " out of range";
            return false;
        }
        if (steps >= count) {
            why = "descriptor chain loops or is longer than its table";
            return false;
        }
        Desc d;
        std::memcpy(&d, mem_.ptr(table + 16ull * i, 16), 16);  // one copy: the guest may change it
        if (d.flags & kIndirect) {
            if (indirect) {
                why = "nested indirect descriptor table";
                return false;
            }
            if (d.flags & kNext) {
                why = "indirect descriptor with NEXT set";
                return false;
            }
            if (d.len == 0 || d.len % 16 || d.len / 16 > kMaxSize || !mem_.ptr(d.addr, d.len)) {
                why = "bad indirect table (length " + std::to_string(d.len) + ")";
                return false;
            }
            return walk(d.addr, d.len / 16, 0, true, out, why);
        }
        if (d.len == 0) {
            why = "zero-length buffer";
            return false;
        }
        if (!mem_.ptr(d.addr, d.len)) {
            why = "buffer outside guest memory";
            return false;
        }
        bool w = d.flags & kWrite;
        // Device-readable buffers come first, then device-writable (2.7.4.2).
        if (!w && out.writable_bytes) {
            why = "device-readable buffer after a device-writable one";
            return false;
        }
        if (out.segs.size() >= kMaxChainSegments) {
            why = "descriptor chain of more than " + std::to_string(kMaxChainSegments) + " buffers";
            return false;
        }
        (w ? out.writable_bytes : out.readable_bytes) += d.len;
        out.segs.push_back({d.addr, d.len, w});
        if (!(d.flags & kNext)) return true;
        i = d.next;
    }
}

bool SplitQueue::add_used(uint16_t head, uint32_t written) {
    if (!valid_ || head >= size_) return false;
    uint64_t at = used_ + 4 + 8ull * (used_idx_ % size_);
    uint8_t* elem = mem_.ptr(at, 8);
    uint32_t id = head;
    std::memcpy(elem, &id, 4);
    std::memcpy(elem + 4, &written, 4);
    if (log_) log_(at, 8);
    used_idx_++;
    return true;
}

void SplitQueue::publish_used() {
    if (!valid_ || published_used_ == used_idx_) return;
    // The elements must be visible before the index that publishes them.
    store16(mem_.ptr(used_ + 2, 2), used_idx_);
    published_used_ = used_idx_;
    if (log_) log_(used_ + 2, 2);
}

void SplitQueue::resume(uint16_t base) {
    last_avail_ = avail_seen_ = base;
    if (valid_) used_idx_ = published_used_ = signalled_used_ = load16(mem_.ptr(used_ + 2, 2));
}

bool SplitQueue::enable_notify() {
    if (!valid_) return false;
    uint8_t* used = mem_.ptr(used_, 6 + 8ull * size_);
    // Kick when the driver adds past what we have seen, which is more than
    // last_avail_ when a frame gave back chains too few to hold it.
    if (event_idx_)
        store16(used + 4 + 8ull * size_, avail_seen_);
    else
        store16(used, 0);  // clear VRING_USED_F_NO_NOTIFY
    if (log_) log_(event_idx_ ? used_ + 4 + 8ull * size_ : used_, 2);
    // The driver may have added buffers before it could see the request: the
    // store above must be ordered before re-reading avail->idx.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return load16(mem_.ptr(avail_ + 2, 2)) != avail_seen_;
}

void SplitQueue::disable_notify() {
    if (!valid_ || event_idx_) return;  // with event indexes, a stale avail_event suppresses
    store16(mem_.ptr(used_, 2), 1);     // VRING_USED_F_NO_NOTIFY
    if (log_) log_(used_, 2);
}

bool SplitQueue::need_interrupt() {
    if (!valid_) return false;
    // The used index must be visible before reading what the driver asked for.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    uint8_t* avail = mem_.ptr(avail_, 6 + 2ull * size_);
    uint16_t old = signalled_used_, now = published_used_;
    if (old == now) return false;
    signalled_used_ = now;
    if (!event_idx_) return !(load16(avail) & 1);  // VRING_AVAIL_F_NO_INTERRUPT
    // Interrupt iff used_event lies in [old, now): the spec's vring_need_event.
    uint16_t event = load16(avail + 4 + 2ull * size_);
    return static_cast<uint16_t>(now - event - 1) < static_cast<uint16_t>(now - old);
}

}  // namespace minivmm
