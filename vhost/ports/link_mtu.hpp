// A host link's MTU, read and set through its name (SIOCGIFMTU,
// SIOCSIFMTU): the ports report it to the device (VIRTIO_NET_F_MTU) and
// --net mtu= sets it.
#pragma once
#include <string>

namespace minivmm {

// The link's current MTU. Throws on failure; `what` starts the message.
unsigned link_mtu(const std::string& ifname, const std::string& what);
// Throws UserError when the kernel refuses (no CAP_NET_ADMIN, a value the
// link cannot take).
void set_link_mtu(const std::string& ifname, unsigned mtu, const std::string& what);

}  // namespace minivmm
