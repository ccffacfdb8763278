#include "vhost/ports/tap.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "vhost/ports/link_mtu.hpp"
#include "vmm/uapi_compat.hpp"
#include "vmm/error.hpp"

namespace minivmm {

Fd Tap::open_queue(bool multi_queue, bool existed) {
    Fd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) throw UserError("--net " + name_ + ": /dev/net/tun is missing (modprobe tun)");
        throw sys_error("--net " + name_ + ": cannot open /dev/net/tun");
    }
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name_.c_str(), IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (multi_queue ? IFF_MULTI_QUEUE : 0);
    if (ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
        int err = errno;
        if (err == EPERM)
            throw UserError("--net " + name_ + ": no permission to " + (existed ? "attach to" : "create") +
                            " this tap (needs CAP_NET_ADMIN, or a tap created for your user)");
        // The kernel says EINVAL both for "not a tap" and for a queue-mode
        // mismatch; the caller tells them apart.
        if (err == EINVAL && existed) return Fd();
        if (err == EBUSY) throw UserError("--net " + name_ + ": tap is in use by another process");
        throw sys_error("--net " + name_ + ": cannot attach to tap", err);
    }
    // The kernel checks flags the tap was made with; ours must all be honoured.
    if (ioctl(fd.get(), TUNGETIFF, &ifr) == 0 && !(ifr.ifr_flags & IFF_VNET_HDR))
        throw UserError("--net " + name_ + ": tap does not support virtio-net headers");
    return fd;
}

Tap::Tap(const std::string& name, unsigned queues, bool shared) : name_(name), shared_(shared) {
    if (name.empty() || name.size() >= IFNAMSIZ) throw UserError("--net: bad interface name '" + name + "'");
    // Whether TUNSETIFF below attaches or creates: creating needs saying.
    bool existed = if_nametoindex(name.c_str()) != 0;
    // A tap minivmm creates is multi_queue even for one queue: a live
    // migration to another minivmm on this host hands its queues over to
    // the destination's, which only a multi-queue tap allows.
    bool mq = queues > 1 || !existed;
    Fd first = open_queue(mq, existed);
    if (!first && !mq) {
        // One queue is enough of a tap made with multi_queue too.
        first = open_queue(true, existed);
        mq = true;
    }
    if (!first) {
        if (queues > 1)
            throw UserError("--net " + name + ": exists but is not a tap made with multi_queue, which queues=" +
                            std::to_string(queues) + " needs (ip tuntap add dev " + name +
                            " mode tap multi_queue)");
        throw UserError("--net " + name + ": interface exists but is not a tap");
    }
    fds_.push_back(std::move(first));
    multi_queue_ = mq;
    for (unsigned q = 1; q < queues; q++) {
        Fd fd = open_queue(true, true);
        if (!fd) throw UserError("--net " + name + ": cannot open tap queue " + std::to_string(q));
        fds_.push_back(std::move(fd));
    }
    if (mq && existed && !shared_) {
        // A steering program outlives a minivmm killed before it could
        // detach it (SIGKILL, a seccomp trap), and would go on steering this
        // persistent tap by a table nobody updates: detached before anything
        // else (no capability needed; attach_steering() may attach ours). A
        // kernel without steering refuses the call, and has nothing to detach.
        int none = -1;
        ioctl(fds_[0].get(), TUNSETSTEERINGEBPF, &none);
    }
    if (!existed) {
        // A fresh tap is down; bring the link up so only an address is missing.
        // Failing that is an error, not a warning: the tap lives only as long
        // as this VM, so left down its NIC would pass no frame with nothing
        // saying why; and whoever may create a tap may bring it up, so a
        // failure is something in the user's setup to look at. (Throwing
        // closes the fds, which removes the tap again.)
        std::string what = "--net " + name + ": cannot bring the new tap up";
        Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        if (!s) throw sys_error(what + " (no socket for it)");
        ifreq up{};
        std::strncpy(up.ifr_name, name.c_str(), IFNAMSIZ - 1);
        if (ioctl(s.get(), SIOCGIFFLAGS, &up) < 0) throw sys_error(what + " (SIOCGIFFLAGS)");
        up.ifr_flags |= IFF_UP;
        if (ioctl(s.get(), SIOCSIFFLAGS, &up) < 0) throw sys_error(what);
        created_ = "created tap " + name + (queues > 1 ? " (multi_queue)" : "") +
                   " for this VM (it goes away when minivmm exits)";
    }
    // With VERSION_1 the header always has num_buffers: 12 bytes both ways.
    set_vnet_header_size(12);
    probe();
}

