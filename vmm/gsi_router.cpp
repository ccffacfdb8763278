#include "vmm/gsi_router.hpp"

#include "vmm/kvm.hpp"

namespace minivmm {

uint32_t GsiRouter::add_msi(const MsiMessage& msg) {
    std::lock_guard g(lock_);
    uint32_t gsi = kFirstMsiGsi;
    while (msi_.count(gsi)) gsi++;  // reuse freed numbers: KVM's table is bounded
    msi_[gsi] = msg;
    commit();
    return gsi;
}

void GsiRouter::update_msi(uint32_t gsi, const MsiMessage& msg) {
    std::lock_guard g(lock_);
    auto it = msi_.find(gsi);
    if (it == msi_.end() || (it->second.address == msg.address && it->second.data == msg.data)) return;
    it->second = msg;
    commit();
}

void GsiRouter::remove(uint32_t gsi) {
    std::lock_guard g(lock_);
    if (msi_.erase(gsi)) commit();
}

void GsiRouter::commit() {
    // KVM's default table first (what it set up with the irqchip): GSIs 0-15
    // reach both the IOAPIC pin and the PIC pin, 16-23 the IOAPIC only.
    std::vector<kvm_irq_routing_entry> e;
    for (uint32_t gsi = 0; gsi < 24; gsi++) {
        kvm_irq_routing_entry r{};
        r.gsi = gsi;
        r.type = KVM_IRQ_ROUTING_IRQCHIP;
        r.u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
        r.u.irqchip.pin = gsi;
        e.push_back(r);
        if (gsi < 16) {
            r.u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
            r.u.irqchip.pin = gsi % 8;
            e.push_back(r);
        }
    }
    for (const auto& [gsi, m] : msi_) {
        kvm_irq_routing_entry r{};
        r.gsi = gsi;
        r.type = KVM_IRQ_ROUTING_MSI;
        r.u.msi.address_lo = static_cast<uint32_t>(m.address);
        r.u.msi.address_hi = static_cast<uint32_t>(m.address >> 32);
        r.u.msi.data = m.data;
        e.push_back(r);
    }
    KvmList<KvmIrqRoutingHeader, kvm_irq_routing_entry> list(e.size());
    list.header()->nr = static_cast<uint32_t>(e.size());
    list.header()->flags = 0;
    std::copy(e.begin(), e.end(), list.entries());
    kvm_ioctl(vm_.fd(), kKvmSetGsiRouting, list.buf.data(), "SET_GSI_ROUTING");
}

}  // namespace minivmm
