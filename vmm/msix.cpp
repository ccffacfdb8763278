#include "vmm/msix.hpp"

#include <cstring>

#include "vmm/io_bus.hpp"

namespace minivmm {

Msix::Msix(uint16_t vectors, Deliver deliver) : entries_(vectors), deliver_(std::move(deliver)) {}

std::vector<uint8_t> Msix::capability(uint8_t bar, uint32_t table_off, uint32_t pba_off) const {
    std::vector<uint8_t> b(10);
    le_store(&b[0], 2, size() - 1u);  // table size is encoded as N-1
    le_store(&b[2], 4, table_off | bar);
    le_store(&b[6], 4, pba_off | bar);
    return b;
}

uint16_t Msix::control() const {
    std::lock_guard g(lock_);
    return static_cast<uint16_t>((size() - 1u) | (function_mask_ ? 1u << 14 : 0) | (enable_ ? 1u << 15 : 0));
}

void Msix::control_written(uint16_t control) {
    {
        std::lock_guard g(lock_);
        enable_ = control & (1u << 15);
        function_mask_ = control & (1u << 14);
        flush_pending_locked();
    }
    notify_all();
}

void Msix::notify_all() {
    if (observer_)
        for (uint16_t v = 0; v < size(); v++) observer_(v);
}

bool Msix::live(uint16_t v, MsiMessage& msg) const {
    std::lock_guard g(lock_);
    if (v >= size() || !enable_ || masked_locked(entries_[v])) return false;
    msg = {uint64_t(entries_[v].addr_hi) << 32 | entries_[v].addr_lo, entries_[v].data};
    return true;
}

bool Msix::enabled() const {
    std::lock_guard g(lock_);
    return enable_;
}

bool Msix::masked(uint16_t v) const {
    std::lock_guard g(lock_);
    return v < size() && masked_locked(entries_[v]);
}

bool Msix::pending(uint16_t v) const {
    std::lock_guard g(lock_);
    return v < size() && entries_[v].pending;
}

void Msix::flush_pending_locked() {
    if (!enable_) return;
    for (auto& e : entries_) {
        if (e.pending && !masked_locked(e)) {
            e.pending = false;
            deliver_({uint64_t(e.addr_hi) << 32 | e.addr_lo, e.data});
        }
    }
}

bool Msix::raise(uint16_t v) {
    std::lock_guard g(lock_);
    if (v >= size()) return false;
    Entry& e = entries_[v];
    // With MSI-X disabled the device would use INTx; there is none here, and
    // the spec lets nothing be sent. Masked: remember it, as the PBA shows.
    if (!enable_) return false;
    if (masked_locked(e)) {
        e.pending = true;
        return false;
    }
    deliver_({uint64_t(e.addr_hi) << 32 | e.addr_lo, e.data});
    return true;
}

void Msix::table_read(uint64_t off, uint8_t* data, uint32_t size) {
    std::memset(data, 0, size);
    if ((size != 4 && size != 8) || off % size || off + size > table_bytes()) return;
    std::lock_guard g(lock_);
    for (uint32_t done = 0; done < size; done += 4) {
        const Entry& e = entries_[(off + done) / 16];
        uint32_t words[4] = {e.addr_lo, e.addr_hi, e.data, e.control};
        le_store(data + done, 4, words[(off + done) % 16 / 4]);
    }
}

void Msix::table_write(uint64_t off, const uint8_t* data, uint32_t size) {
    if ((size != 4 && size != 8) || off % size || off + size > table_bytes()) return;
    {
        std::lock_guard g(lock_);
        for (uint32_t done = 0; done < size; done += 4) {
            Entry& e = entries_[(off + done) / 16];
            uint32_t v = static_cast<uint32_t>(le_load(data + done, 4));
            switch ((off + done) % 16 / 4) {
                case 0: e.addr_lo = v & ~3u; break;  // dword aligned: low bits are reserved
                case 1: e.addr_hi = v; break;
                case 2: e.data = v; break;
                case 3: e.control = v & 1; break;  // only the mask bit is defined
            }
        }
        // Unmasking an entry with its pending bit set sends the message now.
        flush_pending_locked();
    }
    if (observer_) observer_(static_cast<uint16_t>(off / 16));
}

void Msix::pba_read(uint64_t off, uint8_t* data, uint32_t size) {
    std::memset(data, 0, size);
    if ((size != 4 && size != 8) || off % size || off + size > pba_bytes()) return;
    std::lock_guard g(lock_);
    for (uint32_t byte = 0; byte < size; byte++)
        for (uint32_t bit = 0; bit < 8; bit++) {
            uint64_t v = (off + byte) * 8 + bit;
            if (v < entries_.size() && entries_[v].pending) data[byte] |= uint8_t(1u << bit);
        }
}

}  // namespace minivmm
