// Counters of one virtqueue, which a user reads with --stats or SIGUSR1;
// kept by whatever serves the queue.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstdio>

namespace minivmm {

struct QueueStats {
    std::atomic<uint64_t> packets{0}, bytes{0}, notifications{0}, interrupts{0}, errors{0};
    void print(std::FILE* f, const char* name) const;
};

}  // namespace minivmm
