#include "vmm/guest_memory.hpp"

#include <sys/mman.h>

#include "vmm/error.hpp"

namespace minivmm {

std::vector<MemRegion> GuestMemory::layout(uint64_t size) {
    if (size <= kMmioHoleStart) return {{0, size, nullptr}};
    return {{0, kMmioHoleStart, nullptr}, {kMmioHoleEnd, size - kMmioHoleStart, nullptr}};
}

GuestMemory::GuestMemory(uint64_t size) : size_(size), regions_(layout(size)) {
    // Align the host mapping to 2 MiB so that a transparent huge page backs
    // exactly one 2 MiB guest frame and KVM can map it with one large page.
    constexpr uint64_t kHuge = 2ull << 20;
    void* p = ::mmap(nullptr, size + kHuge, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw sys_error("cannot map " + std::to_string(size >> 20) + " MiB of guest memory");
    auto raw = reinterpret_cast<uintptr_t>(p);
    auto aligned = (raw + kHuge - 1) & ~(kHuge - 1);
    if (aligned > raw) ::munmap(p, aligned - raw);
    if (uint64_t tail = kHuge - (aligned - raw)) ::munmap(reinterpret_cast<void*>(aligned + size), tail);
    base_ = reinterpret_cast<uint8_t*>(aligned);
    // Transparent huge pages cut nested-paging misses for the guest; advisory only.
    ::madvise(base_, size, MADV_HUGEPAGE);
    uint64_t off = 0;
    for (auto& r : regions_) {
        r.hva = base_ + off;
        off += r.size;
    }
}

GuestMemory::~GuestMemory() {
    if (base_) ::munmap(base_, size_);
}

uint8_t* GuestMemory::ptr(uint64_t gpa, uint64_t len) const {
    for (const auto& r : regions_) {
        // Written so that no sum can overflow: gpa and len come from the guest.
        if (gpa >= r.gpa && gpa - r.gpa <= r.size && len <= r.size - (gpa - r.gpa))
            return r.hva + (gpa - r.gpa);
    }
    return nullptr;
}

}  // namespace minivmm
