// A stand-in for KVM's ioeventfd, irqfd and MSI routing tables, for unit
// tests that run without /dev/kvm. It answers as KVM does where the
// transport's bookkeeping matters: EEXIST for a second ioeventfd at an
// address and length, ENOENT for removing one KVM does not have, EBUSY for
// a second irqfd on one eventfd. Failures KVM has for its own reasons (its
// bus or memory full) can be switched on.
#pragma once
#include <cerrno>
#include <cstdint>
#include <map>
#include <set>
#include <utility>

#include "vmm/error.hpp"
#include "vmm/kvm_bypass.hpp"

namespace minivmm::testing {

struct FakeKvm : KvmEventfds, MsiRoutes {
    std::map<std::pair<uint64_t, uint32_t>, int> ioeventfds;  // (address, length) -> eventfd
    std::map<int, uint32_t> irqfds;                           // eventfd -> GSI
    std::map<uint32_t, MsiMessage> routes;
    std::set<uint64_t> refused;     // addresses KVM will not take (its bus full, say)
    bool refuse_irqfds = false;     // every KVM_IRQFD call fails
    bool refuse_routes = false;     // every KVM_SET_GSI_ROUTING fails
    int calls = 0;                  // ioeventfd calls
    uint32_t next_gsi = 24;

    void ioeventfd(uint64_t addr, uint32_t len, int fd, bool assign) override {
        calls++;
        auto it = ioeventfds.find({addr, len});
        if (assign) {
            if (it != ioeventfds.end() || refused.count(addr)) throw internal_error("KVM IOEVENTFD failed", EEXIST);
            ioeventfds[{addr, len}] = fd;
        } else {
            // KVM matches address, length and eventfd.
            if (it == ioeventfds.end() || it->second != fd) throw internal_error("KVM IOEVENTFD failed", ENOENT);
            ioeventfds.erase(it);
        }
    }
    void irqfd(int fd, uint32_t gsi, bool assign) override {
        if (refuse_irqfds) throw internal_error("KVM IRQFD failed", ENOMEM);
        if (assign) {
            if (irqfds.count(fd)) throw internal_error("KVM IRQFD failed", EBUSY);
            irqfds[fd] = gsi;
        } else {
            // KVM answers 0 for an eventfd and GSI it has no irqfd for.
            auto it = irqfds.find(fd);
            if (it != irqfds.end() && it->second == gsi) irqfds.erase(it);
        }
    }
    uint32_t add_msi(const MsiMessage& m) override {
        if (refuse_routes) throw internal_error("KVM SET_GSI_ROUTING failed", ENOMEM);
        routes[next_gsi] = m;
        return next_gsi++;
    }
    void update_msi(uint32_t gsi, const MsiMessage& m) override {
        if (refuse_routes) throw internal_error("KVM SET_GSI_ROUTING failed", ENOMEM);
        if (routes.count(gsi)) routes[gsi] = m;
    }
    void remove(uint32_t gsi) override {
        if (refuse_routes) throw internal_error("KVM SET_GSI_ROUTING failed", ENOMEM);
        routes.erase(gsi);
    }
};

}  // namespace minivmm::testing
