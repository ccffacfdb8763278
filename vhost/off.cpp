// vhost=off, minivmm's own datapath: one I/O thread per queue pair moves
// its frames both ways. A guest kick exits to minivmm; the vCPU only hands
// it to the pair's thread and goes back to the guest.
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <system_error>

#include "vhost/coalesce_timer.hpp"
#include "vhost/dirty_log.hpp"
#include "vhost/port_backend.hpp"
#include "virtio/net_datapath.hpp"
#include "vmm/error.hpp"
#include "vmm/fd.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/seccomp.hpp"
#include "vmm/thread.hpp"
#include "vmm/thread_guard.hpp"

namespace minivmm {

namespace {
// Frames moved per lock hold before the RX thread sends an interrupt and
// lets a reset in: bounds both interrupt latency and reset latency.
constexpr unsigned kRxBatch = 64, kTxBatch = 256;

class OffBackend final : public PortBackend {
public:
    OffBackend(std::unique_ptr<NetPort> port, const std::string& label);
    ~OffBackend() override { stop_threads(); }
    const char* datapath() const override { return "off"; }
    bool activate(const Rings& rings) override;
    void set_pairs_in_use(unsigned n) override;
    void notify(uint16_t queue) override;
    void reset() override;
    std::vector<uint16_t> quiesce() override;
    void resume() override;
    void set_dirty_log(const DirtyBitmap& log) override;
    const QueueStats* stats(unsigned queue) const override;
    bool coalescing() const override { return true; }
    void set_coalesce(unsigned queue, const Coalesce& c) override;

private:
    struct Pair {
        std::mutex lock;  // the pair's thread and the VMM's reconfiguration
        std::optional<SplitQueue> rx, tx;
        NetRx receiver;
        QueueStats rx_stats, tx_stats;
        bool enabled = false;                // in use (VQ_PAIRS_SET)
        std::atomic<bool> tx_kicked{false};  // a TX kick for the thread
        Fd wake;                             // eventfd: kicks, (de)activation, shutdown
        CoalesceTimer rx_coal, tx_coal;      // interrupts held back (NOTF_COAL); the thread's, under lock
        Thread thread;
    };
    bool running() const { return device_ && device_->running() && !quiesced_; }
    void io_loop(unsigned k);
    bool tx_some(Pair& p, uint16_t q);  // true: more to send
    void interrupt(std::optional<SplitQueue>& q, uint16_t index, QueueStats& st, CoalesceTimer& coal);
    void flush(std::optional<SplitQueue>& q, uint16_t index, QueueStats& st);
    void stop_threads();
    static void wake(Pair& p);
    // The migration's log, as every writer of a ring marks it; empty when off.
    WriteLog writer() const;
    void log_rings(Pair& p);  // with the pair's lock: its queues log as log_ says

    std::vector<std::unique_ptr<Pair>> pairs_;  // threads point into them: never moved
    // Set at activation with every pair's lock held; read by the pairs' threads under theirs.
    const GuestMemory* mem_ = nullptr;
    uint64_t features_ = 0;
    VirtioTransport* transport_ = nullptr;
    Device* device_ = nullptr;
    bool quiesced_ = false;  // set and read with every pair's lock held, or the pair's own
    DirtyLog log_;           // set with every pair's lock held; read under the pair's own
    std::atomic<bool> quit_{false};
};

OffBackend::OffBackend(std::unique_ptr<NetPort> port, const std::string& label) : PortBackend(std::move(port)) {
    for (unsigned k = 0; k < pairs(); k++) {
        auto p = std::make_unique<Pair>();
        p->wake = Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!p->wake) throw internal_error("eventfd");
        if (!p->rx_coal || !p->tx_coal) throw internal_error("timerfd");
        pairs_.push_back(std::move(p));
    }
    std::string name;
    try {
        for (unsigned k = 0; k < pairs_.size(); k++) {
            name = label + "-io" + std::to_string(k);
            pairs_[k]->thread = Thread([this, k, name] {
                guarded(name, [&] {
                    enter_thread(ThreadKind::NetIo, name);  // also names it, for ps -L and top -H
                    io_loop(k);
                });
            });
        }
    } catch (const std::system_error& e) {
        // The destructor will not run: stop the threads already started.
        stop_threads();
        throw InternalError("cannot start thread " + name + ": " + e.code().message());
    }
}

void OffBackend::stop_threads() {
    quit_ = true;
    for (auto& p : pairs_) {
        wake(*p);
        if (p->thread.joinable()) p->thread.join();
    }
}

void OffBackend::wake(Pair& p) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(p.wake.get(), &one, sizeof one);
}

