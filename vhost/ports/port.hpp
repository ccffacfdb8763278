// Where a NIC's frames go on the host: a tap, a macvtap, or a raw packet
// socket bound to an interface. One fd per queue pair; the datapaths and
// vhost backends only read and write those fds.
#pragma once
#include <string>

namespace minivmm {

class NetPort {
public:
    virtual ~NetPort() = default;
    // For messages: "tap tap0", "macvtap mvt0 (/dev/tap7)", "raw eth3".
    virtual std::string describe() const = 0;
    virtual unsigned queues() const = 0;
    virtual int fd(unsigned queue) const = 0;
    // Whether every frame at the fds carries a 12-byte virtio-net header, so
    // checksum and segmentation offloads pass through. Without it the device
    // offers no offloads and the datapath adds and strips the header (what
    // vhost-net calls VHOST_NET_F_VIRTIO_NET_HDR).
    virtual bool vnet_header() const = 0;
    // The port takes and hands over UDP segmentation offload (a tap whose
    // kernel accepts TUN_F_USO4|TUN_F_USO6, Linux 6.2 or later): probed
    // when it is opened.
    virtual bool uso() const { return false; }
    // The link's MTU when the port was set up (after --net mtu=); 0 unknown.
    virtual unsigned mtu() const { return 0; }
    // Offloads the guest can take (TUN_F_* flags), where the port has them.
    virtual void set_offload(unsigned tun_flags) { (void)tun_flags; }
    // A detached queue gets no frames; queue 0 is never detached.
    virtual void set_queue_attached(unsigned queue, bool attached) { (void)queue, (void)attached; }
};

}  // namespace minivmm
