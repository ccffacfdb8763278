// A vCPU's KVM state for snapshots and migration: registers, segments and
// control registers, FPU/SSE/AVX (XSAVE) and XCR0, MSRs, the local APIC,
// pending events, the MP state and the debug registers; its byte form (a
// versioned section of parts, state_parts.hpp) and reading it from and
// writing it to KVM in the order KVM needs (vcpu_state.cpp says why).
#pragma once
#include <linux/kvm.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vmm/kvm_state_abi.hpp"
#include "vmm/state_stream.hpp"

namespace minivmm {

struct VcpuState {
    // Not restored (a vCPU's CPUID is set as it is made, and a running
    // guest has read it): checked, so a guest never wakes on a CPU that
    // lacks what it saw, or as another vCPU.
    std::vector<kvm_cpuid_entry2> cpuid;
    kvm_regs regs{};
    kvm_sregs sregs{};
    // XSAVE area as KVM_GET_XSAVE(2) gives it; empty where KVM has no XSAVE,
    // and then the legacy FPU image in fpu.
    std::vector<uint8_t> xsave;
    kvm_fpu fpu{};
    std::optional<kvm_xcrs> xcrs;
    std::vector<kvm_msr_entry> msrs;  // in the order they are written back
    kvm_lapic_state lapic{};
    kvm_vcpu_events events{};
    kvm_mp_state mp_state{};
    std::optional<kvm_debugregs> debugregs;
};

// What this host's KVM saves for a vCPU, found once as the vCPU is made
// (before any seccomp filter: it asks /dev/kvm).
struct VcpuStateShape {
    size_t xsave_size = 0;  // bytes KVM_GET_XSAVE2/KVM_SET_XSAVE move; 0: no XSAVE, legacy FPU
    bool xsave2 = false;    // KVM_GET_XSAVE2 (KVM_CAP_XSAVE2) rather than KVM_GET_XSAVE
    bool xcrs = false;
    bool debugregs = false;
    std::vector<uint32_t> msrs;  // the MSRs this vCPU's KVM_GET_MSRS answers for
    std::vector<kvm_cpuid_entry2> cpuid;  // as minivmm gave it to this vCPU
};

// Bounds a reader holds the byte form to (a hostile stream's counts and sizes).
constexpr size_t kMaxSavedMsrs = 1024;
constexpr size_t kMaxXsaveBytes = 64 * 1024;
constexpr size_t kMaxCpuidEntries = 256;  // KVM's own limit

// The MSR numbers KVM saves and restores (KVM_GET_MSR_INDEX_LIST on /dev/kvm).
std::vector<uint32_t> kvm_msr_index_list(int kvm_fd);
// kvm_msrs: that list, plus the MTRRs and PAT it leaves out; cpuid: the
// table the vCPU was given (KVM_SET_CPUID2); vm: for the XSAVE size, which
// KVM gives per VM.
VcpuStateShape probe_vcpu_state(const std::vector<uint32_t>& kvm_msrs, const std::vector<kvm_cpuid_entry2>& cpuid,
                                KvmFdCalls& vm, KvmFdCalls& vcpu);

// From KVM, while the vCPU is out of KVM_RUN with no exit left half done
// (Vcpu::run completes one before it parks). Throws InternalError.
VcpuState get_vcpu_state(KvmFdCalls& vcpu, const VcpuStateShape& shape);
// Into a vCPU made as the saved one was and not yet run; its CPUID must be
// the saved one, entry for entry (the same host CPU and KVM, the same vCPU
// number). A refusal throws
// state::Error naming the state (what) and KVM's reason, or InternalError
// when the host is short of memory.
void set_vcpu_state(KvmFdCalls& vcpu, const VcpuStateShape& shape, const VcpuState& s, const std::string& what);

// The byte form. read_vcpu_state throws state::Error on anything malformed.
void write_vcpu_state(state::Writer& out, const VcpuState& s);
VcpuState read_vcpu_state(state::Reader& in);

// A KVM refusal of saved state: state::Error, or InternalError for host
// trouble (ENOMEM, EFAULT). err: positive errno.
[[noreturn]] void refused_state(const std::string& what, const char* ioctl, int err);

}  // namespace minivmm
