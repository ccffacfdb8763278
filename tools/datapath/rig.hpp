// The datapath benchmark's fixture: a tap in this process's private network
// namespace, plain memory as guest RAM, and a vhost backend set up on it as
// minivmm's virtio-net does for a Linux driver: minivmm's worker threads or
// the kernel's vhost-net, either reached only through the VhostBackend
// interface (ring 0 rx, 1 tx). The kernel's reads the driver's rings and
// buffers through the memory table (this process's addresses of the plain
// memory) and is kicked and calls back through the same eventfds.
#pragma once
#include <fcntl.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_tun.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

#include "tests/support/guest_ring.hpp"
#include "tools/datapath/frames.hpp"
#include "vhost/vhost.hpp"
#include "virtio/device.hpp"
#include "virtio/net_datapath.hpp"

namespace bench {

using minivmm::testing::GuestRing;
using minivmm::testing::RingLayout;
using minivmm::testing::UsedElem;

constexpr unsigned kRx = 0, kTx = 1;  // the worker's ring indices
constexpr uint16_t kQSize = 256;      // a Linux guest's virtio-net ring size
constexpr uint64_t kMemSize = 64ull << 20;
// Guest-physical layout: the two rings, a 68 KiB send slot per TX head, a
// 4 KiB receive buffer per RX head (a Linux guest's mergeable receive
// buffers are at most a page).
constexpr uint64_t kRingGpa[2] = {0x10000, 0x20000};
constexpr uint64_t kTxBufs = 0x100000, kTxSlot = 0x11000;
constexpr uint64_t kRxBufs = 0x2000000, kRxBufLen = 4096;
constexpr int kStallMs = 2000;  // no progress for this long is a lost frame, not slowness
constexpr char kTapName[] = "mvbench0";
// The host's side (on the tap) and the simulated guest, for the TCP stream.
constexpr Endpoint kGuest{{0x02, 0, 0, 0, 0, 0x02}, 0x0a090002, 5201};
constexpr uint32_t kHostIp = 0x0a090001;

[[noreturn]] inline void fail(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
}

struct Fd {
    int fd;
    explicit Fd(int f) : fd(f) {
        if (fd < 0) fail("open");
    }
    ~Fd() { ::close(fd); }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
};

struct Tap {
    int fd = -1, ifindex = 0;
};
inline Tap g_tap;

inline sockaddr_in inet(uint32_t ip) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(ip);
    return a;
}

// A tap as minivmm opens one (virtio-net headers, non-blocking) with the
// offloads a Linux guest switches on, up, with the host's address and a
// permanent neighbour entry for the simulated guest.
inline void open_tap() {
    int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) fail("/dev/net/tun");
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, kTapName, IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) fail("TUNSETIFF");
    int hdr = kHdrLen;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) fail("TUNSETVNETHDRSZ");
    if (ioctl(fd, TUNSETOFFLOAD, static_cast<unsigned long>(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)) < 0)
        fail("TUNSETOFFLOAD");
    Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    auto addr = inet(kHostIp), mask = inet(0xffffff00);
    std::memcpy(&ifr.ifr_addr, &addr, sizeof addr);
    if (ioctl(s.fd, SIOCSIFADDR, &ifr) < 0) fail("SIOCSIFADDR");
    std::memcpy(&ifr.ifr_netmask, &mask, sizeof mask);
    if (ioctl(s.fd, SIOCSIFNETMASK, &ifr) < 0) fail("SIOCSIFNETMASK");
    if (ioctl(s.fd, SIOCGIFFLAGS, &ifr) < 0) fail("SIOCGIFFLAGS");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s.fd, SIOCSIFFLAGS, &ifr) < 0) fail("SIOCSIFFLAGS");
    arpreq arp{};
    auto guest = inet(kGuest.ip);
    std::memcpy(&arp.arp_pa, &guest, sizeof guest);
    arp.arp_ha.sa_family = ARPHRD_ETHER;
    std::memcpy(arp.arp_ha.sa_data, kGuest.mac, 6);
    arp.arp_flags = ATF_PERM | ATF_COM;
    std::strncpy(arp.arp_dev, kTapName, sizeof arp.arp_dev - 1);
    if (ioctl(s.fd, SIOCSARP, &arp) < 0) fail("SIOCSARP");
    g_tap = {fd, static_cast<int>(if_nametoindex(kTapName))};
}

// The tap's receive counter (frames written into it), from this namespace's /proc/net/dev.
inline uint64_t tap_rx_packets() {
    std::ifstream f("/proc/net/dev");
    std::string line;
    while (std::getline(f, line)) {
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string ifname = line.substr(0, colon);
        ifname.erase(0, ifname.find_first_not_of(' '));
        if (ifname != kTapName) continue;
        std::istringstream in(line.substr(colon + 1));
        uint64_t bytes = 0, packets = 0;
        in >> bytes >> packets;
        return packets;
    }
    return 0;
}

