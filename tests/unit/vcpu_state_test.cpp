// The byte form of a vCPU's and the VM's KVM state (vcpu_state.hpp,
// vm_state.hpp) without KVM: it reads back what was written, and a hostile
// or damaged section is refused with state::Error before anything reaches
// KVM. Against a fake KVM fd: the order of the reads and writes, the MSRs a
// vCPU keeps, and how a refusal is told.
#include "vmm/vcpu_state.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "tests/unit/fake_kvm_state.hpp"
#include "vmm/state_parts.hpp"
#include "vmm/vm_state.hpp"

using namespace minivmm;
using minivmm::testing::FakeKvmFd;

namespace {

template <class T>
void fill(T& v, uint8_t seed) {
    auto* b = reinterpret_cast<uint8_t*>(&v);
    for (size_t i = 0; i < sizeof v; i++) b[i] = uint8_t(seed + i * 7);
}

template <class T>
bool same(const T& a, const T& b) {
    return std::memcmp(&a, &b, sizeof a) == 0;
}

// Two CPUID leaves, as a vCPU's table begins.
std::vector<kvm_cpuid_entry2> sample_cpuid() {
    kvm_cpuid_entry2 a{}, b{};
    a.function = 0;
    a.eax = 0xd;
    a.ebx = 0x756e6547;
    b.function = 1;
    b.ebx = 0x00020800;
    b.ecx = 0x80000000;
    return {a, b};
}

VcpuStateShape sample_shape(size_t xsave) {
    VcpuStateShape shape;
    shape.xsave_size = xsave;
    shape.xsave2 = shape.xcrs = shape.debugregs = true;
    shape.cpuid = sample_cpuid();
    return shape;
}

VcpuState sample_vcpu(size_t xsave = 4096 + 512) {
    VcpuState s;
    s.cpuid = sample_cpuid();
    fill(s.regs, 1);
    fill(s.sregs, 2);
    s.xsave.resize(xsave);
    for (size_t i = 0; i < xsave; i++) s.xsave[i] = uint8_t(i * 13);
    kvm_xcrs x{};
    x.nr_xcrs = 1;
    x.xcrs[0] = {0, 0, 7};
    s.xcrs = x;
    for (uint32_t m : {0x10u, 0xc0000081u, 0xc0000082u, 0x6e0u, 0x4b564d01u}) s.msrs.push_back({m, 0, m * 5ull});
    fill(s.lapic, 3);
    fill(s.events, 4);
    s.mp_state.mp_state = KVM_MP_STATE_HALTED;
    kvm_debugregs d{};
    d.db[0] = 0x1000;
    d.dr7 = 0x400;
    s.debugregs = d;
    return s;
}

std::vector<uint8_t> bytes_of(const VcpuState& s) {
    state::Writer w;
    write_vcpu_state(w, s);
    return w.take();
}

VcpuState parse(const std::vector<uint8_t>& b) {
    state::Reader r(b, "vCPU 0");
    return read_vcpu_state(r);
}

// The section's parts, to build damaged ones from.
struct Part {
    uint16_t tag;
    std::vector<uint8_t> body;
};
std::vector<Part> parts_of(const std::vector<uint8_t>& b) {
    state::Reader r(b, "t");
    r.u32();
    uint32_t n = r.u32();
    std::vector<Part> out;
    for (uint32_t i = 0; i < n; i++) {
        uint16_t tag = r.u16();
        out.push_back({tag, r.blob(1 << 20)});
    }
    return out;
}
std::vector<uint8_t> section(const std::vector<Part>& parts, uint32_t layout = 1) {
    state::Writer w;
    w.u32(layout);
    w.u32(uint32_t(parts.size()));
    for (const auto& p : parts) {
        w.u16(p.tag);
        w.blob(p.body);
    }
    return w.take();
}
std::vector<uint8_t> with_part(std::vector<Part> parts, uint16_t tag, std::vector<uint8_t> body) {
    for (auto& p : parts)
        if (p.tag == tag) p.body = std::move(body);
    return section(parts);
}

// Refused with state::Error whose line names the section and says `why`.
void expect_refused(const std::vector<uint8_t>& b, const std::string& why) {
    try {
        parse(b);
        ADD_FAILURE() << "accepted; expected: " << why;
    } catch (const state::Error& e) {
        EXPECT_NE(std::string(e.what()).find("vCPU 0"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
}

constexpr uint16_t kMsrsTag = 6, kRegsTag = 1, kXsaveTag = 3, kFpuTag = 4, kXcrsTag = 5, kCpuidTag = 11;

const Part& part(const std::vector<Part>& parts, uint16_t tag) {
    for (const auto& p : parts)
        if (p.tag == tag) return p;
    throw std::runtime_error("no part " + std::to_string(tag));
}

}  // namespace

TEST(VcpuStateBytes, ReadsBackWhatWasWritten) {
    VcpuState a = sample_vcpu();
    VcpuState b = parse(bytes_of(a));
    ASSERT_EQ(b.cpuid.size(), 2u);
    EXPECT_TRUE(same(a.cpuid[1], b.cpuid[1]));
    EXPECT_TRUE(same(a.regs, b.regs));
    EXPECT_TRUE(same(a.sregs, b.sregs));
    EXPECT_EQ(a.xsave, b.xsave);
    ASSERT_TRUE(b.xcrs);
    EXPECT_TRUE(same(*a.xcrs, *b.xcrs));
    ASSERT_EQ(a.msrs.size(), b.msrs.size());
    for (size_t i = 0; i < a.msrs.size(); i++) {
        EXPECT_EQ(a.msrs[i].index, b.msrs[i].index);
        EXPECT_EQ(a.msrs[i].data, b.msrs[i].data);
    }
    EXPECT_TRUE(same(a.lapic, b.lapic));
    EXPECT_TRUE(same(a.events, b.events));
    EXPECT_EQ(a.mp_state.mp_state, b.mp_state.mp_state);
    ASSERT_TRUE(b.debugregs);
    EXPECT_TRUE(same(*a.debugregs, *b.debugregs));
    EXPECT_EQ(bytes_of(b), bytes_of(a));
}

TEST(VcpuStateBytes, LegacyFpuAndNoOptionalParts) {
    VcpuState a = sample_vcpu();
    a.xsave.clear();
    fill(a.fpu, 9);
    a.xcrs.reset();
    a.debugregs.reset();
    a.msrs.clear();
    VcpuState b = parse(bytes_of(a));
    EXPECT_TRUE(b.xsave.empty());
    EXPECT_TRUE(same(a.fpu, b.fpu));
    EXPECT_FALSE(b.xcrs);
    EXPECT_FALSE(b.debugregs);
    EXPECT_TRUE(b.msrs.empty());
}

TEST(VcpuStateBytes, EveryTruncationIsRefused) {
    auto b = bytes_of(sample_vcpu());
    for (size_t n = 0; n < b.size(); n++) {
        std::vector<uint8_t> cut(b.begin(), b.begin() + long(n));
        EXPECT_THROW(parse(cut), state::Error) << n;
    }
    auto longer = b;
    longer.push_back(0);
    expect_refused(longer, "left over");
}

TEST(VcpuStateBytes, HostileMsrCountsAreRefusedBeforeAllocating) {
    auto parts = parts_of(bytes_of(sample_vcpu()));
    state::Writer m;
    m.u32(1000000000);  // 1e9 MSRs, in a body of four bytes
    expect_refused(with_part(parts, kMsrsTag, m.take()), "1000000000 MSRs, at most 1024");
    // A count that fits the bound but not the body.
    state::Writer m2;
    m2.u32(3);
    m2.u32(0x10);
    m2.u64(1);
    expect_refused(with_part(parts, kMsrsTag, m2.take()), "truncated");
    // One MSR twice: which value would KVM keep?
    state::Writer m3;
    m3.u32(2);
    for (int i = 0; i < 2; i++) m3.u32(0xc0000080), m3.u64(uint64_t(i));
    expect_refused(with_part(parts, kMsrsTag, m3.take()), "MSR 0xc0000080 twice");
    state::Writer c;
    c.u32(1000000000);
    expect_refused(with_part(parts, kCpuidTag, c.take()), "1000000000 CPUID leaves, at most 256");
    auto cpuid = part(parts, kCpuidTag).body;
    cpuid.pop_back();
    expect_refused(with_part(parts, kCpuidTag, cpuid), "truncated");
}

TEST(VcpuStateBytes, MalformedSectionsAreRefused) {
    auto good = bytes_of(sample_vcpu());
    auto parts = parts_of(good);
    expect_refused(section(parts, 2), "layout 2, this minivmm reads layout 1");
    // A part of the wrong size for its kernel struct.
    std::vector<uint8_t> regs(sizeof(kvm_regs) - 1);
    expect_refused(with_part(parts, kRegsTag, regs), "truncated");
    regs.resize(sizeof(kvm_regs) + 1);
    expect_refused(with_part(parts, kRegsTag, regs), "left over");
    // Unknown, repeated, missing parts, and too many of them.
    auto unknown = parts;
    unknown.push_back({99, {1, 2}});
    expect_refused(section(unknown), "unknown part 99");
    auto twice = parts;
    twice.push_back(part(parts, kRegsTag));
    expect_refused(section(twice), "part 1 twice");
    auto missing = parts;
    missing.erase(std::find_if(missing.begin(), missing.end(), [](const Part& p) { return p.tag == kRegsTag; }));
    expect_refused(section(missing), "no registers");
    state::Writer many;
    many.u32(1);
    many.u32(70000);
    expect_refused(many.take(), "70000 parts");
    // The FPU: exactly one form, and a whole XSAVE area.
    auto both = parts;
    both.push_back({kFpuTag, std::vector<uint8_t>(sizeof(kvm_fpu))});
    expect_refused(section(both), "one of XSAVE and legacy FPU");
    expect_refused(with_part(parts, kXsaveTag, std::vector<uint8_t>(4095)), "not a whole XSAVE area");
    // Larger than any XSAVE area: refused by the part's bound.
    expect_refused(with_part(parts, kXsaveTag, std::vector<uint8_t>(kMaxXsaveBytes + 4)), "at most");
    kvm_xcrs x{};
    x.nr_xcrs = 17;
    std::vector<uint8_t> xb(sizeof x);
    std::memcpy(xb.data(), &x, sizeof x);
    expect_refused(with_part(parts, kXcrsTag, xb), "17 XCRs");
}

TEST(VcpuStateKvm, ReadsMpStateFirstAndEventsLast) {
    FakeKvmFd vcpu;
    VcpuStateShape shape = sample_shape(8192);
    shape.msrs = {0x10, 0x6e0, 0xc0000081};
    VcpuState s = get_vcpu_state(vcpu, shape);
    std::vector<std::string> want = {"GET_MP_STATE", "GET_REGS",      "GET_SREGS", "GET_XSAVE2",  "GET_XCRS",
                                     "GET_DEBUGREGS", "GET_LAPIC", "GET_MSRS",  "GET_VCPU_EVENTS"};
    EXPECT_EQ(vcpu.calls, want);
    EXPECT_EQ(s.xsave.size(), 8192u);
    ASSERT_EQ(s.msrs.size(), 3u);
    EXPECT_EQ(s.msrs[2].data, 0xc0000081ull * 3 + 1);
    EXPECT_EQ(s.regs.rip, 0x1234u);
    EXPECT_EQ(s.cpuid.size(), 2u);  // as the vCPU was made: no ioctl at save
    // A vCPU that reads fewer MSRs than it did as it was made is minivmm's
    // or the host's trouble, never a short state.
    vcpu.short_get_msrs = 1;
    EXPECT_THROW(get_vcpu_state(vcpu, shape), InternalError);
}

TEST(VcpuStateKvm, WritesInTheOrderKvmNeeds) {
    FakeKvmFd vcpu;
    VcpuStateShape shape = sample_shape(8192);
    VcpuState s = sample_vcpu(4096 + 64);
    s.events.flags = KVM_VCPUEVENT_VALID_SHADOW;
    set_vcpu_state(vcpu, shape, s, "vCPU 0");
    std::vector<std::string> want = {"SET_REGS", "SET_SREGS", "SET_XSAVE", "SET_XCRS",        "SET_DEBUGREGS",
                                     "SET_MSRS", "SET_LAPIC", "SET_MSRS",  "SET_VCPU_EVENTS", "SET_MP_STATE"};
    EXPECT_EQ(vcpu.calls, want);
    // Every MSR but the deadline first, IA32_TSC leading; the deadline alone after the LAPIC.
    ASSERT_EQ(vcpu.msr_writes.size(), 2u);
    ASSERT_EQ(vcpu.msr_writes[0].size(), 4u);
    EXPECT_EQ(vcpu.msr_writes[0][0].index, 0x10u);
    for (const auto& m : vcpu.msr_writes[0]) EXPECT_NE(m.index, 0x6e0u);
    ASSERT_EQ(vcpu.msr_writes[1].size(), 1u);
    EXPECT_EQ(vcpu.msr_writes[1][0].index, 0x6e0u);
    EXPECT_EQ(vcpu.msr_writes[1][0].data, 0x6e0ull * 5);
    // The events as saved, and the NMI and SIPI fields asked for too.
    EXPECT_EQ(vcpu.events_written.flags, uint32_t(KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_NMI_PENDING |
                                                  KVM_VCPUEVENT_VALID_SIPI_VECTOR));
}

TEST(VcpuStateKvm, RefusalsAreStateErrorsNamingWhat) {
    VcpuStateShape shape = sample_shape(4096);
    shape.xsave2 = false;
    VcpuState s = sample_vcpu(4096);
    {
        FakeKvmFd vcpu;
        vcpu.absent_msrs = {0x4b564d01};
        try {
            set_vcpu_state(vcpu, shape, s, "vCPU 1");
            ADD_FAILURE() << "a refused MSR went unnoticed";
        } catch (const state::Error& e) {
            EXPECT_STREQ(e.what(), "vCPU 1: KVM refused the saved value of MSR 0x4b564d01 (set 3 of 4 MSRs)");
        }
        EXPECT_EQ(vcpu.calls.back(), "SET_MSRS");  // nothing after it
    }
    {
        FakeKvmFd vcpu;
        vcpu.refuse["SET_LAPIC"] = EINVAL;
        try {
            set_vcpu_state(vcpu, shape, s, "vCPU 1");
            ADD_FAILURE();
        } catch (const state::Error& e) {
            EXPECT_STREQ(e.what(), "vCPU 1: KVM SET_LAPIC refused the saved state: Invalid argument");
        }
    }
    {
        FakeKvmFd vcpu;
        vcpu.refuse["SET_SREGS"] = ENOMEM;  // the host's trouble, not the state's
        EXPECT_THROW(set_vcpu_state(vcpu, shape, s, "vCPU 1"), InternalError);
    }
    {
        // More XSAVE state than this host's KVM holds: refused before any write.
        FakeKvmFd vcpu;
        VcpuState big = sample_vcpu(8192);
        EXPECT_THROW(set_vcpu_state(vcpu, shape, big, "vCPU 1"), state::Error);
        VcpuStateShape no_dbg = shape;
        no_dbg.debugregs = false;
        EXPECT_THROW(set_vcpu_state(vcpu, no_dbg, s, "vCPU 1"), state::Error);
        EXPECT_TRUE(vcpu.calls.empty());
    }
    {
        // Another CPU, or another vCPU's state: its CPUID differs. Refused
        // before any write, naming the first leaf that differs.
        FakeKvmFd vcpu;
        VcpuStateShape other = shape;
        other.cpuid[1].ebx = 0x01020800;  // initial APIC ID 1
        try {
            set_vcpu_state(vcpu, other, s, "vCPU 1");
            ADD_FAILURE() << "another vCPU's state went in";
        } catch (const state::Error& e) {
            EXPECT_STREQ(e.what(),
                         "vCPU 1: saved on another CPU, or as another vCPU (CPUID saved leaf 0x1.0: eax 0 ebx 0x20800 "
                         "ecx 0x80000000 edx 0, here leaf 0x1.0: eax 0 ebx 0x1020800 ecx 0x80000000 edx 0)");
        }
        other.cpuid.pop_back();
        EXPECT_THROW(set_vcpu_state(vcpu, other, s, "vCPU 1"), state::Error);
        EXPECT_TRUE(vcpu.calls.empty());
    }
}

TEST(VcpuStateKvm, ProbeKeepsTheMsrsTheVcpuReads) {
    FakeKvmFd vm, vcpu;
    vm.caps[KVM_CAP_XSAVE2] = 11008;
    vm.caps[KVM_CAP_XCRS] = 1;
    vcpu.absent_msrs = {0xc0010117, 0x200, 0x20f};  // another vendor's, two MTRRs
    VcpuStateShape s = probe_vcpu_state({0x174, 0x10, 0xc0010117, 0x6e0, 0x174}, sample_cpuid(), vm, vcpu);
    EXPECT_EQ(s.xsave_size, 11008u);
    EXPECT_TRUE(s.xsave2);
    EXPECT_TRUE(s.xcrs);
    EXPECT_FALSE(s.debugregs);
    ASSERT_EQ(s.cpuid.size(), 2u);  // kept as given, to compare a restore's with
    // Each refused MSR costs one more read, from the one after it.
    EXPECT_EQ(vcpu.count("GET_MSRS"), 4u);
    ASSERT_GE(s.msrs.size(), 4u);
    EXPECT_EQ(s.msrs[0], 0x10u);  // IA32_TSC first
    EXPECT_EQ(s.msrs[1], 0x174u);
    EXPECT_EQ(s.msrs[2], 0x6e0u);
    for (uint32_t gone : vcpu.absent_msrs) EXPECT_EQ(std::count(s.msrs.begin(), s.msrs.end(), gone), 0);
    EXPECT_EQ(std::count(s.msrs.begin(), s.msrs.end(), 0x174u), 1);  // listed twice, kept once
    EXPECT_EQ(std::count(s.msrs.begin(), s.msrs.end(), 0x2ffu), 1);  // the MTRR default type, not in KVM's list
    EXPECT_EQ(std::count(s.msrs.begin(), s.msrs.end(), 0x277u), 1);  // PAT
    // Hyper-V's MSRs, of an interface minivmm does not offer: never kept.
    VcpuStateShape hv = probe_vcpu_state({0x40000020, 0x40000001, 0x400000b0, 0x4b564d01}, {}, vm, vcpu);
    for (uint32_t m : hv.msrs) EXPECT_FALSE(m >= 0x40000000 && m < 0x40000200) << std::hex << m;
    EXPECT_EQ(std::count(hv.msrs.begin(), hv.msrs.end(), 0x4b564d01u), 1);  // kvmclock's stays

    FakeKvmFd old_vm;  // neither XSAVE2 nor XSAVE: the legacy FPU
    EXPECT_EQ(probe_vcpu_state({}, {}, old_vm, vcpu).xsave_size, 0u);
    old_vm.caps[KVM_CAP_XSAVE] = 1;
    VcpuStateShape x = probe_vcpu_state({}, {}, old_vm, vcpu);
    EXPECT_EQ(x.xsave_size, 4096u);
    EXPECT_FALSE(x.xsave2);
}

namespace {
VmState sample_vm() {
    VmState s;
    fill(s.pic_master, 5);
    fill(s.pic_slave, 6);
    fill(s.ioapic, 7);
    s.ioapic.base_address = 0xfec00000;
    for (int i = 0; i < 3; i++) {
        auto& c = s.pit.channels[i];
        c.count = 0x10000;
        c.mode = uint8_t(i == 0 ? 2 : 0xff);
        c.rw_mode = 3;
        c.read_state = c.write_state = 3;
        c.gate = i != 2;
        c.count_load_time = 1000 + i;
    }
    s.pit.flags = KVM_PIT_FLAGS_HPET_LEGACY;
    s.clock_ns = 987654321;
    s.clock_flags = KVM_CLOCK_TSC_STABLE;
    return s;
}
std::vector<uint8_t> bytes_of(const VmState& s) {
    state::Writer w;
    write_vm_state(w, s);
    return w.take();
}
VmState parse_vm(const std::vector<uint8_t>& b) {
    state::Reader r(b, "VM");
    return read_vm_state(r);
}
}  // namespace

TEST(VmStateBytes, ReadsBackAndRefusesDamage) {
    VmState a = sample_vm();
    auto b = bytes_of(a);
    VmState c = parse_vm(b);
    EXPECT_TRUE(same(a.pic_master, c.pic_master));
    EXPECT_TRUE(same(a.pic_slave, c.pic_slave));
    EXPECT_TRUE(same(a.ioapic, c.ioapic));
    EXPECT_TRUE(same(a.pit, c.pit));
    EXPECT_EQ(c.clock_ns, a.clock_ns);
    EXPECT_EQ(c.clock_flags, a.clock_flags);
    for (size_t n = 0; n < b.size(); n++)
        EXPECT_THROW(parse_vm(std::vector<uint8_t>(b.begin(), b.begin() + long(n))), state::Error) << n;

    VmState bad = a;
    bad.pit.channels[1].mode = 7;
    EXPECT_THROW(parse_vm(bytes_of(bad)), state::Error);
    bad = a;
    bad.pit.channels[0].count = 0x10001;
    EXPECT_THROW(parse_vm(bytes_of(bad)), state::Error);
    bad = a;
    bad.pit.flags = 0x80;
    EXPECT_THROW(parse_vm(bytes_of(bad)), state::Error);
    bad = a;
    bad.ioapic.base_address = 0xfee00000;  // the IOAPIC moved onto the LAPIC's page
    EXPECT_THROW(parse_vm(bytes_of(bad)), state::Error);
}

TEST(VmStateKvm, ClockIsSetLastWithNoFlags) {
    FakeKvmFd vm;
    VmState s = get_vm_state(vm);
    EXPECT_EQ(vm.calls, (std::vector<std::string>{"GET_IRQCHIP", "GET_IRQCHIP", "GET_IRQCHIP", "GET_PIT2",
                                                  "GET_CLOCK"}));
    EXPECT_EQ(s.pic_slave.irq_base, 0x28);
    EXPECT_EQ(s.clock_ns, 123456789u);
    vm.calls.clear();
    s.clock_flags = KVM_CLOCK_TSC_STABLE;
    set_vm_state(vm, s, "VM");
    EXPECT_EQ(vm.calls, (std::vector<std::string>{"SET_IRQCHIP", "SET_IRQCHIP", "SET_IRQCHIP", "SET_PIT2",
                                                  "SET_CLOCK"}));
    EXPECT_EQ(vm.clock_written, 123456789u);
    EXPECT_EQ(vm.clock_flags_written, 0u);  // neither REALTIME nor what GET reported
    FakeKvmFd refusing;
    refusing.refuse["SET_PIT2"] = EINVAL;
    EXPECT_THROW(set_vm_state(refusing, s, "VM"), state::Error);
}

TEST(VcpuStateKvm, ManyMsrsGoInCallsKvmTakes) {
    // KVM refuses 256 MSRs or more in one call: a host that lists 600 (PMU
    // counters, Hyper-V, nested VMX) still saves and restores each of them.
    FakeKvmFd vm, vcpu;
    std::vector<uint32_t> listed;
    for (uint32_t i = 0; i < 600; i++) listed.push_back(0xc0011000 + i);
    vcpu.absent_msrs = {0xc0011000 + 300};
    VcpuStateShape shape = probe_vcpu_state(listed, {}, vm, vcpu);
    EXPECT_EQ(std::count_if(shape.msrs.begin(), shape.msrs.end(), [](uint32_t m) { return m >= 0xc0011000; }), 599);
    VcpuState s = get_vcpu_state(vcpu, shape);
    ASSERT_EQ(s.msrs.size(), shape.msrs.size());
    EXPECT_EQ(s.msrs.back().data, uint64_t(s.msrs.back().index) * 3 + 1);
    FakeKvmFd dest;
    set_vcpu_state(dest, shape, s, "vCPU 0");
    size_t written = 0;
    for (const auto& w : dest.msr_writes) written += w.size();
    EXPECT_EQ(written, s.msrs.size());
    // A refusal past the first call still names the MSR.
    FakeKvmFd refusing;
    refusing.absent_msrs = {0xc0011000 + 500};
    try {
        set_vcpu_state(refusing, shape, s, "vCPU 0");
        ADD_FAILURE();
    } catch (const state::Error& e) {
        EXPECT_NE(std::string(e.what()).find("MSR 0xc00111f4"), std::string::npos) << e.what();
    }
}