// What the tap can do, asked once: the device's offer depends on it and
// cannot change while a driver uses it. A kernel before 6.2 refuses the
// USO flags (EINVAL for any flag it does not know), which is how they are
// told apart; the kernel takes USO4 and USO6 only together, with CSUM. The
// offloads go back to none: the guest's acked features set them.
void Tap::probe() {
    mtu_ = link_mtu(name_, describe());
    if (shared_) {
        // Probing sets the offloads of the tap another minivmm's guest is
        // using: the kernel's version says the same (tun took USO in 6.2).
        utsname u{};
        unsigned major = 0, minor = 0;
        uso_ = ::uname(&u) == 0 && std::sscanf(u.release, "%u.%u", &major, &minor) == 2 &&
               (major > 6 || (major == 6 && minor >= 2));
    } else {
        unsigned long uso = TUN_F_CSUM | TUN_F_USO4 | TUN_F_USO6;
        uso_ = ioctl(fd(0), TUNSETOFFLOAD, uso) == 0;
        ioctl(fd(0), TUNSETOFFLOAD, 0ul);
    }
    if (!uso_)
        offload_note_ = describe() + " refuses UDP segmentation offload (TUN_F_USO4/6, Linux 6.2 or later): " +
                        "USO not offered";
}

// The tap's device-wide settings as this NIC wants them: when it takes the
// tap over from a migration's source, or takes it back after a failed
// migration (the destination may have set its own meanwhile).
void Tap::apply_device_settings() {
    shared_ = false;
    set_offload(offload_);
    if (steering_) {
        try {
            steering_->attach(fd(0));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "minivmm: %s: steering program not attached again: %s\n", describe().c_str(),
                         e.what());
        }
    }
}

std::string Tap::attach_steering() {
    // A macvtap's character device has its own ioctls, and no steering program among them.
    if (!device_.empty()) return "RSS not offered: a macvtap takes no steering program (TUNSETSTEERINGEBPF)";
    try {
        auto s = std::make_unique<TapSteering>();
        if (!shared_) s->attach(fd(0));  // else when this NIC takes the tap
        steering_ = std::move(s);
        return "";
    } catch (const std::runtime_error& e) {
        return std::string("RSS not offered: ") + e.what();
    }
}

void Tap::set_mtu(unsigned mtu) {
    set_link_mtu(name_, mtu, "--net " + name_);
    mtu_ = link_mtu(name_, "--net " + name_);
}

