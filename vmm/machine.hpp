// The whole PC: KVM VM, RAM, the kernel loaded into it, legacy devices, vCPUs.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "vmm/acpi_pm.hpp"
#include "vmm/bzimage.hpp"
#include "vmm/cli.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/io_bus.hpp"
#include "vmm/kvm.hpp"
#include "vmm/gsi_router.hpp"
#include "vmm/pci.hpp"
#include "vmm/serial.hpp"
#include "vmm/stop.hpp"
#include "vmm/vcpu.hpp"

namespace minivmm {

class Machine {
public:
    // Builds everything and loads the kernel; throws UserError on bad input.
    Machine(const Options& opts, const Kvm& kvm, const BootFiles& files);
    ~Machine();
    // Runs the guest until it powers off, resets, fails, or a signal stops it.
    // Returns minivmm's exit status.
    int run();

private:
    void check_limits(const Kvm& kvm) const;
    void add_nics();
    void wait_for_stop();
    void nudge_vcpus();
    void print_stats() const;

    const Options& opts_;
    bool by_signal_ = false;
    Stop stop_;
    Vm vm_;
    GuestMemory mem_;
    IoBus pio_, mmio_;
    std::unique_ptr<Serial> serial_;
    AcpiPm pm_{stop_};
    I8042Reset i8042_{stop_};
    GsiRouter router_{vm_};  // before the PCI devices: they return routes as they go
    PciBus pci_;
    // After mem_: NICs stop their datapath threads before RAM goes away.
    struct Nic {
        std::shared_ptr<class VirtioPci> pci;
        class VirtioNet* net;
        unsigned slot;
    };
    std::vector<Nic> nics_;
    std::vector<std::unique_ptr<Vcpu>> vcpus_;
};

}  // namespace minivmm
