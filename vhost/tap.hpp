// A tap interface as a packet backend: frames with a virtio-net header in
// front (IFF_VNET_HDR), so checksum and segmentation offloads pass through.
// With several queues (IFF_MULTI_QUEUE) each queue is its own fd, and the
// kernel spreads received flows over the queues that are attached.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "vmm/kvm.hpp"

namespace minivmm {

class Tap {
public:
    // Attaches to tap `name` with `queues` fds, creating it (up, for this
    // VM's lifetime) if it does not exist; says so on stderr. Throws
    // UserError on failure.
    explicit Tap(const std::string& name, unsigned queues = 1);
    int fd(unsigned queue = 0) const { return fds_[queue].get(); }
    unsigned queues() const { return static_cast<unsigned>(fds_.size()); }
    const std::string& name() const { return name_; }
    bool created() const { return created_; }
    // Header length in front of every frame, both ways (10 or 12 bytes).
    void set_vnet_header_size(int bytes);
    // Offloads the guest can take (TUN_F_* flags): the kernel then hands us
    // partial-checksum and GSO frames instead of finishing them itself.
    void set_offload(unsigned tun_flags);
    // A detached queue gets no frames (the kernel stops hashing flows to it)
    // and refuses writes; queue 0 is never detached.
    void set_queue_attached(unsigned queue, bool attached);

private:
    Fd open_queue(bool multi_queue, bool existed);
    std::vector<Fd> fds_;
    std::string name_;
    bool created_ = false;
};

}  // namespace minivmm
