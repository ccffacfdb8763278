// The virtio-net device model (virtio 1.x, 5.1). Its queues are served by
// one of three datapaths, chosen per NIC:
// - vhost=off, minivmm's own: a guest kick exits to minivmm and the vCPU
//   thread that took it sends the frames; a minivmm thread moves received
//   frames into the guest; interrupts are injected by minivmm. The baseline.
// - vhost=kernel or worker: a VhostBackend serves the queues; kicks reach it
//   through KVM ioeventfds and its interrupts go out through KVM irqfds, so
//   nothing on the packet path passes through minivmm's vCPU or I/O loops.
#pragma once
#include <array>
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "vhost/tap.hpp"
#include "vhost/vhost.hpp"
#include "virtio/device.hpp"
#include "virtio/net_datapath.hpp"
#include "virtio/virtqueue.hpp"

namespace minivmm {

class GuestMemory;

class VirtioNet : public VirtioDevice {
public:
    using Mac = std::array<uint8_t, 6>;
    // vhost null: minivmm's own datapath (vhost=off).
    VirtioNet(const GuestMemory& mem, std::unique_ptr<Tap> tap, const Mac& mac,
              std::unique_ptr<VhostBackend> vhost = nullptr);
    ~VirtioNet() override;

    uint16_t device_id() const override { return 1; }
    uint64_t features() const override;
    uint16_t num_queues() const override { return 2; }
    void config_read(uint64_t off, uint8_t* data, uint32_t size) override;
    void activate(uint64_t features, const std::vector<QueueConfig>& queues, VirtioTransport& t) override;
    void reset() override;
    void notify(uint16_t queue) override;

    const char* datapath() const { return vhost_ ? vhost_->name() : "off"; }
    void print_stats(std::FILE* f, const std::string& label) const;

private:
    void activate_vhost(const std::vector<QueueConfig>& queues, VirtioTransport& t);
    void rx_loop();
    void tx_all();
    void broken(const std::string& why);
    void interrupt(uint16_t q);
    void wake();

    const GuestMemory& mem_;
    std::unique_ptr<Tap> tap_;
    Mac mac_;
    std::unique_ptr<VhostBackend> vhost_;
    std::array<QueueStats, 2> stats_;

    // Datapath state, shared by the RX thread and the vCPU that kicks TX;
    // reset() takes it to know neither is inside the rings any more.
    std::mutex dp_;
    bool active_ = false;
    uint64_t features_ = 0;
    VirtioTransport* transport_ = nullptr;
    std::optional<SplitQueue> queues_[2];
    bool vhost_running_[2] = {false, false};
    NetRx rx_;

    Fd wake_fd_;  // eventfd: RX kick, activation, shutdown
    std::atomic<bool> quit_{false};
    std::thread rx_thread_;
};

}  // namespace minivmm
