// The vhost-net uAPI: structs and ioctl numbers, for kernel.cpp and the
// seccomp policy (which lets the vCPU thread make exactly these ioctls).
#pragma once
#include <linux/ioctl.h>

#include <cstdint>

namespace minivmm::vhost_abi {

// <linux/vhost.h> pulls in <linux/virtio_ring.h>, whose inline C does not
// compile as C++: the uAPI structs and ioctl numbers, restated.
struct vhost_vring_state {
    unsigned int index, num;
};
struct vhost_vring_file {
    unsigned int index;
    int fd;
};
struct vhost_vring_addr {
    unsigned int index, flags;
    uint64_t desc_user_addr, used_user_addr, avail_user_addr, log_guest_addr;
};
struct vhost_memory_region {
    uint64_t guest_phys_addr, memory_size, userspace_addr, flags_padding;
};
struct vhost_memory {
    uint32_t nregions, padding;
};
constexpr unsigned kVringFLog = 0;
constexpr unsigned long VHOST_GET_FEATURES = _IOR(0xAF, 0x00, uint64_t);
constexpr unsigned long VHOST_SET_FEATURES = _IOW(0xAF, 0x00, uint64_t);
constexpr unsigned long VHOST_SET_OWNER = _IO(0xAF, 0x01);
constexpr unsigned long VHOST_SET_MEM_TABLE = _IOW(0xAF, 0x03, vhost_memory);
constexpr unsigned long VHOST_SET_LOG_BASE = _IOW(0xAF, 0x04, uint64_t);
constexpr unsigned long VHOST_SET_VRING_NUM = _IOW(0xAF, 0x10, vhost_vring_state);
constexpr unsigned long VHOST_SET_VRING_ADDR = _IOW(0xAF, 0x11, vhost_vring_addr);
constexpr unsigned long VHOST_SET_VRING_BASE = _IOW(0xAF, 0x12, vhost_vring_state);
constexpr unsigned long VHOST_GET_VRING_BASE = _IOWR(0xAF, 0x12, vhost_vring_state);
constexpr unsigned long VHOST_SET_VRING_KICK = _IOW(0xAF, 0x20, vhost_vring_file);
constexpr unsigned long VHOST_SET_VRING_CALL = _IOW(0xAF, 0x21, vhost_vring_file);
constexpr unsigned long VHOST_SET_VRING_ERR = _IOW(0xAF, 0x22, vhost_vring_file);
constexpr unsigned long VHOST_NET_SET_BACKEND = _IOW(0xAF, 0x30, vhost_vring_file);
static_assert(sizeof(vhost_vring_addr) == 40 && sizeof(vhost_memory) == 8);

}  // namespace minivmm::vhost_abi
