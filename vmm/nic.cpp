#include "vmm/nic.hpp"

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstring>

#include "vmm/error.hpp"
#include "virtio/net.hpp"
#include "vhost/net_backends.hpp"
#include "vhost/ports/raw_socket.hpp"
#include "vhost/ports/tap.hpp"
#include "vhost/vhost.hpp"

namespace minivmm {

NicHost::NicHost() = default;
NicHost::NicHost(NicHost&&) noexcept = default;
NicHost::~NicHost() = default;

namespace {
// A macvtap passes on only frames for its link's own MAC.
std::array<uint8_t, 6> interface_mac(const std::string& ifname) {
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
    Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!s || ioctl(s.get(), SIOCGIFHWADDR, &ifr) < 0) throw sys_error("--net macvtap=" + ifname + ": its MAC");
    std::array<uint8_t, 6> m;
    std::memcpy(m.data(), ifr.ifr_hwaddr.sa_data, 6);
    return m;
}

// --net mtu= sets the link's MTU before the device reads it (VIRTIO_NET_F_MTU).
std::unique_ptr<NetPort> open_port(const NetSpec& spec, NicHost& h, bool shared) {
    if (spec.kind == NetSpec::Kind::Raw) {
        auto raw = std::make_unique<RawSocket>(spec.ifname);
        if (spec.mtu) raw->set_mtu(*spec.mtu);
        return raw;
    }
    std::unique_ptr<Tap> tap;
    if (spec.kind == NetSpec::Kind::Macvtap) {
        tap = Tap::macvtap(spec.ifname, spec.queues);
    } else {
        tap = std::make_unique<Tap>(spec.ifname, spec.queues, shared);
        h.notes.push_back(tap->created_note());
    }
    if (spec.mtu) tap->set_mtu(*spec.mtu);
    h.notes.push_back(tap->offload_note());
    // RSS steers between pairs: with one there is nothing to load.
    if (spec.queues > 1) h.notes.push_back(tap->attach_steering());
    return tap;
}

std::unique_ptr<VhostBackend> open_vhost(const NetSpec& spec, NicHost& h) {
    switch (spec.vhost) {
        case NetSpec::Datapath::Off: return nullptr;
        case NetSpec::Datapath::Kernel: return open_kernel_vhost(spec.queues);
        case NetSpec::Datapath::Worker: return make_worker_vhost(spec.queues, h.label);
        case NetSpec::Datapath::Auto: break;
    }
    try {
        auto v = open_kernel_vhost(spec.queues);
        h.notes.push_back("using vhost=kernel (/dev/vhost-net)");
        return v;
    } catch (const std::exception& e) {
        // Missing, not permitted, or refusing us as its owner (a task
        // limit): any of them leaves the worker as good a choice.
        h.notes.push_back(std::string("using vhost=worker (") + e.what() + ")");
        return make_worker_vhost(spec.queues, h.label);
    }
}
}  // namespace

NicHost open_nic_host(const NetSpec& spec, unsigned index, bool shared) {
    NicHost h;
    h.label = "net" + std::to_string(index);
    // The port first: a missing interface is the likelier mistake.
    h.port = open_port(spec, h, shared);
    // Default: locally administered (0x52 has bit 1 set), stable per NIC index.
    h.mac = spec.mac.value_or(std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0x12, 0x34, static_cast<uint8_t>(0x56 + index)});
    if (spec.kind == NetSpec::Kind::Macvtap) {
        auto own = interface_mac(spec.ifname);
        if (!spec.mac) h.mac = own;
        else if (h.mac != own)
            h.notes.push_back("mac differs from macvtap " + spec.ifname + "'s own; frames for it will not arrive");
    }
    h.vhost = open_vhost(spec, h);
    return h;
}

std::unique_ptr<VirtioNet> make_nic(const GuestMemory& mem, NicHost host) {
    for (const auto& note : host.notes)
        if (!note.empty()) std::fprintf(stderr, "minivmm: %s: %s\n", host.label.c_str(), note.c_str());
    return std::make_unique<VirtioNet>(mem, make_net_backend(std::move(host.port), std::move(host.vhost), host.label),
                                       host.mac, host.label);
}

}  // namespace minivmm
