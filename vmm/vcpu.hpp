// A virtual CPU: its KVM fd, its kvm_run page, and the loop that serves exits.
#pragma once
#include <linux/kvm.h>
#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace minivmm {

class Kvm;
class Vm;
class IoBus;
class Stop;
class GuestMemory;
class VcpuPause;
struct VcpuStateShape;
namespace state {
class Writer;
class Reader;
}  // namespace state

struct VcpuStats {
    std::atomic<uint64_t> io_exits{0}, mmio_exits{0};
};

class Vcpu {
public:
    Vcpu(const Kvm& kvm, const Vm& vm, unsigned id, unsigned ncpus,
         const std::vector<kvm_cpuid_entry2>& cpuid);
    ~Vcpu();
    Vcpu(const Vcpu&) = delete;
    Vcpu& operator=(const Vcpu&) = delete;

    // The boot CPU enters the kernel's 64-bit entry directly: long mode,
    // identity-mapped page tables and the boot GDT the protocol asks for.
    // Not the 16-bit setup code: that needs real mode, which KVM emulates
    // slowly on PVM and nested hosts, and it would only ask a BIOS we do not
    // have for the e820 map we write into the zero page ourselves.
    // Application processors wait in KVM for the guest's INIT/SIPI.
    void setup_boot_cpu(GuestMemory& mem, uint64_t entry, uint64_t zero_page);

    // Runs until stop is requested; exits the guest cannot recover from
    // request a stop with status 1 after printing the registers.
    void run(IoBus& pio, IoBus& mmio, Stop& stop);
    // From another thread: make run() return to check for stop promptly.
    void kick();
    bool exited() const { return exited_; }
    std::string dump_registers() const;
    // From another thread: the vCPU prints one line of where the guest
    // stands (RIP, interrupt flag, pending and in-service vectors) at its next
    // exit. For a guest that has stopped making progress (SIGUSR1).
    void request_state_line();
    // Before run(): where it parks when asked to pause (vcpu_pause.hpp).
    void attach_pause(VcpuPause* p) { pause_ = p; }
    // Its KVM state (vcpu_state.hpp). save: while parked (run() finishes a
    // half-done I/O exit before it parks) or before it first runs; load:
    // before it first runs. load throws state::Error on bad or refused state.
    void save_state(state::Writer& out) const;
    void load_state(state::Reader& in);
    VcpuStats stats;

    static void install_kick_handler();

private:
    // Returns the table it gave KVM.
    std::vector<kvm_cpuid_entry2> set_cpuid(const std::vector<kvm_cpuid_entry2>& supported, unsigned ncpus,
                                            bool tsc_deadline);
    void set_lapic_lines();
    void set_msrs();
    bool handle_io(IoBus& pio);
    std::string state_line() const;

    unsigned id_;
    int fd_;
    kvm_run* run_ = nullptr;
    size_t run_size_ = 0;
    std::atomic<pthread_t> thread_{};
    std::atomic<bool> running_{false};
    std::atomic<bool> exited_{false};
    std::atomic<bool> state_wanted_{false};
    VcpuPause* pause_ = nullptr;
    std::unique_ptr<VcpuStateShape> state_shape_;  // what its saved state holds, found as it is made
};

// Writes the 4 GiB identity map (2 MiB pages) and the boot GDT into low RAM.
void write_boot_page_tables(GuestMemory& mem);

}  // namespace minivmm
