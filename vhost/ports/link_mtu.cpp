#include "vhost/ports/link_mtu.hpp"

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "vmm/error.hpp"
#include "vmm/fd.hpp"

namespace minivmm {

namespace {
Fd ioctl_socket(const std::string& what) {
    Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!s) throw sys_error(what + ": no socket to ask the link's MTU");
    return s;
}

ifreq request(const std::string& ifname) {
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
    return ifr;
}
}  // namespace

unsigned link_mtu(const std::string& ifname, const std::string& what) {
    Fd s = ioctl_socket(what);
    ifreq ifr = request(ifname);
    if (ioctl(s.get(), SIOCGIFMTU, &ifr) < 0) throw sys_error(what + ": cannot read the MTU of " + ifname);
    return ifr.ifr_mtu > 0 ? static_cast<unsigned>(ifr.ifr_mtu) : 0;
}

void set_link_mtu(const std::string& ifname, unsigned mtu, const std::string& what) {
    Fd s = ioctl_socket(what);
    ifreq ifr = request(ifname);
    ifr.ifr_mtu = static_cast<int>(mtu);
    if (ioctl(s.get(), SIOCSIFMTU, &ifr) == 0) return;
    int err = errno;
    std::string m = what + ": cannot set " + ifname + "'s MTU to " + std::to_string(mtu);
    if (err == EPERM || err == EACCES) throw UserError(m + " (needs CAP_NET_ADMIN)");
    // A macvtap's may not exceed its lower device's; other links have their own limits.
    if (err == EINVAL) throw UserError(m + ": the link refuses that value");
    throw sys_error(m, err);
}

}  // namespace minivmm
