// The vCPU and VM state against a real KVM: state set on one VM, saved,
// loaded into a fresh VM and saved again reads the same (what runs on,
// the TSC, kvmclock and the PIT's load time, only forward and boundedly);
// a vCPU parked by a pause has finished the I/O exit it was on; saving
// works under the API thread's seccomp filter, loading does not.
//
// Needs /dev/kvm, so it runs only with MINIVMM_TEST_KVM=1, which
// tests/integration/test_machine.py sets wherever it runs: on this machine
// when the KVM probe finds a KVM that runs VMs (PVM will do), else in the
// emulated outer host. Without the variable each case reports SKIPPED (not
// counted as passed); with it and no usable KVM, each case fails.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>

#include "vmm/guest_memory.hpp"
#include "vmm/io_bus.hpp"
#include "vmm/kvm.hpp"
#include "vmm/layout.hpp"
#include "vmm/seccomp.hpp"
#include "vmm/state_stream.hpp"
#include "vmm/stop.hpp"
#include "vmm/vcpu.hpp"
#include "vmm/vcpu_pause.hpp"
#include "vmm/vcpu_state.hpp"
#include "vmm/vm_state.hpp"

using namespace minivmm;

namespace {

#define NEED_KVM()                                                                                        \
    do {                                                                                                  \
        const char* v = std::getenv("MINIVMM_TEST_KVM");                                                  \
        if (!v || std::string(v) != "1")                                                                  \
            GTEST_SKIP() << "needs /dev/kvm: tests/integration/test_machine.py runs it (MINIVMM_TEST_KVM=1)"; \
    } while (0)

constexpr uint64_t kEntry = layout::kKernel;
constexpr uint32_t kMsrTsc = 0x10, kMsrTscDeadline = 0x6e0;
constexpr uint32_t kMsrStar = 0xc0000081, kMsrLstar = 0xc0000082, kMsrKernelGsBase = 0xc0000102;
constexpr uint32_t kMsrSysenterCs = 0x174, kMsrPat = 0x277, kMsrKvmSystemTime = 0x4b564d01;
constexpr uint32_t kMsrKvmSystemTimeOld = 0x12;

// A VM as Machine makes one: RAM, vCPUs with minivmm's CPUID and boot MSRs,
// the boot CPU in long mode at kEntry.
struct Rig {
    Kvm kvm;
    Vm vm{kvm};
    GuestMemory mem{64 << 20};
    std::vector<std::unique_ptr<Vcpu>> vcpus;
    explicit Rig(unsigned n, const std::vector<uint8_t>& code = {0xf4, 0xeb, 0xfd}) {  // hlt; jmp back
        uint32_t slot = 0;
        for (const auto& r : mem.regions()) vm.set_memory(slot++, r.gpa, r.size, r.hva);
        auto cpuid = kvm.supported_cpuid();
        for (unsigned i = 0; i < n; i++) vcpus.push_back(std::make_unique<Vcpu>(kvm, vm, i, n, cpuid));
        std::memcpy(mem.ptr(kEntry, code.size()), code.data(), code.size());
        vcpus[0]->setup_boot_cpu(mem, kEntry, layout::kZeroPage);
    }
};

std::vector<uint8_t> save(const Vcpu& v) {
    state::Writer w;
    v.save_state(w);
    return w.take();
}
std::vector<uint8_t> save(const Vm& vm) {
    state::Writer w;
    vm.save_state(w);
    return w.take();
}
void load(Vcpu& v, const std::vector<uint8_t>& b) {
    state::Reader r(b, "vCPU");
    v.load_state(r);
}
void load(Vm& vm, const std::vector<uint8_t>& b) {
    state::Reader r(b, "VM");
    vm.load_state(r);
}
VcpuState parse(const std::vector<uint8_t>& b) {
    state::Reader r(b, "vCPU");
    return read_vcpu_state(r);
}
std::vector<uint8_t> bytes(const VcpuState& s) {
    state::Writer w;
    write_vcpu_state(w, s);
    return w.take();
}

kvm_msr_entry* msr(VcpuState& s, uint32_t index) {
    for (auto& m : s.msrs)
        if (m.index == index) return &m;
    return nullptr;
}

void set_lapic_reg(kvm_lapic_state& l, size_t off, uint32_t v) { std::memcpy(l.regs + off, &v, 4); }

// Where two byte forms first differ, for a failure's message.
std::string first_difference(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
    size_t i = 0;
    while (i < a.size() && i < b.size() && a[i] == b[i]) i++;
    if (i == a.size() && i == b.size()) return "equal";
    return "sizes " + std::to_string(a.size()) + " and " + std::to_string(b.size()) + ", first difference at byte " +
           std::to_string(i);
}
#define EXPECT_SAME_BYTES(a, b)                                        \
    do {                                                               \
        auto x_ = (a), y_ = (b);                                       \
        EXPECT_TRUE(x_ == y_) << first_difference(x_, y_);             \
    } while (0)

// What runs on while a vCPU is not in KVM_RUN: its TSC, checked to have
// gone forward by less than a generous bound, then taken out of the bytes.
std::vector<uint8_t> timeless(VcpuState s, uint64_t tsc_before) {
    kvm_msr_entry* tsc = msr(s, kMsrTsc);
    EXPECT_NE(tsc, nullptr) << "IA32_TSC is not among the saved MSRs";
    if (tsc) {
        // Forward, or back by less than KVM's one-second window: it takes a
        // TSC written within a second of where the last write's has got to
        // (here also the vCPU's creation, on kernels before 6.x) as meant to
        // synchronize, and keeps that timeline. PVM keeps the host's TSC.
        EXPECT_GE(tsc->data + (1ull << 33), tsc_before);
        EXPECT_LT(int64_t(tsc->data - tsc_before), int64_t(1) << 42) << "the TSC moved by more than an hour's worth";
        tsc->data = 0;
    }
    return bytes(s);
}

// The state a guest could have made: registers, SSE, XCR0, MSRs, a LAPIC
// in TSC-deadline mode with a deadline far off, a debug breakpoint, an NMI
// pending, the CPU halted.
VcpuState dressed(VcpuState s) {
    s.regs.rax = 0x1122334455667788;
    s.regs.r15 = 0x0f0f0f0f0f0f0f0f;
    s.regs.rflags = 0x202;
    s.sregs.cr2 = 0xdeadb000;
    if (!s.xsave.empty()) {
        for (int i = 0; i < 16; i++) s.xsave[160 + size_t(i)] = uint8_t(0xa0 + i);  // XMM0
        s.xsave[512] |= 2;                                                            // XSTATE_BV: SSE in use
    }
    if (s.xcrs && s.xcrs->nr_xcrs >= 1) s.xcrs->xcrs[0].value |= 3;  // XCR0: x87 and SSE
    struct {
        uint32_t index;
        uint64_t value;
    } want[] = {{kMsrStar, 0x0023001000000000},
                {kMsrLstar, 0xffffffff81000000},
                {kMsrKernelGsBase, 0xffff888000100000},
                {kMsrSysenterCs, 0x10},
                {kMsrPat, 0x0007040600070406},
                {kMsrKvmSystemTime, 0x5000 | 1},
                {kMsrKvmSystemTimeOld, 0x5000 | 1}};  // KVM keeps one value for both
    for (auto& w : want) {
        kvm_msr_entry* m = msr(s, w.index);
        EXPECT_NE(m, nullptr) << std::hex << "MSR " << w.index << " is not among the saved MSRs";
        if (m) m->data = w.value;
    }
    set_lapic_reg(s.lapic, 0x80, 0x20);                       // TPR
    set_lapic_reg(s.lapic, 0xa0, 0x20);                       // PPR, which KVM derives from it
    s.sregs.cr8 = 2;                                          // CR8, the TPR's upper bits
    set_lapic_reg(s.lapic, 0x320, 0xec | (2u << 17));         // LVT timer: vector 0xec, TSC-deadline mode
    kvm_msr_entry* tsc = msr(s, kMsrTsc);
    kvm_msr_entry* deadline = msr(s, kMsrTscDeadline);
    EXPECT_NE(deadline, nullptr) << "TSC_DEADLINE is not among the saved MSRs";
    if (tsc && deadline) deadline->data = tsc->data + (1ull << 50);  // years away: it never fires here
    if (s.debugregs) {
        s.debugregs->db[0] = 0x400000;
        s.debugregs->dr7 = 0x400 | 2;  // G0
    }
    s.events.nmi.pending = 1;
    s.mp_state.mp_state = KVM_MP_STATE_HALTED;
    return s;
}

}  // namespace

