// Thin owners of the /dev/kvm system fd and a VM fd.
#pragma once
#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vmm/fd.hpp"
#include "vmm/kvm_bypass.hpp"

namespace minivmm {

namespace state {
class Writer;
class Reader;
}  // namespace state

// <linux/kvm.h> wraps its flexible arrays in __DECLARE_FLEX_ARRAY, whose empty
// struct takes one byte in C++: sizeof(kvm_cpuid2) becomes 12, not 8, which
// changes the ioctl numbers and misplaces entries[]. These are the kernel's
// real headers, and the ioctls that carry them.
struct KvmCpuidHeader {
    uint32_t nent, padding;
};
struct KvmMsrsHeader {
    uint32_t nmsrs, pad;
};
struct KvmIrqRoutingHeader {
    uint32_t nr, flags;
};
constexpr unsigned long kKvmGetSupportedCpuid = _IOWR(KVMIO, 0x05, KvmCpuidHeader);
constexpr unsigned long kKvmSetCpuid2 = _IOW(KVMIO, 0x90, KvmCpuidHeader);
constexpr unsigned long kKvmSetMsrs = _IOW(KVMIO, 0x89, KvmMsrsHeader);
constexpr unsigned long kKvmSetGsiRouting = _IOW(KVMIO, 0x6a, KvmIrqRoutingHeader);

// A header followed by n entries, laid out as the kernel expects.
template <typename Header, typename Entry>
struct KvmList {
    explicit KvmList(size_t n) : buf(sizeof(Header) + n * sizeof(Entry)) {}
    Header* header() { return reinterpret_cast<Header*>(buf.data()); }
    Entry* entries() { return reinterpret_cast<Entry*>(buf.data() + sizeof(Header)); }
    std::vector<uint8_t> buf;  // vector storage is suitably aligned for Entry
};

class Kvm {
public:
    // Opens the device and checks the API version; throws UserError with a
    // message that says what to do (missing module, permission).
    explicit Kvm(const std::string& path = "/dev/kvm");
    int fd() const { return fd_.get(); }
    int check_extension(long cap) const;
    int vcpu_mmap_size() const;
    // CPUID leaves this host's KVM can virtualise, the base for each vCPU's table.
    std::vector<kvm_cpuid_entry2> supported_cpuid() const;
    // True when the CPU has no VMX/SVM: KVM is then PVM or similar, and a
    // stock kernel's CPL0 code is emulated instruction by instruction.
    static bool host_lacks_hw_virt();

private:
    Fd fd_;
};

class Vm : public KvmEventfds {
public:
    explicit Vm(const Kvm& kvm);
    int fd() const { return fd_.get(); }
    // flags: KVM_MEM_LOG_DIRTY_PAGES while a migration tracks writes.
    void set_memory(uint32_t slot, uint64_t gpa, uint64_t size, void* hva, uint32_t flags = 0);
    // Drive a GSI of the in-kernel IOAPIC/PIC to a level.
    void irq_line(uint32_t gsi, bool level);
    // Inject one MSI (address/data as the guest programmed them).
    void signal_msi(uint64_t address, uint32_t data);
    void ioeventfd(uint64_t addr, uint32_t len, int fd, bool assign) override;
    void irqfd(int fd, uint32_t gsi, bool assign) override;
    // The in-kernel PICs, IOAPIC, PIT and KVM clock (vm_state.hpp, where
    // these are defined): saved with every vCPU out of KVM_RUN, loaded after
    // the vCPUs' state and before any vCPU runs. load throws state::Error.
    void save_state(state::Writer& out) const;
    void load_state(state::Reader& in);

private:
    Fd fd_;
};

// ioctl that throws InternalError naming the request and errno on failure.
long kvm_ioctl(int fd, unsigned long req, const void* arg, const char* name);
inline long kvm_ioctl(int fd, unsigned long req, unsigned long arg, const char* name) {
    return kvm_ioctl(fd, req, reinterpret_cast<const void*>(arg), name);
}

}  // namespace minivmm
