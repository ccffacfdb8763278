// The KVM ioctls that read and write saved vCPU and VM state, and a seam
// between the state code and a KVM fd so unit tests can stand in for KVM.
#pragma once
#include <linux/kvm.h>

#include <cstdint>

#include "vmm/kvm.hpp"

namespace minivmm {

// As with kvm_cpuid2 (kvm.hpp), C++ sizes the kernel's flexible arrays one
// byte too large: sizeof(kvm_xsave) is 4100, not 4096, which would change the
// XSAVE ioctl numbers. These are the sizes the kernel's numbers are made of.
struct KvmXsaveRegion {
    uint32_t region[1024];
};
struct KvmMsrListHeader {
    uint32_t nmsrs;
};
constexpr unsigned long kKvmGetMsrIndexList = _IOWR(KVMIO, 0x02, KvmMsrListHeader);
constexpr unsigned long kKvmGetMsrs = _IOWR(KVMIO, 0x88, KvmMsrsHeader);
constexpr unsigned long kKvmGetXsave = _IOR(KVMIO, 0xa4, KvmXsaveRegion);
constexpr unsigned long kKvmSetXsave = _IOW(KVMIO, 0xa5, KvmXsaveRegion);
constexpr unsigned long kKvmGetXsave2 = _IOR(KVMIO, 0xcf, KvmXsaveRegion);
constexpr size_t kXsaveLegacySize = sizeof(KvmXsaveRegion);

// One KVM fd (a vCPU's or a VM's) as the state code calls it. Returns what
// ioctl returns, or -errno; EINTR is retried.
class KvmFdCalls {
public:
    virtual ~KvmFdCalls() = default;
    virtual long call(unsigned long req, void* arg) = 0;
    virtual int check_extension(long cap) = 0;  // on this fd: <= 0 is "no"
};

class RealKvmFd : public KvmFdCalls {
public:
    explicit RealKvmFd(int fd) : fd_(fd) {}
    long call(unsigned long req, void* arg) override;
    int check_extension(long cap) override;

private:
    int fd_;
};

}  // namespace minivmm
