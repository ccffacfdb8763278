// vhost's dirty log (VHOST_SET_LOG_BASE): a bitmap in VMM memory with one
// bit per 4 KiB page of guest-physical memory, page p at bit p % 8 of byte
// p / 8. The kernel checks that a log covers what it will mark before it
// uses it (log_access_ok); here the log's size comes with its address, both
// backends refuse a log that does not cover the memory table, and each
// mark checks again, so no write lands outside the bitmap.
#pragma once
#include <atomic>
#include <cstdint>
#include <vector>

#include "vhost/vhost.hpp"

namespace minivmm {

class DirtyLog {
public:
    static constexpr uint64_t kPageShift = 12;
    DirtyLog() = default;
    DirtyLog(uint8_t* base, uint64_t bytes) : base_(base), bytes_(bytes) {}
    explicit operator bool() const { return base_ != nullptr; }

    // Whether the bits for [gpa, gpa + len) are in the bitmap; a range that
    // wraps past the top of the address space never is.
    bool covers(uint64_t gpa, uint64_t len) const {
        if (len == 0) return true;
        uint64_t last = gpa + len - 1;
        return last >= gpa && (last >> kPageShift) / 8 < bytes_;
    }
    bool covers(const std::vector<VhostRegion>& regions) const {
        for (const VhostRegion& r : regions)
            if (!covers(r.gpa, r.size)) return false;
        return true;
    }
    // Marks the pages a write of len bytes at gpa touched: none for len 0.
    // Returns false, marking nothing, for a write the log does not cover.
    bool mark(uint64_t gpa, uint64_t len) const {
        if (!covers(gpa, len)) return false;
        if (len == 0) return true;
        for (uint64_t page = gpa >> kPageShift; page <= (gpa + len - 1) >> kPageShift; page++)
            std::atomic_ref<uint8_t>(base_[page / 8]).fetch_or(uint8_t(1u << (page % 8)));
        return true;
    }

private:
    uint8_t* base_ = nullptr;
    uint64_t bytes_ = 0;
};

}  // namespace minivmm
