// The whole PC: KVM VM, RAM, the kernel loaded into it, legacy devices, vCPUs.
#pragma once
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "vmm/acpi_pm.hpp"
#include "vmm/api_protocol.hpp"
#include "vmm/api_socket.hpp"
#include "vmm/boot_phases.hpp"
#include "vmm/bzimage.hpp"
#include "vmm/cli.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/io_bus.hpp"
#include "vmm/kvm.hpp"
#include "vmm/machine_shape.hpp"
#include "vmm/ram_state.hpp"
#include "vmm/state_records.hpp"
#include "vmm/gsi_router.hpp"
#include "vmm/pci.hpp"
#include "vmm/privileges.hpp"
#include "vmm/serial.hpp"
#include "vmm/stop.hpp"
#include "vmm/thread.hpp"
#include "vmm/thread_guard.hpp"
#include "vmm/vcpu.hpp"
#include "vmm/vcpu_pause.hpp"

namespace minivmm {

struct NicHost;
class VirtioDevice;
class VirtioPci;

class Machine : private ApiTarget {
public:
    // Builds everything and loads the kernel; throws UserError on bad input.
    // What the host provides without KVM (memory, the guest's image in it,
    // NIC ports, vhost) is checked and opened first, /dev/kvm last: a user on
    // a host without KVM hears of their own mistakes first.
    // Without files, the machine continues a saved one instead: restore is
    // the reader of its state, past its shape (which the caller checked
    // against shape(opts)); throws state::Error if the rest is bad.
    Machine(const Options& opts, const BootFiles* files, state::RecordReader* restore = nullptr);
    // The shape (vmm/machine_shape.hpp) a machine built from opts has.
    static state::MachineShape shape(const Options& opts);
    ~Machine();
    // Runs the guest until it powers off, resets, fails, or a signal stops it.
    // Returns minivmm's exit status.
    int run();

private:
    BootPlan load_guest(const BootFiles& files);
    std::vector<NicHost> open_nic_hosts() const;
    const Kvm& check_cpu_limit() const;
    void add_devices();
    void add_virtio(std::unique_ptr<VirtioDevice> dev);
    void wait_for_stop();
    static bool nested_host();
    void nudge_vcpus();
    void print_stats() const;
    void print_boot(const KernelImage& k) const;

    // The control socket (api_machine.cpp). start_api() runs as the guest
    // starts, before the vCPU threads: the API thread waits for
    // wait_filtered() as they do.
    Thread start_api(const std::function<void()>& wait_filtered);
    nlohmann::ordered_json status() override;
    nlohmann::ordered_json stats(const std::string& nic) override;
    nlohmann::ordered_json pause() override;
    nlohmann::ordered_json resume() override;
    nlohmann::ordered_json quit() override;
    nlohmann::ordered_json snapshot(Fd file, const std::string& name, bool stop) override;
    nlohmann::ordered_json migrate(Fd conn, const std::string& uri) override;  // machine_migration.cpp

    // Saved state (machine_state.cpp): the whole machine, from the vCPUs
    // paused and the devices quiesced; and into a machine just built.
    state::RamCounts save_state(state::RecordWriter& w);
    void save_sections(state::RecordWriter& w);  // everything but RAM, then End
    // The guest held still for saving: every vCPU parked (unless already
    // paused) and every device quiesced; returns whether this paused the
    // vCPUs. A failure is undone before it is thrown. thaw() resumes the
    // devices, and the vCPUs if paused_here.
    bool freeze();
    void thaw(bool paused_here);
    void load_state(state::RecordReader& r);
    // After a load, as the guest starts (for a migration, only on the
    // source's go, so nothing the guest queued leaves from here before):
    // each device's queues kicked and vectors raised once, and each NIC
    // announcing the guest, which the network has not seen here yet.
    void start_loaded_devices();
    bool loaded_ = false;

    // Members are built in the order they are declared: this is the order
    // of setting up, and its reverse is the order of tearing down.
    const Options& opts_;
    bool signals_blocked_;
    bool by_signal_ = false;
    Stop stop_;
    VcpuPause pause_;                                // the control socket's pause
    std::chrono::steady_clock::time_point started_;  // the guest's start, for status
    // A thread that fails (an ioctl, a thread's own bug) stops the VM with one
    // line and status 2; the terminal is restored as for any other stop. One
    // that fails while the VM is stopping anyway is still said.
    FatalHandlerScope fatal_{[this](const std::string& line) {
        if (!stop_.request(2, "internal error: " + line))
            std::fprintf(stderr, "\r\nminivmm: internal error while stopping: %s\n", line.c_str());
    }};
    Confinement confinement_;  // checked first, entered once KVM is open
    GuestMemory mem_;
    std::string cmdline_;
    double load_ms_ = 0;  // copying the kernel and initrd into RAM, for --verbose
    BootPlan plan_;
    std::vector<NicHost> nic_hosts_;  // ports and vhost, until add_devices() gives them to NICs
    std::unique_ptr<ApiSocket> api_;  // --api-sock, made while the host's paths are in reach
    Kvm kvm_;                         // the first use of /dev/kvm
    Vm vm_;
    IoBus pio_, mmio_;
    std::unique_ptr<Serial> serial_;
    AcpiPm pm_{stop_};
    I8042Reset i8042_{stop_};
    BootPhases phases_{opts_.verbose};
    BootMarker boot_marker_{phases_};
    GsiRouter router_{vm_};  // before the PCI devices: they return routes as they go
    PciBus pci_;
    // After mem_: devices stop their datapath threads before RAM goes away.
    std::vector<std::shared_ptr<VirtioPci>> devices_;
    std::vector<std::unique_ptr<Vcpu>> vcpus_;
};

}  // namespace minivmm
