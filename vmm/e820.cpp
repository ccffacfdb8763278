#include "vmm/e820.hpp"

#include "vmm/guest_memory.hpp"
#include "vmm/layout.hpp"

namespace minivmm {

namespace {
constexpr uint32_t kE820Ram = 1;
constexpr uint32_t kE820Reserved = 2;
}  // namespace

std::vector<boot_e820_entry> build_e820(uint64_t mem_size) {
    std::vector<boot_e820_entry> map;
    map.push_back({0, layout::kEbda, kE820Ram});
    map.push_back({layout::kEbda, layout::kKernel - layout::kEbda, kE820Reserved});
    for (const auto& r : GuestMemory::layout(mem_size)) {
        uint64_t start = r.gpa == 0 ? layout::kKernel : r.gpa;
        uint64_t end = r.gpa + r.size;
        if (end > start) map.push_back({start, end - start, kE820Ram});
    }
    return map;
}

}  // namespace minivmm
