// KVM's GSI routing table: the in-kernel PIC/IOAPIC lines plus one MSI route
// per interrupt that bypasses minivmm (an irqfd). KVM_SET_GSI_ROUTING
// replaces the whole table, so one owner keeps all of it.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "vmm/kvm_bypass.hpp"
#include "vmm/msix.hpp"

namespace minivmm {

class Vm;

class GsiRouter : public MsiRoutes {
public:
    explicit GsiRouter(Vm& vm) : vm_(vm) {}
    uint32_t add_msi(const MsiMessage& msg) override;
    void update_msi(uint32_t gsi, const MsiMessage& msg) override;
    void remove(uint32_t gsi) override;

private:
    void commit();
    static constexpr uint32_t kFirstMsiGsi = 24;  // after the IOAPIC's 24 pins
    Vm& vm_;
    std::mutex lock_;
    std::map<uint32_t, MsiMessage> msi_;
};

}  // namespace minivmm
