// MSI-X (PCI 3.0, 6.8.2): the vector table and pending-bit array a device
// exposes in a BAR, and the mask/pending rules for raising a vector.
#pragma once
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "vmm/state_stream.hpp"

namespace minivmm {

struct MsiMessage {
    uint64_t address;
    uint32_t data;
};

class Msix {
public:
    static constexpr uint16_t kCapId = 0x11;
    static constexpr uint16_t kNoVector = 0xffff;  // virtio's "no vector assigned"
    // deliver sends one message to the interrupt controller (KVM_SIGNAL_MSI).
    using Deliver = std::function<void(const MsiMessage&)>;
    Msix(uint16_t vectors, Deliver deliver);

    uint16_t size() const { return static_cast<uint16_t>(entries_.size()); }
    // Bytes the table and the PBA take in the BAR.
    uint32_t table_bytes() const { return 16u * size(); }
    uint32_t pba_bytes() const { return 8u * ((size() + 63) / 64); }

    // The capability body (after ID/next) for a table at table_off and PBA at
    // pba_off, both in BAR bar.
    std::vector<uint8_t> capability(uint8_t bar, uint32_t table_off, uint32_t pba_off) const;
    // The guest wrote Message Control (upper half of the capability's first dword).
    void control_written(uint16_t control);
    uint16_t control() const;

    // Table and PBA accesses from the guest; offsets within each structure.
    // Accesses must be 4 or 8 bytes and aligned, as the spec requires;
    // others read zero and are dropped.
    void table_read(uint64_t off, uint8_t* data, uint32_t size);
    void table_write(uint64_t off, const uint8_t* data, uint32_t size);
    void pba_read(uint64_t off, uint8_t* data, uint32_t size);

    // Raises a vector: delivered now, or marked pending while it or the whole
    // function is masked, and delivered when unmasked. Out-of-range vectors
    // (the driver assigned none) are dropped; returns whether it was delivered.
    bool raise(uint16_t vector);
    // Whether vector v would be delivered now, and the message it would send.
    bool live(uint16_t v, MsiMessage& msg) const;
    // Called (outside the table's lock) with each vector whose entry, mask or
    // the function's enable/mask may have changed: irqfd routes follow it.
    void set_observer(std::function<void(uint16_t)> f) { observer_ = std::move(f); }
    bool enabled() const;
    bool masked(uint16_t vector) const;
    bool pending(uint16_t vector) const;

    // Saved state (msix_state.cpp): enable, function mask, every entry and
    // its pending bit. load() is for a table fresh from construction, of the
    // same size; it delivers nothing, and then tells the observer of every
    // vector, so irqfd routes follow the loaded table. `who` names the device.
    void save(state::Writer& w) const;
    void load(state::Reader& r, const std::string& who);

private:
    struct Entry {
        uint32_t addr_lo = 0, addr_hi = 0, data = 0, control = 1;  // masked at reset
        bool pending = false;
    };
    bool masked_locked(const Entry& e) const { return function_mask_ || (e.control & 1); }
    void flush_pending_locked();

    mutable std::mutex lock_;
    std::vector<Entry> entries_;
    bool enable_ = false, function_mask_ = false;
    void notify_all();
    Deliver deliver_;
    std::function<void(uint16_t)> observer_;
};

}  // namespace minivmm
