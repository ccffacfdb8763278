#include "virtio/queue_stats.hpp"

namespace minivmm {

void QueueStats::print(std::FILE* f, const char* name) const {
    std::fprintf(f, "  %s: %llu packets, %llu bytes, %llu notifications, %llu interrupts, %llu errors\n", name,
                 (unsigned long long)packets, (unsigned long long)bytes, (unsigned long long)notifications,
                 (unsigned long long)interrupts, (unsigned long long)errors);
}

}  // namespace minivmm
