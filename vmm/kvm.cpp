#include "vmm/kvm.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "vmm/error.hpp"

namespace minivmm {

long kvm_ioctl(int fd, unsigned long req, const void* arg, const char* name) {
    long r;
    do {
        r = ::ioctl(fd, req, arg);
    } while (r < 0 && errno == EINTR);
    if (r < 0) throw internal_error(std::string("KVM ") + name + " failed");
    return r;
}

namespace {
// What a user on a host without a usable KVM device can do about it.
std::string no_kvm_advice() {
    if (Kvm::host_lacks_hw_virt())
        return "this CPU offers no VMX/SVM: enable virtualization in the firmware, or, in a virtual machine, "
               "turn on nested virtualization in its hypervisor";
    return "load the module for this CPU (modprobe kvm_intel or kvm_amd), or enable virtualization in the firmware";
}
}  // namespace

Kvm::Kvm(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        // ENOENT: no node; ENXIO/ENODEV: a node with no driver behind it.
        if (err == ENOENT || err == ENXIO || err == ENODEV)
            throw UserError("cannot open " + path + ": this host has no KVM; " + no_kvm_advice());
        if (err == EACCES || err == EPERM)
            throw UserError("cannot open " + path +
                            ": permission denied (run as root or add yourself to the kvm group)");
        throw sys_error("cannot open " + path, err);
    }
    fd_ = Fd(fd);
    int version = ::ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version < 0 && errno == ENOTTY)
        throw UserError(path + " is not a KVM device (it answers no KVM ioctl); " + no_kvm_advice());
    if (version != KVM_API_VERSION)
        throw UserError(path + " speaks KVM API " + std::to_string(version) + ", minivmm needs " +
                        std::to_string(KVM_API_VERSION));
    // Every capability the machine model relies on; missing one is a host problem
    // the user should hear about before the guest misbehaves.
    static const struct { long cap; const char* name; } needed[] = {
        {KVM_CAP_IRQCHIP, "IRQCHIP"},           {KVM_CAP_USER_MEMORY, "USER_MEMORY"},
        {KVM_CAP_PIT2, "PIT2"},                 {KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT"},
        {KVM_CAP_EXT_CPUID, "EXT_CPUID"},       {KVM_CAP_IOEVENTFD, "IOEVENTFD"},
        {KVM_CAP_IRQFD, "IRQFD"},               {KVM_CAP_SIGNAL_MSI, "SIGNAL_MSI"},
    };
    for (auto& n : needed)
        if (check_extension(n.cap) <= 0)
            throw UserError(path + " lacks the KVM capability " + n.name);
}

int Kvm::check_extension(long cap) const { return ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap); }

int Kvm::vcpu_mmap_size() const {
    return static_cast<int>(kvm_ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0ul, "GET_VCPU_MMAP_SIZE"));
}

std::vector<kvm_cpuid_entry2> Kvm::supported_cpuid() const {
    // The kernel says E2BIG until the buffer is large enough; grow until it fits.
    for (size_t n = 64; n <= 4096; n *= 2) {
        KvmList<KvmCpuidHeader, kvm_cpuid_entry2> list(n);
        list.header()->nent = static_cast<uint32_t>(n);
        if (::ioctl(fd_.get(), kKvmGetSupportedCpuid, list.buf.data()) == 0)
            return {list.entries(), list.entries() + list.header()->nent};
        if (errno != E2BIG) throw internal_error("KVM GET_SUPPORTED_CPUID failed");
    }
    throw InternalError("KVM GET_SUPPORTED_CPUID: too many entries");
}

bool Kvm::host_lacks_hw_virt() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("flags", 0) != 0) continue;
        std::istringstream words(line);
        std::string w;
        while (words >> w)
            if (w == "vmx" || w == "svm") return false;
        return true;
    }
    return false;  // no flags line: do not guess
}

Vm::Vm(const Kvm& kvm) {
    fd_ = Fd(static_cast<int>(kvm_ioctl(kvm.fd(), KVM_CREATE_VM, 0ul, "CREATE_VM")));
    // The TSS and identity map pages must sit in guest-physical space that is
    // not RAM; just below the 4 GiB BIOS area is where PC firmware leaves room.
    kvm_ioctl(fd(), KVM_SET_TSS_ADDR, 0xfffbd000ul, "SET_TSS_ADDR");
    uint64_t ident = 0xfffbc000;
    kvm_ioctl(fd(), KVM_SET_IDENTITY_MAP_ADDR, &ident, "SET_IDENTITY_MAP_ADDR");
    kvm_ioctl(fd(), KVM_CREATE_IRQCHIP, 0ul, "CREATE_IRQCHIP");
    kvm_pit_config pit{};
    kvm_ioctl(fd(), KVM_CREATE_PIT2, &pit, "CREATE_PIT2");
}

void Vm::set_memory(uint32_t slot, uint64_t gpa, uint64_t size, void* hva, uint32_t flags) {
    kvm_userspace_memory_region r{};
    r.slot = slot;
    r.flags = flags;
    r.guest_phys_addr = gpa;
    r.memory_size = size;
    r.userspace_addr = reinterpret_cast<uint64_t>(hva);
    kvm_ioctl(fd(), KVM_SET_USER_MEMORY_REGION, &r, "SET_USER_MEMORY_REGION");
}

void Vm::irq_line(uint32_t gsi, bool level) {
    kvm_irq_level l{};
    l.irq = gsi;
    l.level = level ? 1 : 0;
    kvm_ioctl(fd(), KVM_IRQ_LINE, &l, "IRQ_LINE");
}

void Vm::signal_msi(uint64_t address, uint32_t data) {
    kvm_msi m{};
    m.address_lo = static_cast<uint32_t>(address);
    m.address_hi = static_cast<uint32_t>(address >> 32);
    m.data = data;
    // 0 means the guest's APIC ignored it (for instance a bad destination):
    // the guest's own doing, not ours. Only -1 is a failure.
    if (ioctl(fd(), KVM_SIGNAL_MSI, &m) < 0)
        std::fprintf(stderr, "minivmm: KVM_SIGNAL_MSI: %s\n", std::strerror(errno));
}

void Vm::ioeventfd(uint64_t addr, uint32_t len, int fd, bool assign) {
    kvm_ioeventfd e{};
    e.addr = addr;
    e.len = len;
    e.fd = fd;
    e.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN;
    kvm_ioctl(fd_.get(), KVM_IOEVENTFD, &e, "IOEVENTFD");
}

void Vm::irqfd(int fd, uint32_t gsi, bool assign) {
    kvm_irqfd f{};
    f.fd = static_cast<uint32_t>(fd);
    f.gsi = gsi;
    f.flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN;
    kvm_ioctl(fd_.get(), KVM_IRQFD, &f, "IRQFD");
}

}  // namespace minivmm