// The benchmark's guest RAM: one mapping, from guest-physical 0.
class FlatRam : public minivmm::MemView {
public:
    explicit FlatRam(uint8_t* base) : base_(base) {}
    uint8_t* ptr(uint64_t gpa, uint64_t len) const override {
        return gpa <= kMemSize && len <= kMemSize - gpa ? base_ + gpa : nullptr;
    }

private:
    uint8_t* base_;
};

enum class Backend { Worker, Kernel };

// Why backend b cannot be benchmarked here, or "" if it can: this machine
// may have no /dev/vhost-net (the rows say so rather than vanish).
inline std::string unavailable(Backend b) {
    if (b == Backend::Kernel && ::access("/dev/vhost-net", F_OK) != 0)
        return errno == ENOENT ? "no /dev/vhost-net" : std::string("/dev/vhost-net: ") + std::strerror(errno);
    return "";
}

// Both rings with event-index notification suppression, as Linux negotiates it.
class Rig {
public:
    explicit Rig(Backend b)
        : vh_(b == Backend::Worker ? minivmm::make_worker_vhost() : minivmm::open_kernel_vhost()),
          mem_(map()),
          ram_(mem_),
          ring_{{ram_, kQSize, RingLayout::paged(kRingGpa[kRx]), true},
                {ram_, kQSize, RingLayout::paged(kRingGpa[kTx]), true}} {
        // Frames left in the tap by an earlier benchmark are not this one's.
        static uint8_t junk[65536 + 256];
        while (::read(g_tap.fd, junk, sizeof junk) > 0) {
        }
        const uint64_t want = minivmm::virtio::kFVersion1 | minivmm::virtio::kFEventIdx | minivmm::net::kMrgRxbuf;
        // No set_owner(): open_kernel_vhost() has made this process the
        // owner already (a second SET_OWNER is EBUSY); the worker has none.
        if (want & ~vh_->get_features())
            throw std::runtime_error(std::string(vh_->name()) + " lacks VERSION_1, EVENT_IDX or MRG_RXBUF");
        vh_->set_features(want);
        vh_->set_mem_table({{0, kMemSize, reinterpret_cast<uint64_t>(mem_)}});
        for (unsigned q : {kRx, kTx}) {
            vh_->set_vring_num(q, kQSize);
            vh_->set_vring_base(q, 0);
            vh_->set_vring_addr(q, vring_addr(ring_[q].at));
            vh_->set_vring_kick(q, kick_[q].fd);
            vh_->set_vring_call(q, call_[q].fd);
            vh_->set_vring_err(q, err_[q].fd);
        }
    }
    ~Rig() {
        vh_->set_backend(kRx, -1);
        vh_->set_backend(kTx, -1);
        vh_.reset();
        ::munmap(mem_, kMemSize);
    }
    Rig(const Rig&) = delete;
    Rig& operator=(const Rig&) = delete;

    uint8_t* mem(uint64_t gpa) { return mem_ + gpa; }
    GuestRing& ring(unsigned q) { return ring_[q]; }
    void start(unsigned q) { vh_->set_backend(q, g_tap.fd); }
    void kick(unsigned q) {
        uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(kick_[q].fd, &one, sizeof one);
    }
    // Sleeps until ring q interrupts, or fd (if given) has events; false,
    // and why, on a broken ring or a stall.
    bool wait(unsigned q, std::string& why, int fd = -1, short events = 0) {
        pollfd p[3] = {{call_[q].fd, POLLIN, 0}, {err_[q].fd, POLLIN, 0}, {fd, events, 0}};
        int n = ::poll(p, fd >= 0 ? 3 : 2, kStallMs);
        if (n <= 0 || p[1].revents) {
            why = n <= 0 ? "no progress for 2 s (a frame lost?)" : "the worker reported a broken ring";
            return false;
        }
        uint64_t v;
        if (p[0].revents) [[maybe_unused]] ssize_t r = ::read(call_[q].fd, &v, sizeof v);
        return true;
    }

private:
    // Made first: opening /dev/vhost-net is what can fail for want of it.
    // ~Rig() ends it before the memory it reads is unmapped.
    std::unique_ptr<minivmm::VhostBackend> vh_;
    static uint8_t* map() {
        void* p = ::mmap(nullptr, kMemSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED) fail("mmap guest memory");
        return static_cast<uint8_t*>(p);
    }
    static int efd() { return ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }
    minivmm::VringAddr vring_addr(const RingLayout& at) const {
        auto hva = [this](uint64_t gpa) { return reinterpret_cast<uint64_t>(mem_ + gpa); };
        return {hva(at.desc), hva(at.avail), hva(at.used), at.used, false};
    }
    uint8_t* mem_;
    FlatRam ram_;
    GuestRing ring_[2];
    Fd kick_[2] = {Fd(efd()), Fd(efd())}, call_[2] = {Fd(efd()), Fd(efd())}, err_[2] = {Fd(efd()), Fd(efd())};
};

}  // namespace bench
