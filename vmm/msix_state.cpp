// The MSI-X table's saved state, checked as the guest could have left it
// through table_write() and Message Control.
#include "vmm/msix.hpp"

namespace minivmm {

void Msix::save(state::Writer& w) const {
    std::lock_guard g(lock_);
    w.u16(size());
    w.boolean(enable_);
    w.boolean(function_mask_);
    for (const Entry& e : entries_) {
        w.u32(e.addr_lo);
        w.u32(e.addr_hi);
        w.u32(e.data);
        w.u32(e.control);
        w.boolean(e.pending);
    }
}

void Msix::load(state::Reader& r, const std::string& who) {
    uint16_t n = r.u16();
    if (n != size())
        r.fail(who + " MSI-X: table of " + std::to_string(n) + " vectors, this device has " + std::to_string(size()));
    bool enable = r.boolean(), function_mask = r.boolean();
    std::vector<Entry> loaded(n);
    for (uint16_t v = 0; v < n; v++) {
        Entry& e = loaded[v];
        e.addr_lo = r.u32();
        e.addr_hi = r.u32();
        e.data = r.u32();
        e.control = r.u32();
        e.pending = r.boolean();
        std::string at = who + " MSI-X vector " + std::to_string(v) + ": ";
        if (e.addr_lo & 3) r.fail(at + "message address not dword aligned");
        if (e.control > 1) r.fail(at + "vector control bits other than the mask");
        // A pending bit is set only while masked, and sent as soon as the
        // vector can be: pending and deliverable at once never happens.
        if (e.pending && enable && !function_mask && !(e.control & 1)) r.fail(at + "pending but not masked");
    }
    {
        std::lock_guard g(lock_);
        enable_ = enable;
        function_mask_ = function_mask;
        entries_ = std::move(loaded);
    }
    notify_all();
}

}  // namespace minivmm
