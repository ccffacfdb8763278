#include "vmm/machine.hpp"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <system_error>

#include <cpuid.h>

#include "vmm/acpi.hpp"
#include "vmm/bzimage.hpp"
#include "vmm/console.hpp"
#include "vmm/error.hpp"
#include "vmm/layout.hpp"
#include "vmm/nic.hpp"
#include "vmm/seccomp.hpp"
#include "vmm/thread.hpp"
#include "vmm/thread_guard.hpp"
#include "virtio/net.hpp"
#include "virtio/virtio_pci.hpp"

namespace minivmm {

namespace {
// Closed until open(): threads wait at it (a mutex and condition variable,
// so a filtered thread needs only futex).
class Gate {
public:
    void wait() {
        std::unique_lock g(mu_);
        cv_.wait(g, [this] { return open_; });
    }
    void open() {
        {
            std::lock_guard g(mu_);
            open_ = true;
        }
        cv_.notify_all();
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool open_ = false;
};

uint64_t host_ram() { return uint64_t(sysconf(_SC_PHYS_PAGES)) * uint64_t(sysconf(_SC_PAGESIZE)); }

std::string mib(uint64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

// Signals for the VMM as a whole are taken synchronously by the thread in
// run(). Blocked before any thread starts: threads inherit the mask, so none
// of them gets one and dies of it.
bool block_vm_signals() {
    sigset_t sigs;
    sigemptyset(&sigs);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2}) sigaddset(&sigs, s);
    if (int err = pthread_sigmask(SIG_BLOCK, &sigs, nullptr)) throw internal_error("pthread_sigmask", err);
    return true;
}

uint64_t checked_ram(const Options& o) {
    if (o.mem < kMinMem) throw UserError("--mem " + mib(o.mem) + " is too small (minimum " + mib(kMinMem) + ")");
    // Memory is lazily backed, but a guest promised more than the host has
    // will be killed by the OOM killer later, far from the cause: refuse now.
    if (o.mem > host_ram())
        throw UserError("--mem " + mib(o.mem) + " is more than this host's " + mib(host_ram()) + " of RAM");
    if (o.mem & 0xfff) throw UserError("--mem must be a multiple of 4 KiB");
    return o.mem;
}
}  // namespace

// The tables, kernel, initrd and command line go into RAM before KVM is
// opened: an initrd that does not fit is the user's to fix, not KVM's.
BootPlan Machine::load_guest(const BootFiles& files) {
    uint64_t rsdp = build_acpi(mem_, opts_.cpus);
    double t0 = ms_since_vmm_start();
    BootPlan plan = load_linux(mem_, files.kernel, files.initrd, cmdline_, rsdp);
    load_ms_ = ms_since_vmm_start() - t0;
    return plan;
}

namespace {
std::string mib1(uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / (1 << 20));
    return buf;
}
}  // namespace

// What the kernel file was, how it is booted, and what that cost.
void Machine::print_boot(const KernelImage& k) const {
    const setup_header& h = k.hdr;
    const char* via = k.mode == BootMode::Direct ? "direct" : "decompressor";
    std::fprintf(stderr, "minivmm: kernel: %s, boot protocol %u.%02u%s, %s boot, 64-bit entry at %#llx\n",
                 k.from_bzimage ? "bzImage" : "vmlinux ELF", h.version >> 8, h.version & 0xff,
                 k.from_bzimage ? "" : " (header made by minivmm)", via, (unsigned long long)plan_.entry);
    std::fprintf(stderr, "minivmm: boot: kernel file read (%s) in %.0f ms\n", mib1(k.file_bytes).c_str(), k.read_ms);
    if (k.mode == BootMode::Direct && k.from_bzimage)
        std::fprintf(stderr, "minivmm: boot: kernel decompressed (%s, %s -> %s) in %.0f ms\n",
                     compression_name(k.compression), mib1(k.payload_bytes).c_str(), mib1(k.elf_file.size()).c_str(),
                     k.prepare_ms);
    uint64_t size = k.mode == BootMode::Direct ? k.elf.end - k.elf.start : k.protected_mode.size();
    std::fprintf(stderr, "minivmm: boot: kernel and initrd loaded (%s, %s at %#llx) in %.0f ms\n",
                 k.mode == BootMode::Direct ? "ELF segments" : "bzImage for its decompressor", mib1(size).c_str(),
                 (unsigned long long)(k.mode == BootMode::Direct ? k.elf.start : layout::kKernel),
                 load_ms_ + (k.mode == BootMode::Direct && k.from_bzimage ? 0 : k.prepare_ms));
}

const Kvm& Machine::check_cpu_limit() const {
    int max = kvm_.check_extension(KVM_CAP_MAX_VCPUS);
    if (max <= 0) max = kvm_.check_extension(KVM_CAP_NR_VCPUS);
    unsigned limit = max > 0 ? unsigned(max) : 1;
    if (opts_.cpus > limit)
        throw UserError("--cpus " + std::to_string(opts_.cpus) + " is more than this host's KVM allows (" +
                        std::to_string(limit) + ")");
    return kvm_;
}

