#include "vhost/ports/raw_socket.hpp"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cerrno>

#include "vhost/ports/link_mtu.hpp"
#include "vmm/error.hpp"

namespace minivmm {

RawSocket::RawSocket(const std::string& ifname) : name_(ifname) {
    std::string what = "--net raw=" + ifname;
    if (ifname.empty() || ifname.size() >= IFNAMSIZ) throw UserError(what + ": bad interface name");
    int index = static_cast<int>(if_nametoindex(ifname.c_str()));
    if (!index) throw UserError(what + ": no such interface");
    fd_ = Fd(::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ALL)));
    if (!fd_) {
        if (errno == EPERM || errno == EACCES) throw UserError(what + ": no permission for a raw socket (needs CAP_NET_RAW)");
        throw sys_error(what + ": cannot open a packet socket");
    }
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = index;
    if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) < 0) throw sys_error(what + ": bind");
    // Frames for the guest's own MAC, not the interface's, must come in too.
    packet_mreq mr{};
    mr.mr_ifindex = index;
    mr.mr_type = PACKET_MR_PROMISC;
    if (::setsockopt(fd_.get(), SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0)
        throw sys_error(what + ": cannot make the interface promiscuous");
    // A packet socket also sees what it sends: without this the guest would
    // receive a copy of every frame it transmits.
    int one = 1;
    if (::setsockopt(fd_.get(), SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0)
        throw sys_error(what + ": PACKET_IGNORE_OUTGOING (Linux 4.20 or later needed)");
    mtu_ = link_mtu(ifname, what);
}

void RawSocket::set_mtu(unsigned mtu) {
    std::string what = "--net raw=" + name_;
    set_link_mtu(name_, mtu, what);
    mtu_ = link_mtu(name_, what);
}

}  // namespace minivmm
