// vhost=worker: the vhost-net protocol served by minivmm itself, one thread
// per virtqueue. Each thread sleeps on its ring's kick eventfd (a KVM
// ioeventfd, so a guest kick never exits to minivmm) and signals the call
// eventfd (a KVM irqfd). Guest memory is reached only through the memory
// table it was given, with the virtqueue's bounds and chain checks.
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <optional>

#include "vhost/coalesce_timer.hpp"
#include "vhost/dirty_log.hpp"
#include "vhost/vhost.hpp"
#include "virtio/device.hpp"
#include "virtio/net_datapath.hpp"
#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/fd.hpp"
#include "vmm/seccomp.hpp"
#include "vmm/thread.hpp"
#include "vmm/thread_guard.hpp"

namespace minivmm {

namespace {
constexpr unsigned kBudget = 64;  // frames per wake-up: one busy ring cannot hog a CPU

// The memory table: guest-physical ranges and where the VMM maps them.
class MemTable : public MemView {
public:
    std::vector<VhostRegion> regions;
    uint8_t* ptr(uint64_t gpa, uint64_t len) const override {
        for (const auto& r : regions)
            if (gpa >= r.gpa && len <= r.size && gpa - r.gpa <= r.size - len)
                return reinterpret_cast<uint8_t*>(r.uaddr + (gpa - r.gpa));
        return nullptr;
    }
    // Ring addresses arrive as VMM addresses; the queue wants them guest-physical.
    std::optional<uint64_t> gpa_of(uint64_t uaddr) const {
        for (const auto& r : regions)
            if (uaddr >= r.uaddr && uaddr - r.uaddr < r.size) return r.gpa + (uaddr - r.uaddr);
        return std::nullopt;
    }
};

void signal(int fd) {
    uint64_t one = 1;
    if (fd >= 0) [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
}
void drain(int fd) {
    uint64_t v;
    [[maybe_unused]] ssize_t n = ::read(fd, &v, sizeof v);
}

class WorkerVhost : public VhostBackend {
public:
    WorkerVhost(unsigned pairs, const std::string& label) : label_(label) {
        for (unsigned i = 0; i < 2 * pairs; i++) {
            rings_.push_back(std::make_unique<Ring>());
            // A ring's thread is told to stop through its eventfd: without
            // one it could be started and never stopped.
            if (!rings_.back()->stop_fd) throw sys_error("vhost worker: eventfd");
            if (!rings_.back()->coal) throw sys_error("vhost worker: timerfd");
        }
    }
    const char* name() const override { return "worker"; }
    void set_owner() override {}
    uint64_t get_features() override {
        // kFNetVirtioNetHdr as vhost-net means it: the backend fd (a raw
        // socket) has no header, so the worker adds and strips it.
        return virtio::kFVersion1 | virtio::kFEventIdx | virtio::kFIndirectDesc | net::kMrgRxbuf | vhost::kFLogAll |
               vhost::kFNetVirtioNetHdr;
    }
    // What ring threads read (features, tables, the log, a ring's fds and
    // addresses) changes only while they are stopped: they take no lock. As
    // in vhost-net, these may come while rings run: stop, change, resume
    // where they were. (A thread polling a replaced kick fd missed kicks.)
    void set_features(uint64_t f) override {
        auto restart = pause_all();
        features_ = f;
        resume_all(restart);
    }
    void set_mem_table(const std::vector<VhostRegion>& regions) override {
        if (log_ && !log_.covers(regions)) throw internal_error("vhost worker SET_MEM_TABLE: beyond the dirty log", EFAULT);
        auto restart = pause_all();
        mem_.regions = regions;
        resume_all(restart);
    }
    void set_log_base(uint64_t uaddr, uint64_t size) override {
        DirtyLog log(reinterpret_cast<uint8_t*>(uaddr), size);
        if (log && !log.covers(mem_.regions))
            throw internal_error("vhost worker SET_LOG_BASE: a log smaller than guest memory", EFAULT);
        auto restart = pause_all();
        log_ = log;
        resume_all(restart);
    }
    // vhost-net answers EBUSY for a ring's size and position while it has a
    // backend, and so does this, so that the VMM sees the same from either:
    // the ring's thread reads the size with no lock, and a base set there
    // would be lost when the ring stops.
    void set_vring_num(unsigned i, unsigned num) override {
        Ring& r = ring(i);
        if (r.tap >= 0) throw internal_error("vhost worker SET_VRING_NUM", EBUSY);
        if (num == 0 || num > SplitQueue::kMaxSize || (num & (num - 1)))
            throw internal_error("vhost worker SET_VRING_NUM", EINVAL);
        r.num = num;
    }
    void set_vring_base(unsigned i, unsigned base) override {
        Ring& r = ring(i);
        if (r.tap >= 0) throw internal_error("vhost worker SET_VRING_BASE", EBUSY);
        if (base > 0xffff) throw internal_error("vhost worker SET_VRING_BASE", EINVAL);
        r.base = static_cast<uint16_t>(base);
    }
    unsigned get_vring_base(unsigned i) override {
        stop(ring(i));
        return ring(i).base;
    }
    void set_vring_addr(unsigned i, const VringAddr& a) override {
        while_stopped(i, [&](Ring& r) { r.addr = a; });
    }
    void set_vring_kick(unsigned i, int fd) override {
        while_stopped(i, [&](Ring& r) { r.kick = fd; });
    }
    void set_vring_call(unsigned i, int fd) override {
        while_stopped(i, [&](Ring& r) { r.call = fd; });
    }
    void set_vring_err(unsigned i, int fd) override {
        while_stopped(i, [&](Ring& r) { r.err = fd; });
    }
    void set_backend(unsigned i, int fd) override {
        Ring& r = ring(i);
        stop(r);
        // A frame held for buffers was read under the old offload settings:
        // not for a new driver. (Ring moves and new tables keep it.)
        r.rx.drop();
        r.tap = fd;
        if (fd >= 0) start(i);
    }
    ~WorkerVhost() override {
        for (auto& r : rings_) stop(*r);
    }
    const QueueStats* stats(unsigned idx) const override { return idx < rings_.size() ? &rings_[idx]->st : nullptr; }
    bool coalescing() const override { return true; }
    // Taken by the ring's thread at its next interrupt decision: no stop.
    void set_vring_coalesce(unsigned i, const Coalesce& c) override { ring(i).coal.set(c); }

private:
    struct Ring {
        unsigned num = 0;
        uint16_t base = 0;
        VringAddr addr{};
        int kick = -1, call = -1, err = -1, tap = -1;
        Fd stop_fd{eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
        std::atomic<bool> stopping{false};
        Thread thread;
        std::optional<SplitQueue> q;  // only the ring's thread touches it while running
        NetRx rx;
        // Dirty logging as vhost-net does it: the used ring (entries, index and
        // notification word) when the ring's VHOST_VRING_F_LOG flag is set,
        // the buffers the device fills when VHOST_F_LOG_ALL is negotiated.
        WriteLog used_log, data_log;
        QueueStats st;
        CoalesceTimer coal;
    };
    Ring& ring(unsigned i) {
        if (i >= rings_.size()) throw InternalError("vhost worker: no ring " + std::to_string(i));
        return *rings_[i];
    }
    std::vector<unsigned> pause_all() {
        std::vector<unsigned> running;
        for (unsigned i = 0; i < rings_.size(); i++)
            if (rings_[i]->thread.joinable()) {
                stop(*rings_[i]);
                running.push_back(i);
            }
        return running;
    }
    void resume_all(const std::vector<unsigned>& which) {
        for (unsigned i : which) start(i);
    }
    template <typename Change>
    void while_stopped(unsigned i, Change change) {
        Ring& r = ring(i);
        bool was = r.thread.joinable();
        stop(r);
        change(r);
        if (was) start(i);
    }
    void stop(Ring& r) {
        if (!r.thread.joinable()) return;
        r.stopping = true;
        signal(r.stop_fd.get());
        r.thread.join();
        r.stopping = false;
        drain(r.stop_fd.get());
        if (r.q) {
            // An interrupt held back for coalescing goes now: the next
            // thread's queue starts from the used index as it stands, and
            // would never look at these buffers again.
            if (r.coal.holding()) flush(r);
            r.rx.release(*r.q);  // buffers taken ahead are the next backend's to take
            r.base = r.q->last_avail();
        }
        r.q.reset();
    }
    void start(unsigned i) {
        Ring& r = *rings_[i];
        auto desc = mem_.gpa_of(r.addr.desc), avail = mem_.gpa_of(r.addr.avail), used = mem_.gpa_of(r.addr.used);
        if (r.num == 0 || r.num > SplitQueue::kMaxSize || !desc || !avail || !used) {
            signal(r.err);  // rings outside the memory table: the VMM marks the device broken
            return;
        }
        r.q.emplace(mem_, static_cast<uint16_t>(r.num), *desc, *avail, *used);
        r.q->set_event_idx(features_ & virtio::kFEventIdx);
        r.q->resume(r.base);
        WriteLog log = logger(r);
        r.used_log = r.addr.log_used ? log : WriteLog{};
        r.data_log = features_ & vhost::kFLogAll ? log : WriteLog{};
        if (r.used_log) r.q->set_write_log(r.used_log);
        bool rx = i % 2 == 0;
        // What it serves, for ps -L and top -H (15 characters at most).
        std::string tname = "vhost-" + label_ + (rx ? "-rx" : "-tx") + std::to_string(i / 2);
        // The thread names itself (enter_thread): the vCPU thread that
        // starts it may not open /proc, which naming another thread takes.
        r.thread = Thread([this, &r, rx, tname] {
            guarded(tname, [&] {
                enter_thread(ThreadKind::VhostWorker, tname);
                rx ? rx_loop(r) : tx_loop(r);
            });
        });
    }
    // Marks the pages of ring r's writes in the log, once a log base is set.
    // The log covers the memory table, and every write is inside it; one
    // that is not (a bug) is counted, not marked outside the bitmap.
    WriteLog logger(Ring& r) {
        if (!log_) return {};
        return [log = log_, errors = &r.st.errors](uint64_t gpa, uint64_t len) {
            if (!log.mark(gpa, len)) (*errors)++;
        };
    }
    void failed(Ring& r) {
        r.st.errors++;
        signal(r.err);
    }
    // Waits for the kick (or, for RX, a frame, or the end of an interrupt
    // held for coalescing); false when told to stop.
    bool wait(Ring& r, bool want_tap) {
        pollfd fds[4] = {{r.stop_fd.get(), POLLIN, 0},
                         {r.kick, POLLIN, 0},
                         {r.tap, short(want_tap ? POLLIN : 0), 0},
                         {r.coal.fd(), POLLIN, 0}};
        while (poll(fds, 4, -1) < 0) {
        }
        if (fds[1].revents) {
            drain(r.kick);
            r.st.notifications++;
        }
        if (fds[3].revents && r.coal.expired()) flush(r);
        return !r.stopping;
    }
    void interrupt(Ring& r) {
        if (r.coal.due(r.q->unsignalled())) flush(r);
    }
    void flush(Ring& r) {
        if (r.q->need_interrupt()) {
            signal(r.call);
            r.st.interrupts++;
        }
    }
    // The queue logs what it writes of the used ring, notification word included.
    bool enable_notify(Ring& r) { return r.q->enable_notify(); }
    void disable_notify(Ring& r) { r.q->disable_notify(); }
    void tx_loop(Ring& r) {
        std::string why;
        while (!r.stopping) {
            disable_notify(r);
            Work w = net_tx(*r.q, mem_, r.tap, r.st, kBudget, why, fd_header());
            interrupt(r);
            if (w == Work::Broken) return failed(r);
            if (w == Work::More || enable_notify(r)) continue;
            if (!wait(r, false)) return;
        }
    }
    void rx_loop(Ring& r) {
        std::string why;
        RxOptions opt{.mergeable = bool(features_ & net::kMrgRxbuf), .fd_header = fd_header(), .budget = kBudget,
                      .log = r.data_log};
        bool want_tap = true;
        while (!r.stopping) {
            Work w = r.rx.run(*r.q, mem_, r.tap, opt, r.st, why);
            interrupt(r);
            if (w == Work::Broken) return failed(r);
            if (w == Work::More) continue;
            // Waiting for buffers: sleep on the kick only, unless they came meanwhile.
            want_tap = w != Work::NeedBuffers;
            if (!want_tap && enable_notify(r)) continue;
            if (!wait(r, want_tap)) return;
            if (!want_tap) disable_notify(r);
        }
    }

    bool fd_header() const { return !(features_ & vhost::kFNetVirtioNetHdr); }

    std::string label_;
    MemTable mem_;
    uint64_t features_ = 0;
    DirtyLog log_;
    std::vector<std::unique_ptr<Ring>> rings_;  // threads point into them: never moved
};
}  // namespace

std::unique_ptr<VhostBackend> make_worker_vhost(unsigned pairs, const std::string& label) {
    return std::make_unique<WorkerVhost>(pairs, label);
}

}  // namespace minivmm
