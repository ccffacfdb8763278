#include "vmm/vcpu.hpp"

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iterator>

#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/io_bus.hpp"
#include "vmm/kvm.hpp"
#include "vmm/layout.hpp"
#include "vmm/state_stream.hpp"
#include "vmm/stop.hpp"
#include "vmm/vcpu_pause.hpp"
#include "vmm/vcpu_state.hpp"

namespace minivmm {

namespace {

constexpr int kKickSignal = SIGUSR2;
thread_local kvm_run* t_run = nullptr;

// Setting immediate_exit in the handler closes the race where the kick lands
// just before KVM_RUN: KVM then returns EINTR at once instead of running on.
void on_kick(int) {
    if (t_run) t_run->immediate_exit = 1;
}

// A 32-bit local APIC register in KVM's copy of the APIC page.
uint32_t lapic_reg(const kvm_lapic_state& l, size_t off) {
    uint32_t v;
    std::memcpy(&v, l.regs + off, 4);
    return v;
}

// x86 control bits for long mode (Intel SDM vol. 3, 2.5 and 4.5).
constexpr uint64_t kCr0Pe = 1ull << 0, kCr0Et = 1ull << 4, kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kEferLme = 1ull << 8, kEferLma = 1ull << 10;
constexpr uint16_t kBootCs = 0x10, kBootDs = 0x18;  // the selectors the boot protocol names

kvm_segment flat_segment(uint16_t selector, bool code) {
    kvm_segment s{};
    s.base = 0;
    s.limit = 0xffffffff;
    s.selector = selector;
    s.type = code ? 0xb : 0x3;  // execute/read accessed, or read/write accessed
    s.present = 1;
    s.s = 1;
    s.g = 1;
    s.l = code ? 1 : 0;
    s.db = code ? 0 : 1;  // a 64-bit code segment must have D clear
    return s;
}

}  // namespace

void write_boot_page_tables(GuestMemory& mem) {
    auto* pml4 = mem.at<uint64_t[512]>(layout::kPml4);
    auto* pdpt = mem.at<uint64_t[512]>(layout::kPdpt);
    std::memset(pml4, 0, 4096);
    std::memset(pdpt, 0, 4096);
    (*pml4)[0] = layout::kPdpt | 0x3;  // present, writable
    for (uint64_t g = 0; g < 4; g++) {
        uint64_t pd_at = layout::kPd + g * 4096;
        (*pdpt)[g] = pd_at | 0x3;
        auto* pd = mem.at<uint64_t[512]>(pd_at);
        for (uint64_t i = 0; i < 512; i++) (*pd)[i] = ((g << 30) | (i << 21)) | 0x83;  // 2 MiB page
    }
    // GDT: null, null, then the boot code and data descriptors at 0x10/0x18.
    uint64_t gdt[4] = {0, 0, 0x00af9b000000ffffull, 0x00cf93000000ffffull};
    std::memcpy(mem.ptr(layout::kGdt, sizeof gdt), gdt, sizeof gdt);
}

void Vcpu::install_kick_handler() {
    struct sigaction sa {};
    sa.sa_handler = on_kick;
    sigemptyset(&sa.sa_mask);
    sigaction(kKickSignal, &sa, nullptr);  // no SA_RESTART: KVM_RUN must return
}

Vcpu::Vcpu(const Kvm& kvm, const Vm& vm, unsigned id, unsigned ncpus,
           const std::vector<kvm_cpuid_entry2>& cpuid)
    : id_(id) {
    fd_ = static_cast<int>(kvm_ioctl(vm.fd(), KVM_CREATE_VCPU, static_cast<unsigned long>(id), "CREATE_VCPU"));
    run_size_ = static_cast<size_t>(kvm.vcpu_mmap_size());
    void* p = ::mmap(nullptr, run_size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) throw internal_error("cannot map the kvm_run page of vCPU " + std::to_string(id));
    run_ = static_cast<kvm_run*>(p);
    auto given = set_cpuid(cpuid, ncpus, kvm.check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0);
    set_lapic_lines();
    set_msrs();
    // After CPUID: which MSRs a vCPU has follows from it.
    RealKvmFd vm_fd(vm.fd()), self(fd_);
    state_shape_ =
        std::make_unique<VcpuStateShape>(probe_vcpu_state(kvm_msr_index_list(kvm.fd()), given, vm_fd, self));
}

void Vcpu::save_state(state::Writer& out) const {
    RealKvmFd self(fd_);
    write_vcpu_state(out, get_vcpu_state(self, *state_shape_));
}

void Vcpu::load_state(state::Reader& in) {
    VcpuState s = read_vcpu_state(in);
    RealKvmFd self(fd_);
    set_vcpu_state(self, *state_shape_, s, in.what());
}

void Vcpu::set_msrs() {
    // What PC firmware leaves behind and Linux expects: MTRRs enabled with
    // write-back as the default type (with them off, Linux also skips PAT
    // setup), and fast string operations enabled.
    constexpr uint32_t kMtrrDefType = 0x2ff, kMiscEnable = 0x1a0;
    const kvm_msr_entry want[] = {{kMtrrDefType, 0, (1u << 11) | 6}, {kMiscEnable, 0, 1}};
    KvmList<KvmMsrsHeader, kvm_msr_entry> list(std::size(want));
    list.header()->nmsrs = static_cast<uint32_t>(std::size(want));
    std::copy(std::begin(want), std::end(want), list.entries());
    long n = kvm_ioctl(fd_, kKvmSetMsrs, list.buf.data(), "SET_MSRS");
    if (n != static_cast<long>(std::size(want)))
        throw InternalError("KVM SET_MSRS: set " + std::to_string(n) + " of " + std::to_string(std::size(want)) +
                        " boot MSRs");
}

Vcpu::~Vcpu() {
    if (run_) ::munmap(run_, run_size_);
    ::close(fd_);
}

std::vector<kvm_cpuid_entry2> Vcpu::set_cpuid(const std::vector<kvm_cpuid_entry2>& supported, unsigned ncpus,
                                              bool tsc_deadline) {
    KvmList<KvmCpuidHeader, kvm_cpuid_entry2> list(supported.size());
    list.header()->nent = static_cast<uint32_t>(supported.size());
    std::copy(supported.begin(), supported.end(), list.entries());
    for (uint32_t i = 0; i < list.header()->nent; i++) {
        auto& e = list.entries()[i];
        switch (e.function) {
            case 1:
                // Initial APIC ID and the logical-processor count the guest
                // uses to size its topology; bit 31 of ECX says "hypervisor".
                e.ebx = (e.ebx & 0x0000ffff) | (std::min(ncpus, 255u) << 16) | (id_ << 24);
                e.ecx |= 1u << 31;
                if (ncpus > 1) e.edx |= 1u << 28;  // HTT: the count above is meaningful
                // KVM emulates the TSC-deadline LAPIC timer but leaves it out
                // of the supported list (it needs the in-kernel LAPIC we
                // have). Without it Linux falls back to a calibrated LAPIC
                // timer, which goes badly wrong when the host is itself a VM.
                if (tsc_deadline) e.ecx |= 1u << 24;
                break;
            case 0xb:
            case 0x1f:
                // Extended topology: every vCPU is its own core; EDX is the x2APIC ID.
                e.edx = id_;
                break;
        }
    }
    kvm_ioctl(fd_, kKvmSetCpuid2, list.buf.data(), "SET_CPUID2");
    return {list.entries(), list.entries() + list.header()->nent};
}

void Vcpu::set_lapic_lines() {
    // LINT0 as ExtINT lets the 8259 reach the CPU during early boot (the
    // timer check); LINT1 as NMI is what the MADT's NMI entry promises.
    kvm_lapic_state lapic{};
    kvm_ioctl(fd_, KVM_GET_LAPIC, &lapic, "GET_LAPIC");
    auto set_lvt = [&](size_t off, uint32_t mode) {
        uint32_t v = (lapic_reg(lapic, off) & ~0x700u & ~(1u << 16)) | (mode << 8);
        std::memcpy(lapic.regs + off, &v, 4);
    };
    set_lvt(0x350, 7);  // LVT0: ExtINT
    set_lvt(0x360, 4);  // LVT1: NMI
    kvm_ioctl(fd_, KVM_SET_LAPIC, &lapic, "SET_LAPIC");
}

void Vcpu::setup_boot_cpu(GuestMemory& mem, uint64_t entry, uint64_t zero_page) {
    write_boot_page_tables(mem);

    kvm_sregs sregs{};
    kvm_ioctl(fd_, KVM_GET_SREGS, &sregs, "GET_SREGS");
    sregs.cs = flat_segment(kBootCs, true);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = flat_segment(kBootDs, false);
    sregs.gdt.base = layout::kGdt;
    sregs.gdt.limit = 4 * 8 - 1;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 |= kCr0Pe | kCr0Et | kCr0Pg;
    sregs.cr3 = layout::kPml4;
    sregs.cr4 |= kCr4Pae;
    sregs.efer |= kEferLme | kEferLma;
    kvm_ioctl(fd_, KVM_SET_SREGS, &sregs, "SET_SREGS");

    kvm_regs regs{};
    regs.rflags = 0x2;  // bit 1 is reserved-one; interrupts stay off until Linux is ready
    regs.rip = entry;
    regs.rsi = zero_page;  // the 64-bit protocol passes boot_params in RSI
    regs.rsp = layout::kBootStack;
    kvm_ioctl(fd_, KVM_SET_REGS, &regs, "SET_REGS");

    kvm_fpu fpu{};
    fpu.fcw = 0x37f;  // x87 and SSE state as after FNINIT, not all zeros
    fpu.mxcsr = 0x1f80;
    kvm_ioctl(fd_, KVM_SET_FPU, &fpu, "SET_FPU");
}

void Vcpu::kick() {
    if (running_) pthread_kill(thread_.load(), kKickSignal);
}

bool Vcpu::handle_io(IoBus& pio) {
    auto& io = run_->io;
    uint8_t* data = reinterpret_cast<uint8_t*>(run_) + io.data_offset;
    // String I/O (rep ins/outs) arrives as count back-to-back items. The data
    // area lies inside the kvm_run mapping, so bound it before touching it.
    if (io.data_offset + uint64_t(io.size) * io.count > run_size_) return false;
    for (uint32_t i = 0; i < io.count; i++, data += io.size) {
        if (io.direction == KVM_EXIT_IO_OUT)
            pio.write(io.port, data, io.size);
        else
            pio.read(io.port, data, io.size);
    }
    stats.io_exits++;
    return true;
}

void Vcpu::run(IoBus& pio, IoBus& mmio, Stop& stop) {
    // However run() ends (an exception included), Machine::run must see the
    // vCPU exited, or it would kick it forever.
    struct Exited {
        Vcpu& v;
        ~Exited() { v.running_ = false, v.exited_ = true; }
    } exited{*this};
    t_run = run_;
    thread_ = pthread_self();
    running_ = true;
    sigset_t kick;
    sigemptyset(&kick);
    sigaddset(&kick, kKickSignal);
    pthread_sigmask(SIG_UNBLOCK, &kick, nullptr);

    // The last exit was an I/O that KVM finishes only on the next KVM_RUN
    // (an IN's value into RAX, an MMIO read's into its register, RIP past
    // the instruction, the next round of a string I/O).
    bool unfinished = false;
    while (!stop.requested()) {
        // Checked after running_ is set: a pause requested before is seen
        // here, one requested after kicks this thread (immediate_exit).
        if (pause_ && pause_->wanted()) {
            if (!unfinished) {
                pause_->park(stop);
                continue;
            }
            // State read while parked must be whole (KVM's API: after an I/O
            // exit the guest's state is consistent only once KVM_RUN is
            // entered again). With immediate_exit KVM_RUN completes the I/O
            // and returns EINTR before running any guest instruction.
            run_->immediate_exit = 1;
        }
        if (state_wanted_.exchange(false)) std::fputs(state_line().c_str(), stderr);
        if (::ioctl(fd_, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                run_->immediate_exit = 0;
                unfinished = false;  // completed before KVM looked at immediate_exit or signals
                continue;
            }
            stop.request(2, "internal error: vCPU " + std::to_string(id_) + ": KVM_RUN failed: " + std::strerror(errno));
            break;
        }
        unfinished = run_->exit_reason == KVM_EXIT_IO || run_->exit_reason == KVM_EXIT_MMIO;
        switch (run_->exit_reason) {
            case KVM_EXIT_IO:
                if (handle_io(pio)) continue;
                break;
            case KVM_EXIT_MMIO:
                stats.mmio_exits++;
                if (run_->mmio.is_write)
                    mmio.write(run_->mmio.phys_addr, run_->mmio.data, run_->mmio.len);
                else
                    mmio.read(run_->mmio.phys_addr, run_->mmio.data, run_->mmio.len);
                continue;
            case KVM_EXIT_INTR:
                continue;
            case KVM_EXIT_SHUTDOWN:
                // A triple fault resets a PC, and it is Linux's last-resort
                // reboot; but Linux tries the ACPI reset register first, so a
                // triple fault is more often a guest crash: always say so.
                if (!stop.requested())
                    std::fprintf(stderr, "\r\nminivmm: vCPU %u: triple fault, guest reset\n%s", id_,
                                 dump_registers().c_str());
                stop.request(0, "guest reset (triple fault)");
                continue;
            case KVM_EXIT_SYSTEM_EVENT:
                if (run_->system_event.type == KVM_SYSTEM_EVENT_CRASH) break;
                stop.request(0, run_->system_event.type == KVM_SYSTEM_EVENT_RESET ? "guest reset"
                                                                                  : "guest powered off");
                continue;
        }
        // Anything else means the guest cannot go on: say where it stood.
        std::fprintf(stderr, "minivmm: vCPU %u: unrecoverable KVM exit %u\n%s", id_, run_->exit_reason,
                     dump_registers().c_str());
        stop.request(1, "vCPU " + std::to_string(id_) + " stopped on exit reason " +
                            std::to_string(run_->exit_reason));
        break;
    }
}

void Vcpu::request_state_line() {
    state_wanted_ = true;
    kick();
}

namespace {
// Highest vector set in one of the local APIC's 256-bit vector registers
// (ISR at 0x100, IRR at 0x200: eight 32-bit words 16 bytes apart), or -1.
int top_vector(const kvm_lapic_state& l, unsigned base) {
    for (int w = 7; w >= 0; w--) {
        if (uint32_t v = lapic_reg(l, base + 16 * w)) return w * 32 + 31 - __builtin_clz(v);
    }
    return -1;
}
}  // namespace

std::string Vcpu::state_line() const {
    kvm_regs r{};
    kvm_vcpu_events ev{};
    kvm_lapic_state lapic{};
    if (::ioctl(fd_, KVM_GET_REGS, &r) < 0 || ::ioctl(fd_, KVM_GET_VCPU_EVENTS, &ev) < 0 ||
        ::ioctl(fd_, KVM_GET_LAPIC, &lapic) < 0)
        return "minivmm: vCPU " + std::to_string(id_) + ": state unavailable\n";
    uint32_t tpr = lapic_reg(lapic, 0x80);
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "minivmm: vCPU %u: rip %016llx rsp %016llx IF=%u tpr %02x isr %d irr %d "
                  "injecting %d (vector %u) nmi %u/%u shadow %u\n",
                  id_, r.rip, r.rsp, unsigned(r.rflags >> 9) & 1, tpr & 0xff, top_vector(lapic, 0x100),
                  top_vector(lapic, 0x200), ev.interrupt.injected, ev.interrupt.nr, ev.nmi.injected, ev.nmi.pending,
                  ev.interrupt.shadow);
    return buf;
}

std::string Vcpu::dump_registers() const {
    kvm_regs r{};
    kvm_sregs s{};
    if (::ioctl(fd_, KVM_GET_REGS, &r) < 0 || ::ioctl(fd_, KVM_GET_SREGS, &s) < 0)
        return "  (registers unavailable)\n";
    char buf[1024];
    std::snprintf(buf, sizeof buf,
                  "  rip %016llx rsp %016llx rflags %08llx\n"
                  "  rax %016llx rbx %016llx rcx %016llx rdx %016llx\n"
                  "  rsi %016llx rdi %016llx rbp %016llx\n"
                  "  r8  %016llx r9  %016llx r10 %016llx r11 %016llx\n"
                  "  r12 %016llx r13 %016llx r14 %016llx r15 %016llx\n"
                  "  cr0 %016llx cr2 %016llx cr3 %016llx cr4 %016llx efer %016llx\n"
                  "  cs %04x (base %llx, l=%u) ss %04x\n",
                  r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9,
                  r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.cs.selector,
                  s.cs.base, s.cs.l, s.ss.selector);
    return buf;
}

}  // namespace minivmm
