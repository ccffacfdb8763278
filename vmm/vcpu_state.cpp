#include "vmm/vcpu_state.hpp"

#include <sys/ioctl.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "vmm/error.hpp"
#include "vmm/state_parts.hpp"

namespace minivmm {

long RealKvmFd::call(unsigned long req, void* arg) {
    long r;
    do {
        r = ::ioctl(fd_, req, arg);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

int RealKvmFd::check_extension(long cap) { return ::ioctl(fd_, KVM_CHECK_EXTENSION, cap); }

void refused_state(const std::string& what, const char* ioctl, int err) {
    // The state came from elsewhere (another host's KVM, a file that may have
    // been edited, anyone who reached the socket): a refusal is most likely
    // the state's doing, which the user hears as one line, exit 1. Running
    // out of memory or a bad buffer is this host's or minivmm's: exit 2.
    std::string line = what + ": KVM " + ioctl + " refused the saved state: " + std::strerror(err);
    if (err == ENOMEM || err == EFAULT) throw InternalError(line);
    throw state::Error(line);
}

namespace {

constexpr uint32_t kMsrTsc = 0x10, kMsrTscDeadline = 0x6e0;

// Left out of KVM_GET_MSR_INDEX_LIST but guest state all the same: the MTRRs
// (minivmm's boot sets the default type; a guest may program the rest) and
// PAT, which some KVMs list and some do not. Kept only where GET_MSRS reads them.
constexpr uint32_t kExtraMsrs[] = {
    0x2ff,                                                  // MTRR default type
    0x250, 0x258, 0x259,                                    // fixed-range MTRRs
    0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f,
    0x200, 0x201, 0x202, 0x203, 0x204, 0x205, 0x206, 0x207,  // variable MTRRs (KVM has 8 pairs)
    0x208, 0x209, 0x20a, 0x20b, 0x20c, 0x20d, 0x20e, 0x20f,
    0x277,  // PAT
};

// Hyper-V's synthetic MSRs, which KVM lists when it can emulate Hyper-V.
// minivmm offers the guest no Hyper-V interface (its CPUID has KVM's leaves,
// not Hyper-V's), so they hold nothing the guest set; and some cannot go
// back: the reference counter runs with time and KVM ignores host writes.
bool hyperv_msr(uint32_t m) { return m >= 0x40000000 && m < 0x40000200; }

// Part tags of the byte form, layout 1.
enum : uint16_t {
    kRegs = 1, kSregs, kXsave, kFpu, kXcrs, kMsrs, kLapic, kEvents, kMpState, kDebugregs, kCpuid,
};
constexpr uint32_t kLayout = 1;

template <class T>
void get(KvmFdCalls& fd, unsigned long req, T* arg, const char* name) {
    long r = fd.call(req, arg);
    if (r < 0) throw internal_error(std::string("KVM ") + name + " failed", int(-r));
}

template <class T>
void put(KvmFdCalls& fd, unsigned long req, const T* arg, const char* name, const std::string& what) {
    long r = fd.call(req, const_cast<T*>(arg));
    if (r < 0) refused_state(what, name, int(-r));
}

std::string hex(uint32_t v) {
    char b[16];
    std::snprintf(b, sizeof b, "%#x", v);
    return b;
}

bool same_leaf(const kvm_cpuid_entry2& a, const kvm_cpuid_entry2& b) {
    return a.function == b.function && a.index == b.index && a.flags == b.flags && a.eax == b.eax &&
           a.ebx == b.ebx && a.ecx == b.ecx && a.edx == b.edx;
}

std::string leaf_text(const kvm_cpuid_entry2& e) {
    char b[128];
    std::snprintf(b, sizeof b, "leaf %#x.%u: eax %#x ebx %#x ecx %#x edx %#x", e.function, e.index, e.eax, e.ebx,
                  e.ecx, e.edx);
    return b;
}

// The first entry where the saved CPUID and this vCPU's differ, or "". In
// order: both tables are built by the same code from KVM's supported list.
std::string cpuid_difference(const std::vector<kvm_cpuid_entry2>& saved, const std::vector<kvm_cpuid_entry2>& here) {
    for (size_t i = 0; i < saved.size() && i < here.size(); i++)
        if (!same_leaf(saved[i], here[i])) return "saved " + leaf_text(saved[i]) + ", here " + leaf_text(here[i]);
    if (saved.size() != here.size())
        return std::to_string(saved.size()) + " leaves saved, " + std::to_string(here.size()) + " here";
    return "";
}

// KVM refuses 256 or more MSRs in one call (E2BIG).
constexpr size_t kMaxIoMsrs = 255;

// KVM_GET_MSRS or KVM_SET_MSRS over e[0, n), in calls of a size KVM takes.
// Each goes in order and stops at the first MSR KVM refuses: returns how
// many were done before that, or -errno.
long msrs_io(KvmFdCalls& fd, unsigned long req, kvm_msr_entry* e, size_t n) {
    size_t done = 0;
    while (done < n) {
        size_t k = std::min(n - done, kMaxIoMsrs);
        KvmList<KvmMsrsHeader, kvm_msr_entry> list(k);
        list.header()->nmsrs = uint32_t(k);
        std::copy(e + done, e + done + k, list.entries());
        long r = fd.call(req, list.buf.data());
        if (r < 0) return r;
        size_t got = std::min(size_t(r), k);
        std::copy(list.entries(), list.entries() + got, e + done);
        done += got;
        if (got < k) break;
    }
    return long(done);
}

void set_msrs(KvmFdCalls& vcpu, std::vector<kvm_msr_entry> msrs, const std::string& what) {
    long n = msrs_io(vcpu, kKvmSetMsrs, msrs.data(), msrs.size());
    if (n < 0) refused_state(what, "SET_MSRS", int(-n));
    if (size_t(n) < msrs.size())
        throw state::Error(what + ": KVM refused the saved value of MSR " + hex(msrs[size_t(n)].index) +
                           " (set " + std::to_string(n) + " of " + std::to_string(msrs.size()) + " MSRs)");
}

}  // namespace

std::vector<uint32_t> kvm_msr_index_list(int kvm_fd) {
    // E2BIG with nmsrs set to the real count when the buffer is too small.
    uint32_t n = 256;
    for (int tries = 0; tries < 4; tries++) {
        std::vector<uint32_t> buf(1 + n);
        buf[0] = n;
        if (::ioctl(kvm_fd, kKvmGetMsrIndexList, buf.data()) == 0)
            return {buf.begin() + 1, buf.begin() + 1 + std::min(buf[0], n)};
        if (errno != E2BIG || buf[0] <= n || buf[0] > 16384) throw internal_error("KVM GET_MSR_INDEX_LIST failed");
        n = buf[0];
    }
    throw InternalError("KVM GET_MSR_INDEX_LIST: its count keeps growing");
}

VcpuStateShape probe_vcpu_state(const std::vector<uint32_t>& kvm_msrs, const std::vector<kvm_cpuid_entry2>& cpuid,
                                KvmFdCalls& vm, KvmFdCalls& vcpu) {
    VcpuStateShape s;
    // KVM_CAP_XSAVE2 answers on the VM fd with the size of this VM's XSAVE
    // area (larger than 4 KiB once AMX is permitted); without it, the
    // original 4 KiB KVM_GET_XSAVE, and without that the legacy FPU.
    int xsave2 = vm.check_extension(KVM_CAP_XSAVE2);
    if (xsave2 > 0) {
        s.xsave2 = true;
        s.xsave_size = std::max<size_t>(size_t(xsave2), kXsaveLegacySize);
    } else if (vm.check_extension(KVM_CAP_XSAVE) > 0) {
        s.xsave_size = kXsaveLegacySize;
    }
    s.xcrs = vm.check_extension(KVM_CAP_XCRS) > 0;
    s.cpuid = cpuid;
    std::vector<uint32_t> want;
    for (uint32_t m : kvm_msrs)
        if (!hyperv_msr(m) && std::find(want.begin(), want.end(), m) == want.end()) want.push_back(m);
    for (uint32_t m : kExtraMsrs)
        if (std::find(want.begin(), want.end(), m) == want.end()) want.push_back(m);
    // KVM lists MSRs this vCPU may not have (another vendor's, a feature its
    // CPUID lacks). GET_MSRS reads in order and stops at the first it cannot:
    // drop that one and go on from the next.
    std::vector<kvm_msr_entry> e(want.size());
    for (size_t i = 0; i < want.size(); i++) e[i] = kvm_msr_entry{want[i], 0, 0};
    size_t pos = 0;
    while (pos < e.size()) {
        long n = msrs_io(vcpu, kKvmGetMsrs, e.data() + pos, e.size() - pos);
        if (n < 0) throw internal_error("KVM GET_MSRS failed", int(-n));
        s.msrs.insert(s.msrs.end(), want.begin() + long(pos), want.begin() + long(pos) + n);
        pos += size_t(n) + 1;  // past the one it refused
    }
    // IA32_TSC before TSC_DEADLINE, whatever KVM's list order: the deadline
    // counts in guest TSC (set_vcpu_state sets the deadline last anyway).
    auto tsc = std::find(s.msrs.begin(), s.msrs.end(), kMsrTsc);
    if (tsc != s.msrs.end()) std::rotate(s.msrs.begin(), tsc, tsc + 1);
    return s;
}

// Reading order. KVM_GET_MP_STATE first: it makes KVM take a pending INIT or
// SIPI (kvm_apic_accept_events), which changes registers and the local
// APIC, so what is read after it is what the vCPU will run from. The events
// last: the other reads may leave an interrupt or exception pending.
VcpuState get_vcpu_state(KvmFdCalls& vcpu, const VcpuStateShape& shape) {
    VcpuState s;
    s.cpuid = shape.cpuid;
    get(vcpu, KVM_GET_MP_STATE, &s.mp_state, "GET_MP_STATE");
    get(vcpu, KVM_GET_REGS, &s.regs, "GET_REGS");
    get(vcpu, KVM_GET_SREGS, &s.sregs, "GET_SREGS");
    if (shape.xsave_size) {
        s.xsave.resize(shape.xsave_size);
        get(vcpu, shape.xsave2 ? kKvmGetXsave2 : kKvmGetXsave, s.xsave.data(), shape.xsave2 ? "GET_XSAVE2" : "GET_XSAVE");
    } else {
        get(vcpu, KVM_GET_FPU, &s.fpu, "GET_FPU");
    }
    if (shape.xcrs) {
        s.xcrs.emplace();
        get(vcpu, KVM_GET_XCRS, &*s.xcrs, "GET_XCRS");
    }
    if (shape.debugregs) {
        s.debugregs.emplace();
        get(vcpu, KVM_GET_DEBUGREGS, &*s.debugregs, "GET_DEBUGREGS");
    }
    get(vcpu, KVM_GET_LAPIC, &s.lapic, "GET_LAPIC");
    s.msrs.resize(shape.msrs.size());
    for (size_t i = 0; i < shape.msrs.size(); i++) s.msrs[i] = kvm_msr_entry{shape.msrs[i], 0, 0};
    long n = msrs_io(vcpu, kKvmGetMsrs, s.msrs.data(), s.msrs.size());
    if (n < 0) throw internal_error("KVM GET_MSRS failed", int(-n));
    if (size_t(n) != shape.msrs.size())
        throw InternalError("KVM GET_MSRS read " + std::to_string(n) + " of the " + std::to_string(shape.msrs.size()) +
                            " MSRs it read as the vCPU was made");
    get(vcpu, KVM_GET_VCPU_EVENTS, &s.events, "GET_VCPU_EVENTS");
    return s;
}

// Writing order, each step after what it depends on:
//  1. SET_REGS: it drops any pending exception, so it precedes SET_VCPU_EVENTS.
//  2. SET_SREGS: EFER and the control registers, and the APIC base MSR, which
//     sets the local APIC's mode (xAPIC or x2APIC) that SET_LAPIC checks the
//     APIC ID against; its pending-interrupt bitmap queues an interrupt that
//     SET_VCPU_EVENTS then states exactly.
//  3. SET_XSAVE (or SET_FPU), SET_XCRS, SET_DEBUGREGS: independent of the rest.
//  4. SET_MSRS, all but TSC_DEADLINE, IA32_TSC first: written by the host, the
//     TSC sets the vCPU's TSC offset, so the guest's TSC goes on from the
//     saved value; kvmclock (the VM's KVM_SET_CLOCK) does the same. KVM
//     takes a host write within a second of where the previous write's TSC
//     has got to as meant to synchronize, and keeps that offset: vCPUs saved
//     one after another come back in step (and kvmclock keeps its master
//     clock). Before Linux 6.x learned which writes came from userspace,
//     the vCPU's own creation counts as such a write: a VM saved within a
//     second of its start comes back on the destination's timeline.
//  5. SET_LAPIC, after SET_SREGS (above).
//  6. SET_MSRS of TSC_DEADLINE: KVM arms the deadline only when the LAPIC's
//     timer is in TSC-deadline mode, and counts it in the TSC just set.
//  7. SET_VCPU_EVENTS, after registers, sregs and LAPIC, so nothing they do
//     overwrites the pending exception, interrupt, NMI and shadow it restores.
//  8. SET_MP_STATE last: it is what lets the vCPU run or keeps it halted or
//     waiting for a SIPI, and KVM checks it against the events' SMM and
//     latched-INIT state, which must be in place first.
void set_vcpu_state(KvmFdCalls& vcpu, const VcpuStateShape& shape, const VcpuState& s, const std::string& what) {
    std::string differs = cpuid_difference(s.cpuid, shape.cpuid);
    if (!differs.empty())
        throw state::Error(what + ": saved on another CPU, or as another vCPU (CPUID " + differs + ")");
    if (!s.xsave.empty() && s.xsave.size() > shape.xsave_size)
        throw state::Error(what + ": the saved FPU state is " + std::to_string(s.xsave.size()) +
                           " bytes of XSAVE area, this host's KVM takes " + std::to_string(shape.xsave_size) +
                           (shape.xsave_size ? "" : " (no XSAVE)"));
    if (s.xcrs && !shape.xcrs) throw state::Error(what + ": the state has XCRs, this host's KVM cannot set them");
    if (s.debugregs && !shape.debugregs)
        throw state::Error(what + ": the state has debug registers, this host's KVM cannot set them");

    put(vcpu, KVM_SET_REGS, &s.regs, "SET_REGS", what);
    put(vcpu, KVM_SET_SREGS, &s.sregs, "SET_SREGS", what);
    if (!s.xsave.empty()) {
        // A smaller area from a host with fewer XSAVE features: the header's
        // XSTATE_BV says which components it holds, the rest stay in their
        // initial state (zeros).
        std::vector<uint8_t> area(shape.xsave_size, 0);
        std::copy(s.xsave.begin(), s.xsave.end(), area.begin());
        put(vcpu, kKvmSetXsave, area.data(), "SET_XSAVE", what);
    } else {
        put(vcpu, KVM_SET_FPU, &s.fpu, "SET_FPU", what);
    }
    if (s.xcrs) put(vcpu, KVM_SET_XCRS, &*s.xcrs, "SET_XCRS", what);
    if (s.debugregs) put(vcpu, KVM_SET_DEBUGREGS, &*s.debugregs, "SET_DEBUGREGS", what);

    std::vector<kvm_msr_entry> msrs, deadline;
    for (const auto& m : s.msrs) (m.index == kMsrTscDeadline ? deadline : msrs).push_back(m);
    auto tsc = std::find_if(msrs.begin(), msrs.end(), [](const kvm_msr_entry& m) { return m.index == kMsrTsc; });
    if (tsc != msrs.end()) std::rotate(msrs.begin(), tsc, tsc + 1);
    set_msrs(vcpu, msrs, what);
    put(vcpu, KVM_SET_LAPIC, &s.lapic, "SET_LAPIC", what);
    set_msrs(vcpu, deadline, what);

    // GET reports which optional fields it filled; SET also needs asking for
    // the pending NMI and the SIPI vector, which it otherwise leaves alone.
    kvm_vcpu_events ev = s.events;
    ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
    put(vcpu, KVM_SET_VCPU_EVENTS, &ev, "SET_VCPU_EVENTS", what);
    put(vcpu, KVM_SET_MP_STATE, &s.mp_state, "SET_MP_STATE", what);
}

void write_vcpu_state(state::Writer& out, const VcpuState& s) {
    state::PartsWriter p;
    state::Writer c;
    c.u32(uint32_t(s.cpuid.size()));
    for (const auto& e : s.cpuid)
        for (uint32_t v : {e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx}) c.u32(v);
    p.add(kCpuid, c);
    p.add_pod(kRegs, s.regs);
    p.add_pod(kSregs, s.sregs);
    if (!s.xsave.empty()) {
        state::Writer w;
        w.bytes(s.xsave.data(), s.xsave.size());
        p.add(kXsave, w);
    } else {
        p.add_pod(kFpu, s.fpu);
    }
    if (s.xcrs) p.add_pod(kXcrs, *s.xcrs);
    state::Writer m;
    m.u32(uint32_t(s.msrs.size()));
    for (const auto& e : s.msrs) {
        m.u32(e.index);
        m.u64(e.data);
    }
    p.add(kMsrs, m);
    p.add_pod(kLapic, s.lapic);
    p.add_pod(kEvents, s.events);
    p.add_pod(kMpState, s.mp_state.mp_state);
    if (s.debugregs) p.add_pod(kDebugregs, *s.debugregs);
    p.write(out, kLayout);
}

VcpuState read_vcpu_state(state::Reader& in) {
    state::Parts p(in, kLayout,
                   {kRegs, kSregs, kXsave, kFpu, kXcrs, kMsrs, kLapic, kEvents, kMpState, kDebugregs, kCpuid},
                   kMaxXsaveBytes);
    VcpuState s;
    {
        state::Reader r = p.reader(kCpuid, "CPUID");
        uint32_t n = r.u32();
        if (n > kMaxCpuidEntries)
            r.fail(std::to_string(n) + " CPUID leaves, at most " + std::to_string(kMaxCpuidEntries) + " exist");
        s.cpuid.resize(n);
        for (auto& e : s.cpuid) {
            e.function = r.u32();
            e.index = r.u32();
            e.flags = r.u32();
            e.eax = r.u32();
            e.ebx = r.u32();
            e.ecx = r.u32();
            e.edx = r.u32();
        }
        r.expect_end();
    }
    s.regs = p.pod<kvm_regs>(kRegs, "registers");
    s.sregs = p.pod<kvm_sregs>(kSregs, "segment registers");
    if (p.has(kXsave) == p.has(kFpu)) in.fail("the FPU state must be one of XSAVE and legacy FPU");
    if (p.has(kXsave)) {
        state::Reader r = p.reader(kXsave, "XSAVE area");
        // Blob bounds already hold it under kMaxXsaveBytes; the legacy
        // region and header are the least KVM_SET_XSAVE reads.
        std::vector<uint8_t> whole(p.size(kXsave));
        if (whole.size() < kXsaveLegacySize || whole.size() % 4)
            r.fail(std::to_string(whole.size()) + " bytes, not a whole XSAVE area of at least " +
                   std::to_string(kXsaveLegacySize));
        r.bytes(whole.data(), whole.size());
        r.expect_end();
        s.xsave = std::move(whole);
    } else {
        s.fpu = p.pod<kvm_fpu>(kFpu, "FPU");
    }
    if (p.has(kXcrs)) {
        s.xcrs = p.pod<kvm_xcrs>(kXcrs, "XCRs");
        if (s.xcrs->nr_xcrs > KVM_MAX_XCRS) in.fail(std::to_string(s.xcrs->nr_xcrs) + " XCRs, at most 16 exist");
    }
    {
        state::Reader r = p.reader(kMsrs, "MSRs");
        uint32_t n = r.u32();
        if (n > kMaxSavedMsrs)
            r.fail(std::to_string(n) + " MSRs, at most " + std::to_string(kMaxSavedMsrs) + " are read");
        s.msrs.reserve(n);
        for (uint32_t i = 0; i < n; i++) {
            kvm_msr_entry e{};
            e.index = r.u32();
            e.data = r.u64();
            for (const auto& o : s.msrs)
                if (o.index == e.index) r.fail("MSR " + hex(e.index) + " twice");
            s.msrs.push_back(e);
        }
        r.expect_end();
    }
    s.lapic = p.pod<kvm_lapic_state>(kLapic, "local APIC");
    s.events = p.pod<kvm_vcpu_events>(kEvents, "pending events");
    s.mp_state.mp_state = p.pod<uint32_t>(kMpState, "MP state");
    if (p.has(kDebugregs)) s.debugregs = p.pod<kvm_debugregs>(kDebugregs, "debug registers");
    return s;
}

}  // namespace minivmm
