// The virtio-net device model (virtio 1.x, 5.1): N receive/transmit queue
// pairs (queue 2k receives, 2k+1 sends) and a control queue after them. The
// pairs are served by one of three datapaths, chosen per NIC:
// - vhost=off, minivmm's own: a guest kick exits to minivmm, whose vCPU
//   thread only hands it to the pair's I/O thread and goes back to the
//   guest; that thread (one per pair) sends the pair's frames and moves
//   received ones into the guest; interrupts are injected by minivmm. The
//   baseline.
// - vhost=kernel or worker: a VhostBackend serves the pairs; kicks reach it
//   through KVM ioeventfds and its interrupts go out through KVM irqfds, so
//   nothing on the packet path passes through minivmm's vCPU or I/O loops.
// The control queue is always minivmm's (net_ctrl.cpp): it is rare and small.
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

#include "vhost/ports/port.hpp"
#include "vmm/kvm.hpp"
#include "vhost/vhost.hpp"
#include "virtio/device.hpp"
#include "virtio/net_datapath.hpp"
#include "virtio/virtqueue.hpp"

namespace minivmm {

class GuestMemory;

class VirtioNet : public VirtioDevice {
public:
    using Mac = std::array<uint8_t, 6>;
    static constexpr unsigned kMaxPairs = 16;
    // Control commands served per lock hold (net_ctrl.cpp): what one kick
    // may cost the vCPU that makes it.
    static constexpr unsigned kCtrlBudget = 64;
    // One queue pair per port queue. vhost null: minivmm's own datapath
    // (vhost=off). label names the NIC in thread names and messages.
    VirtioNet(const GuestMemory& mem, std::unique_ptr<NetPort> port, const Mac& mac,
              std::unique_ptr<VhostBackend> vhost = nullptr, const std::string& label = "net0");
    ~VirtioNet() override;

    uint16_t device_id() const override { return 1; }
    uint64_t features() const override;
    uint16_t num_queues() const override { return static_cast<uint16_t>(2 * pairs_.size() + 1); }
    void config_read(uint64_t off, uint8_t* data, uint32_t size) override;
    void activate(uint64_t features, const std::vector<QueueConfig>& queues, VirtioTransport& t) override;
    void reset() override;
    void notify(uint16_t queue) override;

    const char* datapath() const { return vhost_ ? vhost_->name() : "off"; }
    unsigned pairs() const { return static_cast<unsigned>(pairs_.size()); }
    void print_stats(std::FILE* f, const std::string& label) const;

private:
    // One receive/transmit pair and what serves it.
    struct Pair {
        std::mutex lock;  // the pair's thread and the VMM's reconfiguration
        std::optional<SplitQueue> rx, tx;
        NetRx held;
        QueueStats rx_stats, tx_stats;
        bool enabled = false;         // in use (VQ_PAIRS_SET)
        bool attached = true;         // its port queue; as the kernel leaves a new one
        bool vhost_running = false;   // its rings have the port queue as backend
        std::atomic<bool> tx_kicked{false};  // vhost=off: a TX kick for the thread
        Fd wake;                      // eventfd: kicks, (de)activation, shutdown
        std::thread thread;           // vhost=off: moves the pair's frames both ways
    };
    void activate_vhost(unsigned k);
    void stop_vhost(unsigned k);
    void set_pairs_in_use(unsigned n);
    void io_loop(unsigned k);
    bool tx_some(Pair& p, uint16_t q);  // true: more to send
    void broken(const std::string& why);
    void interrupt(std::optional<SplitQueue>& q, uint16_t index, QueueStats& st);
    static void wake(Pair& p);

    // The control queue (net_ctrl.cpp): served on the vCPU that kicks it,
    // up to kCtrlBudget commands; more are left to the control thread.
    void ctrl_all();
    bool ctrl_batch();  // true: more may be waiting
    void ctrl_loop();
    void stop_threads();  // the control and I/O threads, for the destructor or a failed start
    std::unique_lock<std::mutex> lock_ctrl() const;
    uint8_t ctrl_command(uint8_t cls, uint8_t cmd, const std::vector<uint8_t>& data);

    const GuestMemory& mem_;
    std::unique_ptr<NetPort> port_;
    std::unique_ptr<VhostBackend> vhost_;
    std::string label_;
    std::vector<std::unique_ptr<Pair>> pairs_;  // threads point into them: never moved

    // Device state set at activation (all pair locks held) and cleared at reset.
    std::atomic<bool> active_{false};
    uint64_t features_ = 0;
    VirtioTransport* transport_ = nullptr;
    std::vector<QueueConfig> config_;

    // Control queue state; ctrl_lock_ also guards the MAC, which it may set.
    // Taken through lock_ctrl() except by the control thread, which lets
    // everyone counted in ctrl_waiters_ go first.
    mutable std::mutex ctrl_lock_;
    mutable std::atomic<unsigned> ctrl_waiters_{0};
    Fd ctrl_wake_;             // eventfd: a kick left commands, or shutdown
    std::thread ctrl_thread_;
    Mac mac_;
    std::optional<SplitQueue> ctrl_;
    static constexpr uint16_t kNoCtrl = 0xffff;
    std::atomic<uint16_t> ctrl_index_{kNoCtrl};  // read by kicks without the lock
    std::atomic<unsigned> in_use_{1};
    bool promisc_ = false, allmulti_ = false;
    QueueStats ctrl_stats_;
    std::atomic<bool> quit_{false};
};

}  // namespace minivmm