TEST(KvmState, RoundTripIntoAFreshVm) {
    NEED_KVM();
    Rig a(2);
    // Dress vCPU 0 and load it back: what was set is what is read.
    VcpuState want = dressed(parse(save(*a.vcpus[0])));
    uint64_t tsc_want = msr(want, kMsrTsc)->data;
    load(*a.vcpus[0], bytes(want));
    VcpuState got = parse(save(*a.vcpus[0]));
    ASSERT_EQ(got.msrs.size(), want.msrs.size());
    for (size_t i = 0; i < want.msrs.size(); i++)
        if (want.msrs[i].index != kMsrTsc) {
            EXPECT_EQ(got.msrs[i].data, want.msrs[i].data) << std::hex << "MSR " << want.msrs[i].index;
        }
    EXPECT_EQ(got.regs.rax, want.regs.rax);
    EXPECT_EQ(got.mp_state.mp_state, uint32_t(KVM_MP_STATE_HALTED));
    EXPECT_EQ(got.events.nmi.pending, 1);
    EXPECT_SAME_BYTES(timeless(got, tsc_want), timeless(want, tsc_want));

    std::vector<uint8_t> v0 = save(*a.vcpus[0]), v1 = save(*a.vcpus[1]), vm = save(a.vm);
    VcpuState s0 = parse(v0), s1 = parse(v1);
    EXPECT_EQ(s1.mp_state.mp_state, uint32_t(KVM_MP_STATE_UNINITIALIZED));  // an AP waiting for INIT/SIPI

    // Into a fresh VM, not set up for boot: everything comes from the state.
    Rig b(2, {});
    load(*b.vcpus[0], v0);
    load(*b.vcpus[1], v1);
    load(b.vm, vm);
    VcpuState t0 = parse(save(*b.vcpus[0])), t1 = parse(save(*b.vcpus[1]));
    EXPECT_SAME_BYTES(timeless(t0, msr(s0, kMsrTsc)->data), timeless(s0, msr(s0, kMsrTsc)->data));
    EXPECT_SAME_BYTES(timeless(t1, msr(s1, kMsrTsc)->data), timeless(s1, msr(s1, kMsrTsc)->data));

    state::Reader r1(vm, "VM");
    VmState before = read_vm_state(r1);
    std::vector<uint8_t> vm2 = save(b.vm);
    state::Reader r3(vm2, "VM");
    VmState after = read_vm_state(r3);
    // kvmclock goes on from the saved reading (no KVM_CLOCK_REALTIME).
    EXPECT_GE(after.clock_ns, before.clock_ns);
    EXPECT_LT(after.clock_ns - before.clock_ns, 3600ull * 1000000000) << "kvmclock jumped";
    // The PIT's load time is the host's time of the SET_PIT2.
    for (int i = 0; i < 3; i++) after.pit.channels[i].count_load_time = before.pit.channels[i].count_load_time;
    after.clock_ns = before.clock_ns;
    // Whether KVM runs this VM's kvmclock from a master clock (TSC_STABLE)
    // is the host's reading of its vCPUs' TSCs, not state: not compared.
    after.clock_flags = before.clock_flags;
    state::Writer wb, wa;
    write_vm_state(wb, before);
    write_vm_state(wa, after);
    EXPECT_SAME_BYTES(wa.data(), wb.data());
}

