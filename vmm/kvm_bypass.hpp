// What a device needs from KVM to let kicks and interrupts bypass minivmm.
// Interfaces, implemented by Vm and GsiRouter, so that unit tests (which run
// without /dev/kvm) can stand in for KVM.
#pragma once
#include <cstdint>

#include "vmm/msix.hpp"

namespace minivmm {

class KvmEventfds {
public:
    virtual ~KvmEventfds() = default;
    // A guest write of len bytes at MMIO address addr signals fd, in KVM, with
    // no exit to minivmm (KVM_IOEVENTFD). Throws if KVM refuses.
    virtual void ioeventfd(uint64_t addr, uint32_t len, int fd, bool assign) = 0;
    // Signalling fd raises GSI gsi in KVM (KVM_IRQFD).
    virtual void irqfd(int fd, uint32_t gsi, bool assign) = 0;
};

// GSIs routed to an MSI, for irqfds to raise.
class MsiRoutes {
public:
    virtual ~MsiRoutes() = default;
    // A new GSI routed to msg; later updates follow the guest's MSI-X table.
    virtual uint32_t add_msi(const MsiMessage& msg) = 0;
    virtual void update_msi(uint32_t gsi, const MsiMessage& msg) = 0;
    virtual void remove(uint32_t gsi) = 0;
};

}  // namespace minivmm
