// Which guest pages were written since the last look, by anyone: the vCPUs
// (KVM's dirty log, per memory slot) and the NICs' datapaths (the vhost
// log: one bitmap over guest-physical memory that the kernel's vhost-net,
// the worker threads and the vhost=off I/O thread mark as they write). A
// migration sends RAM once, then in rounds what this reports, until what is
// left is small enough to send with the guest paused.
#pragma once
#include <cstdint>
#include <vector>

#include "vmm/guest_memory.hpp"

namespace minivmm {

class Vm;

struct PageRun {
    uint64_t gpa, len;  // whole pages
};

class DirtyPages {
public:
    // Memory slots are numbered as mem's regions (Machine does so).
    DirtyPages(Vm& vm, const GuestMemory& mem);
    ~DirtyPages();  // stops logging; a failure is one line on stderr, never thrown
    DirtyPages(const DirtyPages&) = delete;
    DirtyPages& operator=(const DirtyPages&) = delete;

    // KVM starts logging every slot; the vhost bitmap is zeroed. Writes from
    // here on are reported by the next collect().
    void start();
    // KVM stops logging (its write-protection of RAM ends). Idempotent;
    // throws InternalError if KVM refuses a slot (once: it counts as stopped).
    void stop();
    // The pages written since start() or the last collect(), merged into
    // runs, in address order; both logs are cleared as they are read.
    std::vector<PageRun> collect();

    // The vhost log the NICs' backends mark (vhost/dirty_log.hpp's layout):
    // it covers guest-physical memory from 0 to the end of the last region.
    uint8_t* vhost_log() const { return vhost_log_; }
    uint64_t vhost_log_bytes() const { return vhost_log_bytes_; }

private:
    void set_logging(bool on);
    Vm& vm_;
    const GuestMemory& mem_;
    uint8_t* vhost_log_ = nullptr;
    uint64_t vhost_log_bytes_ = 0;
    std::vector<uint64_t> kvm_bitmap_;
    bool on_ = false;
};

}  // namespace minivmm