TEST(KvmState, RefusedStateIsAStateError) {
    NEED_KVM();
    Rig a(2);
    // vCPU 1's state into vCPU 0: its CPUID (the APIC ID) gives it away.
    try {
        load(*a.vcpus[0], save(*a.vcpus[1]));
        ADD_FAILURE() << "vCPU 1's state went into vCPU 0";
    } catch (const state::Error& e) {
        EXPECT_NE(std::string(e.what()).find("as another vCPU"), std::string::npos) << e.what();
    }
    VcpuState s = parse(save(*a.vcpus[0]));
    s.msrs.push_back({0x4b564dff, 0, 1});  // no MSR KVM has
    try {
        load(*a.vcpus[0], bytes(s));
        ADD_FAILURE() << "KVM took an MSR it does not have";
    } catch (const state::Error& e) {
        EXPECT_NE(std::string(e.what()).find("MSR 0x4b564dff"), std::string::npos) << e.what();
    }
    s = parse(save(*a.vcpus[0]));
    s.sregs.cr0 |= 1ull << 63;  // a reserved bit
    EXPECT_THROW(load(*a.vcpus[0], bytes(s)), state::Error);
}

namespace {
// Port 0x10 answers 0x5a and, on the vCPU's thread, asks for a pause as
// the vCPU leaves its exit: it must finish the IN before it parks.
struct PausingPort : IoDevice {
    VcpuPause& pause;
    Stop& stop;
    std::atomic<bool> read_done{false};
    PausingPort(VcpuPause& p, Stop& s) : pause(p), stop(s) {}
    void read(uint64_t, uint8_t* data, uint32_t size) override {
        std::memset(data, 0x5a, size);
        pause.pause(1, stop, [] {}, std::chrono::milliseconds(0));  // only sets the request
        read_done = true;
    }
    void write(uint64_t, const uint8_t*, uint32_t) override {}
};
}  // namespace

