// The host side of a NIC as the virtio-net device wants it (NetBackend):
// a port and the datapath that serves its queue pairs.
#pragma once
#include <memory>
#include <string>

#include "vhost/ports/port.hpp"
#include "vhost/vhost.hpp"
#include "virtio/net_backend.hpp"

namespace minivmm {

// vhost null: minivmm's own datapath (vhost=off, off.cpp), one I/O thread
// per pair named "<label>-io<k>", started here. Otherwise the VhostBackend
// serves the pairs (vhost_rings.cpp). Throws UserError for a port with no
// queues or more than net::kMaxPairs.
std::unique_ptr<NetBackend> make_net_backend(std::unique_ptr<NetPort> port, std::unique_ptr<VhostBackend> vhost,
                                             const std::string& label);

}  // namespace minivmm
