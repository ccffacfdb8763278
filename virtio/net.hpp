// The virtio-net device model (virtio 1.x, 5.1): N receive/transmit queue
// pairs (queue 2k receives, 2k+1 sends) and a control queue after them. The
// pairs are served by a NetBackend (net_backend.hpp), one of three
// datapaths chosen per NIC:
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
#include <vector>

#include "virtio/device.hpp"
#include "virtio/net_backend.hpp"
#include "virtio/net_coalesce.hpp"
#include "virtio/net_features.hpp"
#include "virtio/queue_stats.hpp"
#include "virtio/virtqueue.hpp"
#include "vmm/fd.hpp"
#include "vmm/thread.hpp"

namespace minivmm {

class GuestMemory;

class VirtioNet : public VirtioDevice, private NetBackend::Device {
public:
    using Mac = std::array<uint8_t, 6>;
    static constexpr unsigned kMaxPairs = net::kMaxPairs;
    // Control commands served per lock hold (net_ctrl.cpp): what one kick
    // may cost the vCPU that makes it.
    static constexpr unsigned kCtrlBudget = 64;
    // One queue pair per pair of the backend. label names the NIC in
    // thread names and messages.
    VirtioNet(const GuestMemory& mem, std::unique_ptr<NetBackend> backend, const Mac& mac,
              const std::string& label = "net0");
    ~VirtioNet() override;

    uint16_t device_id() const override { return 1; }
    uint32_t pci_class() const override { return 0x020000; }  // network controller, Ethernet
    std::string label() const override { return label_; }
    std::string describe() const override;
    std::optional<DeviceStats> stats() const override;
    uint64_t features() const override;
    uint16_t num_queues() const override { return static_cast<uint16_t>(2 * pairs() + 1); }
    void config_read(uint64_t off, uint8_t* data, uint32_t size) override;
    void activate(uint64_t features, const std::vector<QueueConfig>& queues, VirtioTransport& t) override;
    void reset() override;
    void notify(uint16_t queue) override;
    // Saved state (net_state.cpp): the MAC, what the driver set through the
    // control queue, the negotiated features and every queue's position.
    void log_ctrl();  // the control queue logs its writes as dirty_ says (with ctrl_lock_)
    void quiesce() override;
    void resume() override;
    void set_dirty_log(const DirtyBitmap& log) override;  // net_state.cpp
    void set_host_attached(bool attached) override;
    // GUEST_ANNOUNCE (net_ctrl.cpp): the status shows ANNOUNCE until the
    // driver acknowledges it. Not part of the saved state: every load
    // announces afresh, which also covers one pending when it was saved.
    void announce() override;
    void save(state::Writer& w) const override;
    void load(state::Reader& r, const LoadedTransport& t, VirtioTransport& transport) override;

    const char* datapath() const { return backend_->datapath(); }
    unsigned pairs() const { return backend_->pairs(); }
    unsigned mtu() const { return mtu_; }
    using VirtioDevice::print_stats;
    void print_stats(std::FILE* f, const std::string& label) const;

private:
    bool running() const override { return active_; }
    void needs_reset(const std::string& why) override;
    bool rings_valid(const std::vector<QueueConfig>& queues, unsigned usable);
    // activate(), with ctrl_lock_ held; positions: where each queue goes on
    // (a loaded state), or null for rings the driver just set up. False:
    // it failed, and said why through needs_reset().
    bool start(uint64_t features, const std::vector<QueueConfig>& queues, VirtioTransport& t,
               const std::vector<uint16_t>* positions);
    void set_pairs_in_use(unsigned n);
    uint16_t shown_mtu() const;
    void interrupt(std::optional<SplitQueue>& q, uint16_t index, QueueStats& st);

    // The control queue (net_ctrl.cpp): served on the vCPU that kicks it,
    // up to kCtrlBudget commands; more are left to the control thread.
    void serve_ctrl_kick();
    bool ctrl_batch();  // true: more may be waiting
    void ctrl_loop();
    void stop_ctrl_thread();
    std::unique_lock<std::mutex> lock_ctrl() const;
    uint8_t ctrl_command(uint8_t cls, uint8_t cmd, const std::vector<uint8_t>& data, std::vector<uint8_t>& reply);
    bool pairs_ready(unsigned n) const;
    uint8_t ctrl_rss(const std::vector<uint8_t>& data);  // net_rss.cpp

    const GuestMemory& mem_;
    std::unique_ptr<NetBackend> backend_;
    std::string label_;
    // The port's link MTU as the NIC was built: the config space's, fixed
    // while a driver may have read it.
    const unsigned mtu_;

    // Device state set at activation and cleared at reset, under ctrl_lock_.
    std::atomic<bool> active_{false};
    uint64_t features_ = 0;
    VirtioTransport* transport_ = nullptr;
    std::vector<QueueConfig> config_;
    unsigned usable_pairs_ = 0;

    // Control queue state; ctrl_lock_ also guards the MAC, which it may set.
    // Taken through lock_ctrl() except by the control thread, which lets
    // everyone counted in ctrl_waiters_ go first.
    mutable std::mutex ctrl_lock_;
    mutable std::atomic<unsigned> ctrl_waiters_{0};
    Fd ctrl_wake_;             // eventfd: a kick left commands, or shutdown
    Thread ctrl_thread_;
    Mac mac_;
    std::optional<SplitQueue> ctrl_;
    DirtyBitmap dirty_;  // a migration's log, under ctrl_lock_: the control queue's writes
    static constexpr uint16_t kNoCtrl = 0xffff;
    std::atomic<uint16_t> ctrl_index_{kNoCtrl};  // read by kicks without the lock
    std::atomic<unsigned> in_use_{1};
    bool promisc_ = false, allmulti_ = false;
    bool announcing_ = false;  // VIRTIO_NET_S_ANNOUNCE: asked, not yet acknowledged
    std::vector<uint8_t> rss_command_;  // the RSS_CONFIG in force, as the driver sent it; empty: none
    // Snapshots and migration: the datapaths stopped (quiesce()), and each
    // queue's next avail entry, by queue number, as they stopped or as loaded.
    bool quiesced_ = false;
    bool backend_started_ = false;  // else positions_ are a loaded state's, kept
    std::vector<uint16_t> positions_;
    NetCoalesce coalesce_;  // the driver's NOTF_COAL parameters, handed to the backend
    QueueStats ctrl_stats_;
    std::atomic<bool> quit_{false};
};

}  // namespace minivmm
