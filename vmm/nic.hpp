// A NIC from its --net spec, in two steps: the host side (port, vhost) is
// opened before KVM, so a missing tap or a refused /dev/vhost-net is the one
// line a user sees even on a host without KVM; the device is made after.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "vmm/cli.hpp"

namespace minivmm {

class GuestMemory;
class NetPort;
class VhostBackend;
class VirtioNet;

struct NicHost {
    std::string label;  // "net<index>": thread names and messages
    std::unique_ptr<NetPort> port;
    std::unique_ptr<VhostBackend> vhost;  // null: vhost=off
    std::array<uint8_t, 6> mac;
    std::vector<std::string> notes;  // said once the VM exists, so a later error stays the only line
    NicHost();
    NicHost(NicHost&&) noexcept;
    ~NicHost();
};

// Throws UserError: the port cannot be opened, or the vhost asked for.
// shared: a migrating guest's source may still run on the port (Tap's).
NicHost open_nic_host(const NetSpec& spec, unsigned index, bool shared = false);
// The device, once the VM exists; prints the host side's notes first.
std::unique_ptr<VirtioNet> make_nic(const GuestMemory& mem, NicHost host);

}  // namespace minivmm
