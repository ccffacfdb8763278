#include "vmm/guest_memory.hpp"

#include <sys/mman.h>

#include "vmm/error.hpp"

namespace minivmm {

std::vector<MemRegion> GuestMemory::layout(uint64_t size) {
    if (size <= kMmioHoleStart) return {{0, size, nullptr}};
    return {{0, kMmioHoleStart, nullptr}, {kMmioHoleEnd, size - kMmioHoleStart, nullptr}};
}

GuestMemory::GuestMemory(uint64_t size) : size_(size), regions_(layout(size)) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw sys_error("cannot map " + std::to_string(size >> 20) + " MiB of guest memory");
    base_ = static_cast<uint8_t*>(p);
    // Transparent huge pages cut EPT/NPT misses for the guest; advisory only.
    ::madvise(p, size, MADV_HUGEPAGE);
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
