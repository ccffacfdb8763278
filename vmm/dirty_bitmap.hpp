// A dirty-page bitmap in VMM memory, as vhost's log (VHOST_SET_LOG_BASE)
// lays it out: one bit per 4 KiB page of guest-physical memory, page p at
// bit p % 8 of byte p / 8. Live migration gives one to every writer of guest
// memory that KVM does not see (the NICs' datapaths); each mark checks it
// stays inside the bitmap, so no write lands outside it.
#pragma once
#include <atomic>
#include <cstdint>

namespace minivmm {

class DirtyBitmap {
public:
    static constexpr uint64_t kPageShift = 12;
    DirtyBitmap() = default;
    DirtyBitmap(uint8_t* base, uint64_t bytes) : base_(base), bytes_(bytes) {}
    explicit operator bool() const { return base_ != nullptr; }
    uint8_t* base() const { return base_; }
    uint64_t bytes() const { return bytes_; }

    // Whether the bits for [gpa, gpa + len) are in the bitmap; a range that
    // wraps past the top of the address space never is.
    bool covers(uint64_t gpa, uint64_t len) const {
        if (len == 0) return true;
        uint64_t last = gpa + len - 1;
        return last >= gpa && (last >> kPageShift) / 8 < bytes_;
    }
    // Marks the pages a write of len bytes at gpa touched: none for len 0.
    // Returns false, marking nothing, for a write the bitmap does not cover.
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