TEST(KvmState, APausedVcpuHasFinishedItsInstruction) {
    NEED_KVM();
    // in al, 0x10; hlt; jmp back to the hlt
    Rig a(1, {0xe4, 0x10, 0xf4, 0xeb, 0xfd});
    Vcpu& v = *a.vcpus[0];
    Stop stop;
    VcpuPause pause;
    PausingPort port(pause, stop);
    IoBus pio, mmio;
    pio.add(0x10, 1, &port);
    Vcpu::install_kick_handler();
    v.attach_pause(&pause);
    std::thread t([&] { v.run(pio, mmio, stop); });
    // The pause is asked for from inside the IN's exit, not before the vCPU
    // got there (a generous bound: PVM emulates the guest's CPL 0).
    for (int i = 0; i < 120000 && !port.read_done; i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    bool parked = port.read_done && pause.pause(1, stop, [&] { v.kick(); }, std::chrono::seconds(120));
    VcpuState s = parse(save(v));
    stop.request(0, "test done");
    pause.release_for_stop();
    while (!v.exited()) {
        v.kick();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    t.join();
    ASSERT_TRUE(parked);
    EXPECT_EQ(s.regs.rax & 0xff, 0x5au) << "the IN's value never reached AL";
    EXPECT_EQ(s.regs.rip, kEntry + 2) << "RIP is not past the IN";
}

namespace {
// Runs body in a forked child; its exit status, or 128 + signal.
int in_child(const std::function<void()>& body) {
    std::fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDERR_FILENO);  // the trap's line is expected
        try {
            body();
        } catch (...) {
            _exit(3);
        }
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
}  // namespace

TEST(KvmState, SavedOnTheApiThreadRestoredBeforeFilters) {
    NEED_KVM();
    // In a child that makes its own VM (KVM answers only the process that
    // made one): every read a save makes is on the API thread's list...
    EXPECT_EQ(in_child([] {
                  Rig a(1);
                  seccomp_prepare(SeccompMode::On);
                  enter_thread(ThreadKind::Api, "API");
                  save(*a.vcpus[0]);
                  save(a.vm);
              }),
              0);
    // ...and no write: restoring is done before any filter is installed.
    EXPECT_EQ(in_child([] {
                  Rig a(1);
                  std::vector<uint8_t> v0 = save(*a.vcpus[0]);
                  seccomp_prepare(SeccompMode::On);
                  enter_thread(ThreadKind::Api, "API");
                  load(*a.vcpus[0], v0);
              }),
              2);
}
