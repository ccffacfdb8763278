// What the virtio-net device needs from the host side of a NIC: the port its
// frames go through and the datapath that serves its queue pairs. The
// device keeps the guest-facing part (feature offer, config space, the
// control queue, ring checks); the backend moves frames. Implementations
// live in vhost/ (make_net_backend), so the device is the same code for
// every datapath.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "virtio/coalesce.hpp"
#include "virtio/device.hpp"
#include "virtio/net_rss.hpp"

namespace minivmm {

class GuestMemory;
struct QueueStats;

class NetBackend {
public:
    // The device as its backend sees it from activate() on.
    class Device {
    public:
        // False once the device needs a reset or was reset: move no frames.
        virtual bool running() const = 0;
        // The driver broke a ring's rules (or the host could not serve
        // them): the device stops until the driver resets it.
        virtual void needs_reset(const std::string& why) = 0;

    protected:
        ~Device() = default;
    };

    // What the driver set up, for activate(). Every enabled queue of the
    // usable pairs has passed SplitQueue::valid().
    struct Rings {
        const GuestMemory& mem;
        uint64_t features;                       // negotiated
        const std::vector<QueueConfig>& queues;  // 2k receives, 2k+1 sends for pair k
        unsigned usable_pairs;                   // all of them with MQ, else 1
        VirtioTransport& transport;
        Device& device;
        // A loaded state's: ring i goes on at avail entry (*positions)[i]
        // (its used index is in guest RAM). Null: the driver's new rings.
        const std::vector<uint16_t>* positions = nullptr;
    };

    virtual ~NetBackend() = default;
    // "off", "worker" or "kernel", as --net's vhost= option names it.
    virtual const char* datapath() const = 0;
    // The port, for messages: "tap tap0", "raw eth3".
    virtual std::string describe() const = 0;
    virtual unsigned pairs() const = 0;
    // Frames at the port carry a virtio-net header: the offloads it
    // describes can be offered.
    virtual bool vnet_header() const = 0;
    // The port takes UDP segmentation offload both ways (with vnet_header).
    virtual bool uso() const = 0;
    // The port's link MTU, for the config space (VIRTIO_NET_F_MTU); 0 unknown.
    virtual unsigned mtu() const = 0;
    // The port steers received frames by the guest's RSS settings, so
    // VIRTIO_NET_F_RSS can be offered.
    virtual bool rss() const { return false; }
    // Settings the device checked (net_rss.hpp); null: none, flows spread
    // by the port's own hash. No system call: served on the control queue.
    virtual void set_rss(const net::RssConfig* c) { (void)c; }

    // DRIVER_OK. False: it failed, and said why through Device::needs_reset.
    virtual bool activate(const Rings& rings) = 0;
    // Pairs [0, n) move frames; the others neither send nor receive.
    virtual void set_pairs_in_use(unsigned n) = 0;
    // A kick of a pair's queue that exited to the VMM.
    virtual void notify(uint16_t queue) = 0;
    // Returns only when nothing of the backend touches guest memory or
    // raises interrupts any more.
    virtual void reset() = 0;
    // Snapshots and migration. quiesce(): every ring stops where it is; when
    // it returns nothing of the backend touches guest memory or raises
    // interrupts. Returns, for each ring of the pairs (2k, 2k+1), the next
    // avail entry it would take (0 for a ring it does not serve), in
    // virtio's terms: the same from every datapath. resume(): the rings
    // carry on from there; kicks that came in between are not lost.
    virtual std::vector<uint16_t> quiesce() = 0;
    virtual void resume() = 0;
    // Live migration. Every write the backend makes to guest memory (used
    // rings, received frames) is marked in log until it is set empty again.
    // Throws InternalError if the datapath cannot log (the migration fails).
    virtual void set_dirty_log(const DirtyBitmap& log) = 0;
    // The port's queues in use let go of (false) or taken back (true): a
    // migration's switch-over to another minivmm on this host.
    virtual void set_port_attached(bool attached) = 0;
    // Counters of a ring, or null where they are not visible (vhost-net).
    virtual const QueueStats* stats(unsigned queue) const = 0;
    // Notification coalescing (VIRTIO_NET_F_NOTF_COAL): only a datapath that
    // raises its queues' interrupts itself can hold them back.
    virtual bool coalescing() const { return false; }
    // A queue's parameters, from any thread, kept until changed: a reset
    // does not clear them, the device sets every queue back to 0 itself.
    virtual void set_coalesce(unsigned queue, const Coalesce& c) { (void)queue, (void)c; }
};

}  // namespace minivmm