Machine::Machine(const Options& opts, const BootFiles* files, state::RecordReader* restore)
    : opts_(opts),
      signals_blocked_(block_vm_signals()),
      confinement_(opts.user, opts.jail),
      mem_(checked_ram(opts)),
      cmdline_(guest_cmdline(opts)),
      plan_(files ? load_guest(*files) : BootPlan{}),
      nic_hosts_(open_nic_hosts()),
      api_(opts.api_sock ? std::make_unique<ApiSocket>(*opts.api_sock) : nullptr),
      vm_(check_cpu_limit()) {
    // Every host resource is open: give up what is left before any thread
    // starts, so every thread inherits the loss.
    confinement_.enter();
    uint32_t slot = 0;
    for (const auto& r : mem_.regions()) vm_.set_memory(slot++, r.gpa, r.size, r.hva);
    if (opts.verbose) {
        std::fprintf(stderr, "minivmm: %u vCPU(s), %s RAM:", opts.cpus, mib(opts.mem).c_str());
        for (const auto& r : mem_.regions())
            std::fprintf(stderr, " [%#llx-%#llx)", (unsigned long long)r.gpa, (unsigned long long)(r.gpa + r.size));
        std::fputc('\n', stderr);
        if (files) print_boot(files->kernel);
        if (plan_.initrd_size)
            std::fprintf(stderr, "minivmm: initrd %llu bytes at %#llx\n", (unsigned long long)plan_.initrd_size,
                         (unsigned long long)plan_.initrd_gpa);
        std::fprintf(stderr, "minivmm: kernel command line: %s\n", cmdline_.c_str());
        std::fprintf(stderr, "minivmm: confined: %s\n", confinement_.describe().c_str());
    }

    serial_ = std::make_unique<Serial>([this](bool level) { vm_.irq_line(Serial::kCom1Irq, level); },
                                       STDOUT_FILENO);
    pio_.add(Serial::kCom1, 8, serial_.get());
    pio_.add(AcpiPorts::kBase, AcpiPorts::kLen, &pm_);
    pio_.add(I8042Reset::kCommand, 1, &i8042_);
    mmio_.add(BootMarker::kGpa, 1, &boot_marker_);
    if (opts.verbose) serial_->on_output([this] { phases_.console_output(); });
    pio_.add(PciBus::kConfigPort, PciBus::kConfigLen, &pci_);
    mmio_.add(PciBus::kWindowStart, PciBus::kWindowEnd - PciBus::kWindowStart, &pci_.mmio());
    add_devices();
    // A migrating guest still runs at the source, on the same taps if the
    // source is on this host: ours wait until its state arrives (load_state).
    if (opts.incoming)
        for (const auto& d : devices_) d->device().set_host_attached(false);

    auto cpuid = kvm_.supported_cpuid();
    for (unsigned i = 0; i < opts.cpus; i++) vcpus_.push_back(std::make_unique<Vcpu>(kvm_, vm_, i, opts.cpus, cpuid));
    if (restore) {
        load_state(*restore);
        if (opts.verbose) std::fprintf(stderr, "minivmm: restored: the guest continues where it was saved\n");
    } else if (files) {
        vcpus_[0]->setup_boot_cpu(mem_, plan_.entry, layout::kZeroPage);
    } else {
        throw InternalError("a machine needs a kernel or a saved state");
    }
}

std::vector<NicHost> Machine::open_nic_hosts() const {
    std::vector<NicHost> hosts;
    bool shared = opts_.incoming.has_value();  // the source may run on the same taps
    for (size_t i = 0; i < opts_.nets.size(); i++) hosts.push_back(open_nic_host(opts_.nets[i], unsigned(i), shared));
    return hosts;
}

// The guest's PCI devices, in slot order. A new kind of device is its own
// files and one line here.
void Machine::add_devices() {
    for (NicHost& h : nic_hosts_) add_virtio(make_nic(mem_, std::move(h)));
    nic_hosts_.clear();
}

void Machine::add_virtio(std::unique_ptr<VirtioDevice> dev) {
    std::string label = dev->label(), describe = opts_.verbose ? dev->describe() : "";
    VirtioPci::KvmHooks hooks{vm_, router_};
    auto pci = std::make_shared<VirtioPci>(
        std::move(dev), [this](const MsiMessage& m) { vm_.signal_msi(m.address, m.data); }, &hooks);
    unsigned slot = pci_.add(pci);
    devices_.push_back(pci);
    if (opts_.verbose)
        std::fprintf(stderr, "minivmm: %s: PCI 00:%02x.0, %s\n", label.c_str(), slot, describe.c_str());
}

