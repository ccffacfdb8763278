// A tap or macvtap interface as a NIC's port: frames with a virtio-net
// header in front (IFF_VNET_HDR), so checksum and segmentation offloads pass
// through. With several queues (IFF_MULTI_QUEUE) each queue is its own fd,
// and the kernel spreads received flows over the queues that are attached.
// A macvtap is the same character-device protocol on /dev/tapN.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vhost/ports/port.hpp"
#include "vhost/ports/tap_steering.hpp"
#include "vmm/fd.hpp"

namespace minivmm {

class Tap : public NetPort {
public:
    // Attaches to tap `name` with `queues` fds, creating it (up, for this
    // VM's lifetime) if it does not exist; says so on stderr. Throws
    // UserError on failure.
    // shared: another minivmm on this host runs a guest on the tap and will
    // hand it over (a live migration's destination): the tap's device-wide
    // settings (offloads, steering program) are left to it until this one
    // takes the tap (hand_over_queue(0, true)).
    explicit Tap(const std::string& name, unsigned queues = 1, bool shared = false);
    // Opens the existing macvtap link `name` (its /dev/tapN) `queues` times.
    static std::unique_ptr<Tap> macvtap(const std::string& name, unsigned queues = 1);

    std::string describe() const override;
    // For the user, once the VM is built: "created tap ..." when minivmm
    // made it (it goes away with minivmm), else empty.
    const std::string& created_note() const { return created_; }
    // For the user: why an offload the device could offer is not, else empty.
    const std::string& offload_note() const { return offload_note_; }
    unsigned queues() const override { return static_cast<unsigned>(fds_.size()); }
    int fd(unsigned queue = 0) const override { return fds_[queue].get(); }
    bool vnet_header() const override { return true; }
    bool uso() const override { return uso_; }
    unsigned mtu() const override { return mtu_; }
    // --net mtu=: the link's MTU (SIOCSIFMTU). Throws UserError if refused.
    void set_mtu(unsigned mtu);
    void set_offload(unsigned tun_flags) override;
    void set_queue_attached(unsigned queue, bool attached) override;
    bool hand_over_queue(unsigned queue, bool attached) override;
    const std::string& name() const { return name_; }
    // Header length in front of every frame, both ways (10 or 12 bytes).
    void set_vnet_header_size(int bytes);
    // Loads and attaches the RSS steering program (tap_steering.hpp), while
    // minivmm may still load BPF. Empty, or why the NIC offers no RSS.
    std::string attach_steering();
    PortSteering* steering() override { return steering_.get(); }

private:
    Tap() = default;
    Fd open_queue(bool multi_queue, bool existed);
    void probe();
    void apply_device_settings();
    std::vector<Fd> fds_;
    bool multi_queue_ = false;  // made or opened with IFF_MULTI_QUEUE
    std::string name_, device_;  // device_: /dev/tapN of a macvtap
    std::string created_;
    bool shared_ = false;   // device settings held back (see the constructor)
    unsigned offload_ = 0;  // the TUN_F_* flags this NIC wants on the tap
    std::string offload_note_;
    bool uso_ = false;
    unsigned mtu_ = 0;
    bool offload_refused_ = false;  // said once: a guest can reset its NIC in a loop
    // After fds_: detached from the tap before its fds close.
    std::unique_ptr<TapSteering> steering_;
};

}  // namespace minivmm