namespace {
// Another process holding the character device `dev` (pid, or 0): the
// kernel lets it, and each holder's fds become queues of the same link, so
// two VMs would silently split one link's traffic.
pid_t holder_of(dev_t dev) {
    DIR* proc = ::opendir("/proc");
    pid_t found = 0;
    while (dirent* p = proc && !found ? ::readdir(proc) : nullptr) {
        pid_t pid = static_cast<pid_t>(std::atoi(p->d_name));
        if (pid <= 0 || pid == ::getpid()) continue;
        std::string fds = std::string("/proc/") + p->d_name + "/fd";
        DIR* d = ::opendir(fds.c_str());
        while (dirent* f = d ? ::readdir(d) : nullptr) {
            struct stat st;
            if (::stat((fds + "/" + f->d_name).c_str(), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == dev) {
                found = pid;
                break;
            }
        }
        if (d) ::closedir(d);
    }
    if (proc) ::closedir(proc);
    return found;
}
}  // namespace

std::unique_ptr<Tap> Tap::macvtap(const std::string& name, unsigned queues) {
    if (name.empty() || name.size() >= IFNAMSIZ) throw UserError("--net: bad interface name '" + name + "'");
    unsigned index = if_nametoindex(name.c_str());
    if (!index) throw UserError("--net macvtap=" + name + ": no such interface");
    // A macvtap link's character device is named after its interface index.
    std::unique_ptr<Tap> t(new Tap);
    t->name_ = name;
    t->device_ = "/dev/tap" + std::to_string(index);
    struct stat st;
    if (::stat(t->device_.c_str(), &st) == 0 && S_ISCHR(st.st_mode))
        if (pid_t pid = holder_of(st.st_rdev))
            throw UserError("--net macvtap=" + name + ": " + t->device_ + " is in use by process " +
                            std::to_string(pid));
    for (unsigned q = 0; q < queues; q++) {
        Fd fd(::open(t->device_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
        if (!fd) {
            int err = errno;
            if (err == ENOENT || err == ENXIO || err == ENODEV)
                throw UserError("--net macvtap=" + name + ": not a macvtap link (no " + t->device_ + ")");
            if (err == EACCES || err == EPERM)
                throw UserError("--net macvtap=" + name + ": no permission to open " + t->device_);
            throw sys_error("--net macvtap=" + name + ": cannot open " + t->device_, err);
        }
        ifreq ifr{};
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (queues > 1 ? IFF_MULTI_QUEUE : 0);
        if (ioctl(fd.get(), TUNSETIFF, &ifr) < 0)
            throw sys_error("--net macvtap=" + name + ": cannot set up " + t->device_);
        t->fds_.push_back(std::move(fd));
    }
    t->set_vnet_header_size(12);
    t->probe();
    return t;
}

std::string Tap::describe() const {
    return device_.empty() ? "tap " + name_ : "macvtap " + name_ + " (" + device_ + ")";
}

// Header size and offloads belong to the tap device, not a queue: set them
// through queue 0, which is never detached (a detached fd refuses ioctls).
void Tap::set_vnet_header_size(int bytes) {
    if (ioctl(fd(0), TUNSETVNETHDRSZ, &bytes) < 0) throw sys_error("tap " + name_ + ": TUNSETVNETHDRSZ");
}

void Tap::set_offload(unsigned flags) {
    offload_ = flags;
    if (shared_) return;  // applied when this NIC takes the tap
    // Failure is not fatal (an older kernel lacking a flag): the tap then
    // finishes checksums and segments itself, which is slower but correct.
    if (ioctl(fd(0), TUNSETOFFLOAD, static_cast<unsigned long>(flags)) < 0 && !offload_refused_) {
        offload_refused_ = true;
        std::fprintf(stderr, "minivmm: tap %s: TUNSETOFFLOAD %#x failed: %s (said once)\n", name_.c_str(), flags,
                     std::strerror(errno));
    }
}

bool Tap::hand_over_queue(unsigned queue, bool attached) {
    if (!multi_queue_ || queue >= fds_.size()) return false;
    ifreq ifr{};
    ifr.ifr_flags = attached ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
    // EINVAL: already in that state.
    bool done = ioctl(fd(queue), TUNSETQUEUE, &ifr) == 0 || errno == EINVAL;
    // Queue 0 comes first (PortBackend): with it attached the tap is this
    // NIC's again, and its device settings too.
    if (done && attached && queue == 0) apply_device_settings();
    return done;
}

void Tap::set_queue_attached(unsigned queue, bool attached) {
    if (queue == 0 || queue >= fds_.size()) return;
    ifreq ifr{};
    ifr.ifr_flags = attached ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
    // EINVAL: already in that state.
    if (ioctl(fd(queue), TUNSETQUEUE, &ifr) < 0 && errno != EINVAL)
        std::fprintf(stderr, "minivmm: tap %s: %s queue %u: %s\n", name_.c_str(), attached ? "attach" : "detach",
                     queue, std::strerror(errno));
}

}  // namespace minivmm
