// A tap interface as a packet backend: frames with a virtio-net header in
// front (IFF_VNET_HDR), so checksum and segmentation offloads pass through.
#pragma once
#include <cstdint>
#include <string>

#include "vmm/kvm.hpp"

namespace minivmm {

class Tap {
public:
    // Attaches to tap `name`, creating it (up, for this VM's lifetime) if it
    // does not exist; says so on stderr. Throws UserError on failure.
    explicit Tap(const std::string& name);
    int fd() const { return fd_.get(); }
    const std::string& name() const { return name_; }
    bool created() const { return created_; }
    // Header length in front of every frame, both ways (10 or 12 bytes).
    void set_vnet_header_size(int bytes);
    // Offloads the guest can take (TUN_F_* flags): the kernel then hands us
    // partial-checksum and GSO frames instead of finishing them itself.
    void set_offload(unsigned tun_flags);

private:
    Fd fd_;
    std::string name_;
    bool created_ = false;
};

}  // namespace minivmm
