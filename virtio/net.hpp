// The virtio-net device model (virtio 1.x, 5.1) with the userspace datapath
// (vhost=off): a guest kick exits to minivmm and the vCPU thread that took it
// sends the frames; a minivmm thread moves received frames into the guest;
// interrupts are sent by minivmm. This is the baseline vhost must beat.
#pragma once
#include <array>
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "vhost/tap.hpp"
#include "virtio/device.hpp"
#include "virtio/virtqueue.hpp"

namespace minivmm {

class GuestMemory;

namespace net {
// Feature bits (5.1.3).
constexpr uint64_t kCsum = 1ull << 0, kGuestCsum = 1ull << 1, kMac = 1ull << 5, kGuestTso4 = 1ull << 7,
                   kGuestTso6 = 1ull << 8, kGuestEcn = 1ull << 9, kHostTso4 = 1ull << 11, kHostTso6 = 1ull << 12,
                   kHostEcn = 1ull << 13, kMrgRxbuf = 1ull << 15, kStatus = 1ull << 16;
constexpr uint32_t kHeaderLen = 12;  // struct virtio_net_hdr_v1, num_buffers included
constexpr uint16_t kRxQueue = 0, kTxQueue = 1;
}  // namespace net

// Counters a user can read with --stats or SIGUSR1; updated by the datapath.
struct QueueStats {
    std::atomic<uint64_t> packets{0}, bytes{0}, notifications{0}, interrupts{0}, errors{0};
    void print(std::FILE* f, const char* name) const;
};

class VirtioNet : public VirtioDevice {
public:
    using Mac = std::array<uint8_t, 6>;
    VirtioNet(const GuestMemory& mem, std::unique_ptr<Tap> tap, const Mac& mac);
    ~VirtioNet() override;

    uint16_t device_id() const override { return 1; }
    uint64_t features() const override;
    uint16_t num_queues() const override { return 2; }
    void config_read(uint64_t off, uint8_t* data, uint32_t size) override;
    void activate(uint64_t features, const std::vector<QueueConfig>& queues, VirtioTransport& t) override;
    void reset() override;
    void notify(uint16_t queue) override;

    void print_stats(std::FILE* f, const std::string& label) const;
    const QueueStats& stats(uint16_t queue) const { return stats_[queue]; }

private:
    enum class Rx { Delivered, NoBuffers, Dropped, Broken };
    void rx_loop();
    Rx rx_one();
    void tx_all();
    void broken(const std::string& why);
    void interrupt(uint16_t q);
    void wake();

    const GuestMemory& mem_;
    std::unique_ptr<Tap> tap_;
    Mac mac_;
    std::array<QueueStats, 2> stats_;

    // Datapath state, shared by the RX thread and the vCPU that kicks TX;
    // reset() takes it to know neither is inside the rings any more.
    std::mutex dp_;
    bool active_ = false;
    uint64_t features_ = 0;
    VirtioTransport* transport_ = nullptr;
    std::optional<SplitQueue> queues_[2];
    std::vector<uint8_t> rx_frame_;  // one frame read from the tap, waiting for buffers
    size_t rx_len_ = 0;

    Fd wake_fd_;  // eventfd: RX kick, activation, shutdown
    std::atomic<bool> quit_{false};
    std::thread rx_thread_;
};

}  // namespace minivmm
