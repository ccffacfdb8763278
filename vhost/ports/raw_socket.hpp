// A raw packet socket (AF_PACKET, SOCK_RAW) bound to a host interface as a
// NIC's port: the guest's frames go out of that interface as they are, and
// everything the interface receives (promiscuous) comes to the guest. It
// attaches a guest straight to an SR-IOV function, a macvlan or a veth
// without a bridge. Frames carry no virtio-net header, so no offloads (see
// NetPort::vnet_header).
#pragma once
#include <string>

#include "vhost/ports/port.hpp"
#include "vmm/fd.hpp"

namespace minivmm {

class RawSocket : public NetPort {
public:
    // Throws UserError: interface missing, no permission (CAP_NET_RAW).
    explicit RawSocket(const std::string& ifname);
    std::string describe() const override { return "raw " + name_; }
    unsigned queues() const override { return 1; }
    int fd(unsigned) const override { return fd_.get(); }
    bool vnet_header() const override { return false; }
    unsigned mtu() const override { return mtu_; }
    // --net mtu=: the interface's MTU (SIOCSIFMTU). Throws UserError if refused.
    void set_mtu(unsigned mtu);

private:
    std::string name_;
    Fd fd_;
    unsigned mtu_ = 0;
};

}  // namespace minivmm
