// The vhost protocol (linux/vhost.h) as one interface: a backend that serves
// a device's virtqueues outside the VMM's vCPU and I/O loops. Two
// implementations: the kernel's /dev/vhost-net (kernel.cpp) and minivmm's own
// worker threads (worker.cpp). Addresses of rings are VMM virtual addresses,
// buffer addresses guest-physical, translated through the memory table.
// Rings are numbered as the device's queues: 2k receives and 2k+1 sends for
// queue pair k (one vhost-net device serves one pair; a backend here may
// serve several).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "virtio/coalesce.hpp"

namespace minivmm {

struct QueueStats;

namespace vhost {
constexpr uint64_t kFLogAll = 1ull << 26;  // VHOST_F_LOG_ALL
// Bit 27 is both VIRTIO_F_ANY_LAYOUT and VHOST_NET_F_VIRTIO_NET_HDR: acked,
// vhost adds the virtio-net header to frames it reads from the backend fd and
// strips it from those it writes. vhost_rings.cpp acks it for a port without
// headers (a raw socket), not for a tap, which supplies the header itself.
constexpr uint64_t kFNetVirtioNetHdr = 1ull << 27;
}  // namespace vhost

struct VhostRegion {
    uint64_t gpa, size, uaddr;
};

struct VringAddr {
    uint64_t desc, avail, used;  // VMM virtual addresses of the three parts
    uint64_t log = 0;            // guest-physical address of the used ring, for the dirty log
    bool log_used = false;
};

class VhostBackend {
public:
    virtual ~VhostBackend() = default;
    virtual const char* name() const = 0;
    virtual void set_owner() = 0;
    virtual uint64_t get_features() = 0;
    virtual void set_features(uint64_t features) = 0;
    virtual void set_mem_table(const std::vector<VhostRegion>& regions) = 0;
    // Dirty-page bitmap (one bit per 4 KiB guest page, dirty_log.hpp) of
    // size bytes in VMM memory, or uaddr 0 for none. It must cover every
    // region of the memory table, now and in later tables: a log that does
    // not is refused (EFAULT), as is a table the log does not cover.
    virtual void set_log_base(uint64_t uaddr, uint64_t size) = 0;
    virtual void set_vring_num(unsigned idx, unsigned num) = 0;
    virtual void set_vring_base(unsigned idx, unsigned base) = 0;
    // Stops the ring and returns the next avail index it would have taken.
    virtual unsigned get_vring_base(unsigned idx) = 0;
    virtual void set_vring_addr(unsigned idx, const VringAddr& addr) = 0;
    virtual void set_vring_kick(unsigned idx, int fd) = 0;
    virtual void set_vring_call(unsigned idx, int fd) = 0;
    virtual void set_vring_err(unsigned idx, int fd) = 0;
    // Attaches the tap (starts the ring) or, with -1, detaches it (stops it).
    virtual void set_backend(unsigned idx, int tap_fd) = 0;
    // Per-ring counters, where the backend keeps them (the kernel does not show its own).
    virtual const QueueStats* stats(unsigned idx) const { (void)idx; return nullptr; }
    // minivmm's extension: a ring's notification coalescing (virtio/coalesce.hpp),
    // taken while it runs. vhost-net has no such call (it signals the irqfd
    // after every batch); a backend without it refuses (EOPNOTSUPP).
    virtual bool coalescing() const { return false; }
    virtual void set_vring_coalesce(unsigned idx, const Coalesce& c);
};

// vhost=kernel, one /dev/vhost-net per queue pair: throws UserError if it
// cannot be opened.
std::unique_ptr<VhostBackend> open_kernel_vhost(unsigned pairs = 1);
// vhost=worker: one thread per ring, named "vhost-<label>-rx<k>"/"-tx<k>".
std::unique_ptr<VhostBackend> make_worker_vhost(unsigned pairs = 1, const std::string& label = "net");

}  // namespace minivmm
