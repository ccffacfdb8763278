#include "vhost/tap.hpp"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "vmm/error.hpp"

namespace minivmm {

Tap::Tap(const std::string& name) : name_(name) {
    if (name.empty() || name.size() >= IFNAMSIZ) throw UserError("--net: bad interface name '" + name + "'");
    // Whether TUNSETIFF below attaches or creates: creating needs saying.
    bool existed = if_nametoindex(name.c_str()) != 0;
    fd_ = Fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!fd_) {
        if (errno == ENOENT) throw UserError("--net " + name + ": /dev/net/tun is missing (modprobe tun)");
        throw sys_error("--net " + name + ": cannot open /dev/net/tun");
    }
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (ioctl(fd_.get(), TUNSETIFF, &ifr) < 0) {
        int err = errno;
        if (err == EPERM)
            throw UserError("--net " + name + ": no permission to " + (existed ? "attach to" : "create") +
                            " this tap (needs CAP_NET_ADMIN, or a tap created for your user)");
        if (err == EINVAL && existed) throw UserError("--net " + name + ": interface exists but is not a tap");
        if (err == EBUSY) throw UserError("--net " + name + ": tap is in use by another process");
        throw sys_error("--net " + name + ": cannot attach to tap", err);
    }
    // The kernel checks flags the tap was made with; ours must all be honoured.
    if (ioctl(fd_.get(), TUNGETIFF, &ifr) == 0 && !(ifr.ifr_flags & IFF_VNET_HDR))
        throw UserError("--net " + name + ": tap does not support virtio-net headers");
    if (!existed) {
        created_ = true;
        // A fresh tap is down; bring the link up so only an address is missing.
        int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ifreq up{};
        std::strncpy(up.ifr_name, name.c_str(), IFNAMSIZ - 1);
        if (s >= 0 && ioctl(s, SIOCGIFFLAGS, &up) == 0) {
            up.ifr_flags |= IFF_UP;
            ioctl(s, SIOCSIFFLAGS, &up);
        }
        if (s >= 0) ::close(s);
        std::fprintf(stderr, "minivmm: created tap %s for this VM (it goes away when minivmm exits)\n",
                     name.c_str());
    }
}

void Tap::set_vnet_header_size(int bytes) {
    if (ioctl(fd_.get(), TUNSETVNETHDRSZ, &bytes) < 0) throw sys_error("tap " + name_ + ": TUNSETVNETHDRSZ");
}

void Tap::set_offload(unsigned flags) {
    // Failure is not fatal (an older kernel lacking a flag): the tap then
    // finishes checksums and segments itself, which is slower but correct.
    if (ioctl(fd_.get(), TUNSETOFFLOAD, static_cast<unsigned long>(flags)) < 0)
        std::fprintf(stderr, "minivmm: tap %s: TUNSETOFFLOAD %#x failed: %s\n", name_.c_str(), flags,
                     std::strerror(errno));
}

}  // namespace minivmm
