// The VM-wide KVM state for snapshots and migration: the in-kernel
// interrupt controllers (both 8259 PICs and the IOAPIC), the PIT, and the
// KVM clock; its byte form (a versioned section of parts, state_parts.hpp).
#pragma once
#include <linux/kvm.h>

#include <cstdint>
#include <string>

#include "vmm/kvm_state_abi.hpp"
#include "vmm/state_stream.hpp"

namespace minivmm {

struct VmState {
    kvm_pic_state pic_master{}, pic_slave{};
    kvm_ioapic_state ioapic{};
    kvm_pit_state2 pit{};
    uint64_t clock_ns = 0;    // kvmclock as KVM_GET_CLOCK read it
    uint32_t clock_flags = 0;  // what KVM_GET_CLOCK said of it (KVM_CLOCK_TSC_STABLE), for the record
};

// While every vCPU is out of KVM_RUN. Throws InternalError.
VmState get_vm_state(KvmFdCalls& vm);
// Into a VM made as the saved one was, after its vCPUs' state and before any
// runs: the clock is set last, nearest the moment the guest goes on. A
// refusal throws state::Error (InternalError for host trouble).
void set_vm_state(KvmFdCalls& vm, const VmState& s, const std::string& what);

void write_vm_state(state::Writer& out, const VmState& s);
VmState read_vm_state(state::Reader& in);  // throws state::Error

}  // namespace minivmm
