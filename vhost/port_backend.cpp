#include "vhost/port_backend.hpp"

#include <linux/if_tun.h>

#include <cstdio>

#include "vhost/net_backends.hpp"
#include "vmm/uapi_compat.hpp"
#include "virtio/net_features.hpp"
#include "vmm/error.hpp"

namespace minivmm {

PortBackend::PortBackend(std::unique_ptr<NetPort> port) : port_(std::move(port)), attached_(port_->queues(), 1) {
    port_->set_offload(0);
}

// The tap may hand over frames with partial checksums or GSO only as the
// guest agreed to take them.
void PortBackend::set_offloads(uint64_t features) {
    unsigned off = 0;
    if (features & net::kGuestCsum) {
        off |= TUN_F_CSUM;
        if (features & net::kGuestTso4) off |= TUN_F_TSO4;
        if (features & net::kGuestTso6) off |= TUN_F_TSO6;
        // ECN only qualifies TSO: the tap refuses it alone (and a driver
        // acking GUEST_ECN without GUEST_TSO4/6 breaks the spec's rule).
        if ((features & net::kGuestEcn) && (off & (TUN_F_TSO4 | TUN_F_TSO6))) off |= TUN_F_TSO_ECN;
        // The kernel takes the two only together: a driver that acked one
        // gets UDP GSO frames segmented by the tap instead.
        if ((features & net::kGuestUso4) && (features & net::kGuestUso6)) off |= TUN_F_USO4 | TUN_F_USO6;
    }
    port_->set_offload(off);
}

void PortBackend::set_rss(const net::RssConfig* c) {
    PortSteering* s = port_->steering();
    if (!s) return;
    if (c) s->set(c->hash_types, c->key, c->table, c->unclassified);
    else s->clear();
}

// The queues the pairs in use have attached go, or come back: the
// attached_ record stays as the pairs in use want it.
void PortBackend::set_port_attached(bool attached) {
    for (unsigned k = 0; k < attached_.size(); k++)
        if (attached_[k] && !port_->hand_over_queue(k, attached) && !attached)
            std::fprintf(stderr, "minivmm: %s: queue %u cannot be handed over (a tap made without multi_queue?)\n",
                         port_->describe().c_str(), k);
}

// Recorded only once the port did it: a refused attach is tried again at
// the next change of pairs in use.
void PortBackend::attach_queue(unsigned k) {
    if (!attached_[k]) port_->set_queue_attached(k, true), attached_[k] = 1;
}

void PortBackend::detach_queue(unsigned k) {
    if (attached_[k] && k > 0) port_->set_queue_attached(k, false), attached_[k] = 0;
}

std::unique_ptr<NetBackend> make_net_backend(std::unique_ptr<NetPort> port, std::unique_ptr<VhostBackend> vhost,
                                             const std::string& label) {
    // Before any thread starts for them.
    if (port->queues() < 1 || port->queues() > net::kMaxPairs) throw UserError("--net: bad number of queue pairs");
    if (vhost) return make_vhost_rings_backend(std::move(port), std::move(vhost), label);
    return make_off_backend(std::move(port), label);
}

}  // namespace minivmm
