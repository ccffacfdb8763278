// Where a NIC's frames go on the host: a tap, a macvtap, or a raw packet
// socket bound to an interface. One fd per queue pair; the datapaths and
// vhost backends only read and write those fds.
#pragma once
#include <cstdint>
#include <span>
#include <string>

namespace minivmm {

// Which queue each received frame goes to, by the guest's RSS settings
// (VIRTIO_NET_F_RSS), where the port can steer (a tap with its steering
// program, tap_steering.hpp). Called with settings the device checked:
// a key of at most 40 bytes, a table of a power of two entries up to 128,
// every queue among the attached ones. Writes memory only: no system call.
class PortSteering {
public:
    virtual ~PortSteering() = default;
    // Frames hashed (Toeplitz with `key`) over what `hash_types`
    // (VIRTIO_NET_RSS_HASH_TYPE_*) select go to table[hash % size];
    // the rest to `unclassified`.
    virtual void set(uint32_t hash_types, std::span<const uint8_t> key, std::span<const uint16_t> table,
                     uint16_t unclassified) = 0;
    // No guest settings (a reset): flows spread over the attached queues by hash.
    virtual void clear() = 0;
};

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
    // A live migration to another minivmm on this host: the queue, queue 0
    // too, lets go of its frames (attached false) so the destination's
    // queues on the same link take them, or takes them back when the
    // migration fails. False where the port cannot (only a multi-queue tap
    // can; the destination then cannot open the port while this one runs).
    virtual bool hand_over_queue(unsigned queue, bool attached) { (void)queue, (void)attached; return false; }
    // The port's receive steering, or null: RSS is then not offered.
    virtual PortSteering* steering() { return nullptr; }
};

}  // namespace minivmm
