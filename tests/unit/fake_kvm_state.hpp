// A stand-in for a vCPU's or VM's KVM fd, for the state code's unit tests:
// it records the ioctls made, answers reads with recognizable values, takes
// writes as KVM takes them (SET_MSRS stops at the first MSR it does not
// have), and refuses what a test tells it to.
#pragma once
#include <linux/kvm.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "vmm/kvm_state_abi.hpp"

namespace minivmm::testing {

struct FakeKvmFd : KvmFdCalls {
    std::vector<std::string> calls;       // ioctl names, in order
    std::map<std::string, int> refuse;    // ioctl name -> errno it fails with
    std::set<uint32_t> absent_msrs;       // GET_MSRS and SET_MSRS stop at these
    std::map<long, int> caps;             // KVM_CHECK_EXTENSION answers
    std::vector<std::vector<kvm_msr_entry>> msr_writes;  // each SET_MSRS's entries
    kvm_vcpu_events events_written{};
    uint64_t clock_written = ~0ull;
    uint32_t clock_flags_written = ~0u;
    long short_get_msrs = -1;             // when >= 0, GET_MSRS reads this many and stops

    static const char* name(unsigned long req) {
        static const std::map<unsigned long, const char*> names = {
            {KVM_GET_REGS, "GET_REGS"},         {KVM_SET_REGS, "SET_REGS"},
            {KVM_GET_SREGS, "GET_SREGS"},       {KVM_SET_SREGS, "SET_SREGS"},
            {kKvmGetXsave, "GET_XSAVE"},        {kKvmGetXsave2, "GET_XSAVE2"},
            {kKvmSetXsave, "SET_XSAVE"},        {KVM_GET_FPU, "GET_FPU"},
            {KVM_SET_FPU, "SET_FPU"},           {KVM_GET_XCRS, "GET_XCRS"},
            {KVM_SET_XCRS, "SET_XCRS"},         {KVM_GET_DEBUGREGS, "GET_DEBUGREGS"},
            {KVM_SET_DEBUGREGS, "SET_DEBUGREGS"}, {kKvmGetMsrs, "GET_MSRS"},
            {kKvmSetMsrs, "SET_MSRS"},          {KVM_GET_LAPIC, "GET_LAPIC"},
            {KVM_SET_LAPIC, "SET_LAPIC"},       {KVM_GET_VCPU_EVENTS, "GET_VCPU_EVENTS"},
            {KVM_SET_VCPU_EVENTS, "SET_VCPU_EVENTS"}, {KVM_GET_MP_STATE, "GET_MP_STATE"},
            {KVM_SET_MP_STATE, "SET_MP_STATE"}, {KVM_GET_IRQCHIP, "GET_IRQCHIP"},
            {KVM_SET_IRQCHIP, "SET_IRQCHIP"},   {KVM_GET_PIT2, "GET_PIT2"},
            {KVM_SET_PIT2, "SET_PIT2"},         {KVM_GET_CLOCK, "GET_CLOCK"},
            {KVM_SET_CLOCK, "SET_CLOCK"},
        };
        auto it = names.find(req);
        return it == names.end() ? "?" : it->second;
    }

    int check_extension(long cap) override {
        auto it = caps.find(cap);
        return it == caps.end() ? 0 : it->second;
    }

    long call(unsigned long req, void* arg) override {
        std::string n = name(req);
        calls.push_back(n);
        if (auto it = refuse.find(n); it != refuse.end()) return -it->second;
        if (req == kKvmGetMsrs || req == kKvmSetMsrs) {
            auto* h = static_cast<KvmMsrsHeader*>(arg);
            auto* e = reinterpret_cast<kvm_msr_entry*>(h + 1);
            if (h->nmsrs >= 256) return -E2BIG;  // KVM's MAX_IO_MSRS
            std::vector<kvm_msr_entry> seen;
            long i = 0;
            for (; i < long(h->nmsrs); i++) {
                if (absent_msrs.count(e[i].index) || (req == kKvmGetMsrs && i == short_get_msrs)) break;
                if (req == kKvmGetMsrs) e[i].data = uint64_t(e[i].index) * 3 + 1;
                seen.push_back(e[i]);
            }
            if (req == kKvmSetMsrs) msr_writes.push_back(seen);
            return i;
        }
        if (req == KVM_SET_VCPU_EVENTS) events_written = *static_cast<kvm_vcpu_events*>(arg);
        if (req == KVM_SET_CLOCK) {
            clock_written = static_cast<kvm_clock_data*>(arg)->clock;
            clock_flags_written = static_cast<kvm_clock_data*>(arg)->flags;
        }
        if (req == KVM_GET_CLOCK) static_cast<kvm_clock_data*>(arg)->clock = 123456789;
        if (req == KVM_GET_IRQCHIP) {
            auto* c = static_cast<kvm_irqchip*>(arg);
            if (c->chip_id == KVM_IRQCHIP_IOAPIC) c->chip.ioapic.base_address = 0xfec00000;
            else c->chip.pic.irq_base = uint8_t(0x20 + 8 * c->chip_id);
        }
        if (req == KVM_GET_REGS) static_cast<kvm_regs*>(arg)->rip = 0x1234;
        return 0;
    }

    size_t count(const std::string& n) const {
        size_t k = 0;
        for (const auto& c : calls) k += c == n;
        return k;
    }
};

}  // namespace minivmm::testing