void Machine::print_stats() const {
    for (const auto& d : devices_) d->device().print_stats(stderr);
    // With vhost, kicks and interrupts bypass minivmm: these stay flat under traffic.
    uint64_t io = 0, mmio = 0;
    for (const auto& v : vcpus_) io += v->stats.io_exits, mmio += v->stats.mmio_exits;
    std::fprintf(stderr, "minivmm: vCPU exits to minivmm: %llu port I/O, %llu MMIO\n", (unsigned long long)io,
                 (unsigned long long)mmio);
}

Machine::~Machine() = default;

int Machine::run() {
    Vcpu::install_kick_handler();
    start_loaded_devices();

    {
        Console console(*serial_, stop_.fd());
        // The guest's first instruction waits for every thread's filter,
        // this one's included (installed once the threads are started).
        Gate filtered;
        std::vector<Thread> threads;
        // Set as a vCPU thread ends, however it ends (its filter refused too).
        std::unique_ptr<std::atomic<bool>[]> ended(new std::atomic<bool>[vcpus_.size()]{});
        Thread nudger;
        Thread api = start_api([&filtered] { filtered.wait(); });
        try {
            for (size_t i = 0; i < vcpus_.size(); i++)
                threads.emplace_back([this, i, &filtered, &ended] {
                    std::string name = "vCPU " + std::to_string(i);
                    guarded(name, [&] {
                        enter_thread(ThreadKind::Vcpu, name);
                        filtered.wait();
                        if (i == 0) phases_.guest_starting();
                        vcpus_[i]->run(pio_, mmio_, stop_);
                    });
                    ended[i] = true;
                });
            if (nested_host())
                nudger = Thread([this] {
                    guarded("vCPU nudger", [this] {
                        enter_thread(ThreadKind::Nudger, "vCPU nudger");
                        nudge_vcpus();
                    });
                });
        } catch (const std::system_error& e) {
            // No thread for the next vCPU (a task limit): stop the ones running.
            stop_.request(2, "internal error: cannot start vCPU " + std::to_string(threads.size()) + "'s thread: " +
                             e.code().message());
        }
        guarded("main", [] { enter_thread(ThreadKind::Main, "main"); });  // a failure stops the VM
        filtered.open();
        wait_for_stop();
        pause_.release_for_stop();
        if (api.joinable()) api.join();
        if (nudger.joinable()) nudger.join();
        // A vCPU may sit in KVM_RUN for as long as the guest halts: kick until
        // each has noticed (a kick can land before it entered KVM_RUN).
        for (size_t i = 0; i < threads.size(); i++) {
            while (!ended[i]) {
                vcpus_[i]->kick();
                usleep(1000);
            }
            threads[i].join();
        }
    }
    if (stop_.status() != 0 || opts_.verbose || by_signal_)
        std::fprintf(stderr, "\r\nminivmm: %s\n", stop_.why().c_str());
    if (opts_.stats) print_stats();
    return stop_.status();
}

bool Machine::nested_host() {
    // CPUID.1:ECX bit 31 is set by every hypervisor for its guests: here it
    // means minivmm's KVM is itself virtual (nested, emulated or PVM).
    unsigned a, b, c, d;
    __cpuid(1, a, b, c, d);
    return c & (1u << 31);
}

void Machine::nudge_vcpus() {
    // Under nested virtualization (KVM in an emulated or virtual host, as in
    // our test rig) a KVM kick that should pull a running vCPU out of guest
    // mode to take an interrupt has been seen to get lost: the guest then
    // spins for minutes until something else makes it exit. An exit every
    // kNudgeMs bounds that delay (about 50 exits a second). On hardware it
    // would only hide such a bug, so run() starts this on nested hosts only.
    constexpr int kNudgeMs = 20;
    pollfd p{stop_.fd(), POLLIN, 0};
    while (!stop_.requested()) {
        if (poll(&p, 1, kNudgeMs) != 0) continue;
        for (auto& v : vcpus_) v->kick();
    }
}

void Machine::wait_for_stop() {
    sigset_t sigs;
    sigemptyset(&sigs);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGUSR1}) sigaddset(&sigs, s);
    // Without it Ctrl-C and SIGTERM would never be seen: stop rather than run
    // a VM nothing can stop.
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    if (sfd < 0) {
        stop_.request(2, "internal error: signalfd: " + std::string(std::strerror(errno)));
        return;
    }
    pollfd fds[2] = {{stop_.fd(), POLLIN, 0}, {sfd, POLLIN, 0}};
    while (!stop_.requested()) {
        if (poll(fds, 2, -1) < 0) continue;
        signalfd_siginfo si{};
        if (fds[1].revents && ::read(sfd, &si, sizeof si) == sizeof si) {
            if (si.ssi_signo == SIGUSR1) {
                print_stats();
                for (auto& v : vcpus_) v->request_state_line();
                continue;
            }
            stop_.request(0, std::string("stopped by SIG") + sigabbrev_np(static_cast<int>(si.ssi_signo)));
            by_signal_ = true;
        }
    }
    ::close(sfd);
}

}  // namespace minivmm
