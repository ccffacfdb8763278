#include "vmm/vm_state.hpp"

#include <cstring>

#include "vmm/error.hpp"
#include "vmm/state_parts.hpp"
#include "vmm/vcpu_state.hpp"

namespace minivmm {

namespace {

enum : uint16_t { kPicMaster = 1, kPicSlave, kIoapic, kPit, kClock };
constexpr uint32_t kLayout = 1;
constexpr uint64_t kIoapicBase = 0xfec00000;  // where minivmm's MADT puts it, and KVM's default

kvm_irqchip chip(KvmFdCalls& vm, uint32_t id) {
    kvm_irqchip c{};
    c.chip_id = id;
    long r = vm.call(KVM_GET_IRQCHIP, &c);
    if (r < 0) throw internal_error("KVM GET_IRQCHIP failed", int(-r));
    return c;
}

void set_chip(KvmFdCalls& vm, uint32_t id, const void* state, size_t n, const std::string& what) {
    kvm_irqchip c{};
    c.chip_id = id;
    std::memcpy(&c.chip, state, n);
    long r = vm.call(KVM_SET_IRQCHIP, &c);
    if (r < 0) refused_state(what, "SET_IRQCHIP", int(-r));
}

// KVM's own range for each PIT channel field (arch/x86/kvm/i8254.c): a
// stream has no business outside it, and KVM need not see what it never makes.
void check_pit(const state::Reader& r, const kvm_pit_state2& p) {
    for (const auto& c : p.channels) {
        bool ok = c.count <= 0x10000 && (c.mode <= 5 || c.mode == 0xff) && c.rw_mode <= 3 && c.read_state <= 4 &&
                  c.write_state <= 4 && c.bcd <= 1 && c.gate <= 1 && c.count_latched <= 4 && c.status_latched <= 1;
        if (!ok) r.fail("a PIT channel's state is out of range");
    }
    if (p.flags & ~uint32_t(KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON))
        r.fail("unknown PIT flags");
}

}  // namespace

VmState get_vm_state(KvmFdCalls& vm) {
    VmState s;
    s.pic_master = chip(vm, KVM_IRQCHIP_PIC_MASTER).chip.pic;
    s.pic_slave = chip(vm, KVM_IRQCHIP_PIC_SLAVE).chip.pic;
    s.ioapic = chip(vm, KVM_IRQCHIP_IOAPIC).chip.ioapic;
    long r = vm.call(KVM_GET_PIT2, &s.pit);
    if (r < 0) throw internal_error("KVM GET_PIT2 failed", int(-r));
    kvm_clock_data clock{};
    r = vm.call(KVM_GET_CLOCK, &clock);
    if (r < 0) throw internal_error("KVM GET_CLOCK failed", int(-r));
    s.clock_ns = clock.clock;
    s.clock_flags = clock.flags;
    return s;
}

void set_vm_state(KvmFdCalls& vm, const VmState& s, const std::string& what) {
    set_chip(vm, KVM_IRQCHIP_PIC_MASTER, &s.pic_master, sizeof s.pic_master, what);
    set_chip(vm, KVM_IRQCHIP_PIC_SLAVE, &s.pic_slave, sizeof s.pic_slave, what);
    set_chip(vm, KVM_IRQCHIP_IOAPIC, &s.ioapic, sizeof s.ioapic, what);
    kvm_pit_state2 pit = s.pit;
    long r = vm.call(KVM_SET_PIT2, &pit);
    if (r < 0) refused_state(what, "SET_PIT2", int(-r));
    // The clock goes on from the saved reading, with flags 0: the guest sees
    // no time pass while it was saved, paused or on the wire, as it sees for
    // its TSC (restored per vCPU from IA32_TSC). KVM_CLOCK_REALTIME would
    // instead advance kvmclock by the wall-clock time since the save, but
    // the TSC would not follow, and a guest whose clocksources disagree by
    // the downtime marks the TSC unstable or jumps; older KVMs refuse any
    // flag. The guest's wall clock is then behind by the downtime until it
    // resyncs (NTP, or its RTC), as after a host suspend.
    kvm_clock_data clock{};
    clock.clock = s.clock_ns;
    r = vm.call(KVM_SET_CLOCK, &clock);
    if (r < 0) refused_state(what, "SET_CLOCK", int(-r));
}

void write_vm_state(state::Writer& out, const VmState& s) {
    state::PartsWriter p;
    p.add_pod(kPicMaster, s.pic_master);
    p.add_pod(kPicSlave, s.pic_slave);
    p.add_pod(kIoapic, s.ioapic);
    p.add_pod(kPit, s.pit);
    state::Writer c;
    c.u64(s.clock_ns);
    c.u32(s.clock_flags);
    p.add(kClock, c);
    p.write(out, kLayout);
}

VmState read_vm_state(state::Reader& in) {
    state::Parts p(in, kLayout, {kPicMaster, kPicSlave, kIoapic, kPit, kClock}, 4096);
    VmState s;
    s.pic_master = p.pod<kvm_pic_state>(kPicMaster, "PIC (master)");
    s.pic_slave = p.pod<kvm_pic_state>(kPicSlave, "PIC (slave)");
    s.ioapic = p.pod<kvm_ioapic_state>(kIoapic, "IOAPIC");
    if (s.ioapic.base_address != kIoapicBase) in.fail("the IOAPIC is not at its address");
    {
        state::Reader r = p.reader(kPit, "PIT");
        s.pit = r.pod<kvm_pit_state2>();
        r.expect_end();
        check_pit(r, s.pit);
    }
    state::Reader c = p.reader(kClock, "clock");
    s.clock_ns = c.u64();
    s.clock_flags = c.u32();
    c.expect_end();
    return s;
}

}  // namespace minivmm

namespace minivmm {

void Vm::save_state(state::Writer& out) const {
    RealKvmFd vm(fd());
    write_vm_state(out, get_vm_state(vm));
}

void Vm::load_state(state::Reader& in) {
    VmState s = read_vm_state(in);
    RealKvmFd vm(fd());
    set_vm_state(vm, s, in.what());
}

}  // namespace minivmm