bool OffBackend::activate(const Rings& rings) {
    std::vector<std::unique_lock<std::mutex>> locks;
    for (auto& p : pairs_) locks.emplace_back(p->lock);
    mem_ = &rings.mem;
    features_ = rings.features;
    transport_ = &rings.transport;
    device_ = &rings.device;
    for (unsigned k = 0; k < rings.usable_pairs; k++) {
        Pair& p = *pairs_[k];
        for (uint16_t i : {uint16_t(2 * k), uint16_t(2 * k + 1)}) {
            const QueueConfig& q = rings.queues[i];
            if (!q.enabled) continue;
            auto& sq = i % 2 ? p.tx : p.rx;
            sq.emplace(*mem_, q.size, q.desc, q.driver, q.device);
            sq->set_event_idx(features_ & virtio::kFEventIdx);
            // A loaded ring: what the driver queued before is looked at
            // without waiting for a kick it may have made already.
            if (rings.positions) {
                sq->resume((*rings.positions)[i]);
                p.tx_kicked = true;
            }
        }
        log_rings(p);
    }
    set_offloads(features_);
    return true;
}

void OffBackend::set_pairs_in_use(unsigned n) {
    for (unsigned k = 0; k < pairs_.size(); k++) {
        Pair& p = *pairs_[k];
        std::lock_guard g(p.lock);
        bool on = k < n && running();
        if (on)
            attach_queue(k);
        else
            detach_queue(k);
        p.enabled = on;
        wake(p);
    }
}

// The kick exited to us; the pair's thread does the work, as QEMU's
// userspace datapath does, so the vCPU goes back to the guest at once
// and the guest does not kick again (EVENT_IDX, or NO_NOTIFY below) for
// what it queues while the thread sends. Sending inside the exit made
// every frame a kick and an exit.
void OffBackend::notify(uint16_t q) {
    if (q / 2u >= pairs_.size()) return;
    Pair& p = *pairs_[q / 2];
    (q % 2 ? p.tx_stats : p.rx_stats).notifications++;
    if (q % 2) p.tx_kicked = true;
    wake(p);  // RX: buffers for a frame that waits, or the first ones
}

void OffBackend::reset() {
    std::vector<std::unique_lock<std::mutex>> locks;
    for (auto& p : pairs_) locks.emplace_back(p->lock);
    for (auto& p : pairs_) {
        p->tx_kicked = false;
        p->enabled = false;
        p->rx.reset();
        p->tx.reset();
        p->receiver.drop();  // a frame pending for buffers that will never come
    }
    transport_ = nullptr;
    features_ = 0;
    quiesced_ = false;
    clear_offloads();
}

// With every pair's lock, no thread is inside a ring; with quiesced_ set,
// none goes back in. A frame waiting for buffers stays for resume().
std::vector<uint16_t> OffBackend::quiesce() {
    std::vector<std::unique_lock<std::mutex>> locks;
    for (auto& p : pairs_) locks.emplace_back(p->lock);
    bool live = running();
    quiesced_ = true;
    std::vector<uint16_t> at(2 * pairs_.size(), 0);
    for (unsigned k = 0; k < pairs_.size(); k++) {
        Pair& p = *pairs_[k];
        // An interrupt held back for coalescing goes now: the state saved
        // holds no timer, and a loaded ring would never send it.
        if (live && p.rx && p.rx_coal.holding()) flush(p.rx, uint16_t(2 * k), p.rx_stats);
        if (live && p.tx && p.tx_coal.holding()) flush(p.tx, uint16_t(2 * k + 1), p.tx_stats);
        if (p.rx) {
            p.receiver.release(*p.rx);  // buffers taken ahead are not used yet
            at[2 * k] = p.rx->last_avail();
        }
        if (p.tx) at[2 * k + 1] = p.tx->last_avail();
    }
    return at;
}

void OffBackend::resume() {
    std::vector<std::unique_lock<std::mutex>> locks;
    for (auto& p : pairs_) locks.emplace_back(p->lock);
    quiesced_ = false;
    // Whatever was kicked meanwhile: each thread looks at its rings again.
    for (auto& p : pairs_) {
        p->tx_kicked = true;
        wake(*p);
    }
}

WriteLog OffBackend::writer() const {
    if (!log_) return {};
    // Every write is inside guest memory, which the log covers (checked when set).
    return [log = log_](uint64_t gpa, uint64_t len) { log.mark(gpa, len); };
}

void OffBackend::log_rings(Pair& p) {
    for (auto* q : {&p.rx, &p.tx})
        if (*q) (*q)->set_write_log(writer());
}

void OffBackend::set_dirty_log(const DirtyBitmap& bitmap) {
    DirtyLog log(bitmap);
    std::vector<std::unique_lock<std::mutex>> locks;
    for (auto& p : pairs_) locks.emplace_back(p->lock);
    if (log && mem_)
        for (const MemRegion& r : mem_->regions())
            if (!log.covers(r.gpa, r.size)) throw InternalError("vhost=off: a dirty log smaller than guest memory");
    log_ = log;
    for (auto& p : pairs_) log_rings(*p);
}

const QueueStats* OffBackend::stats(unsigned i) const {
    if (i / 2 >= pairs_.size()) return nullptr;
    const Pair& p = *pairs_[i / 2];
    return i % 2 ? &p.tx_stats : &p.rx_stats;
}

void OffBackend::set_coalesce(unsigned queue, const Coalesce& c) {
    if (queue / 2 >= pairs_.size()) return;
    Pair& p = *pairs_[queue / 2];
    (queue % 2 ? p.tx_coal : p.rx_coal).set(c);
}

void OffBackend::interrupt(std::optional<SplitQueue>& q, uint16_t index, QueueStats& st, CoalesceTimer& coal) {
    if (coal.due(q->unsignalled())) flush(q, index, st);
}

void OffBackend::flush(std::optional<SplitQueue>& q, uint16_t index, QueueStats& st) {
    if (q->need_interrupt() && transport_->signal_queue(index)) st.interrupts++;
}

bool OffBackend::tx_some(Pair& p, uint16_t q) {
    std::string why;
    p.tx->disable_notify();
    Work w = net_tx(*p.tx, *mem_, port_->fd(q / 2), p.tx_stats, kTxBatch, why, vnet_header());
    if (w == Work::Broken) {
        device_->needs_reset("tx: " + why);
        return false;
    }
    bool more = w != Work::Idle || p.tx->enable_notify();  // more may have come while we looked
    interrupt(p.tx, q, p.tx_stats, p.tx_coal);
    return more;
}

void OffBackend::io_loop(unsigned k) {
    Pair& p = *pairs_[k];
    int fd = port_->fd(k);
    bool want_frames = false;  // poll the tap: in use, with no frame waiting for buffers
    while (!quit_) {
        pollfd fds[4] = {{p.wake.get(), POLLIN, 0},
                         {fd, short(want_frames ? POLLIN : 0), 0},
                         {p.rx_coal.fd(), POLLIN, 0},
                         {p.tx_coal.fd(), POLLIN, 0}};
        if (poll(fds, 4, -1) < 0) continue;
        uint64_t n;
        if (fds[0].revents) [[maybe_unused]] ssize_t r = ::read(p.wake.get(), &n, sizeof n);
        std::lock_guard g(p.lock);
        want_frames = false;
        // An interrupt held back for coalescing whose time is up, also for a
        // pair just taken out of use: its buffers were used. Timers of a
        // queue gone (reset) expire into nothing.
        bool live = running();
        if (fds[2].revents && p.rx_coal.expired() && live && p.rx) flush(p.rx, uint16_t(2 * k), p.rx_stats);
        if (fds[3].revents && p.tx_coal.expired() && live && p.tx) flush(p.tx, uint16_t(2 * k + 1), p.tx_stats);
        // A batch at a time, then the receive side: ACKs keep flowing under a
        // send, and the rest of the send comes round again at once. A pair
        // out of use (VQ_PAIRS_SET) sends nothing, as a vhost ring without a
        // backend; its kick is kept, and served when the pair is put back.
        if (running() && p.enabled && p.tx && p.tx_kicked.exchange(false) &&
            tx_some(p, static_cast<uint16_t>(2 * k + 1))) {
            p.tx_kicked = true;
            wake(p);
        }
        if (!running() || !p.enabled || !p.rx) continue;
        SplitQueue& q = *p.rx;
        RxOptions opt;
        opt.mergeable = features_ & net::kMrgRxbuf;
        opt.fd_header = vnet_header();
        opt.budget = kRxBatch;
        opt.log = writer();
        std::string why;
        Work w;
        do {
            w = p.receiver.run(q, *mem_, fd, opt, p.rx_stats, why);
            // Out of buffers: ask for a kick, unless they arrived meanwhile.
        } while (w == Work::NeedBuffers && q.enable_notify());
        if (w == Work::Broken) {
            device_->needs_reset("rx: " + why);
            continue;
        }
        interrupt(p.rx, static_cast<uint16_t>(2 * k), p.rx_stats, p.rx_coal);
        want_frames = w != Work::NeedBuffers;
        if (want_frames) q.disable_notify();
    }
}
}  // namespace

std::unique_ptr<NetBackend> make_off_backend(std::unique_ptr<NetPort> port, const std::string& label) {
    return std::make_unique<OffBackend>(std::move(port), label);
}

}  // namespace minivmm
