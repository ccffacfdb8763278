// vhost=kernel or worker: a VhostBackend serves the pairs' rings. They are
// handed over at activation (features, memory table, ring addresses and
// KVM's eventfds); a pair in use has the port queue as their backend, and
// a reset takes them back. Kicks and interrupts then bypass minivmm.
#include <unistd.h>

#include <cstdio>
#include <mutex>

#include "vhost/port_backend.hpp"
#include "virtio/net_features.hpp"
#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"

namespace minivmm {

namespace {
// The transport features a vhost backend implements; the net-specific rest
// (offloads, MAC, status, control queue) is the tap's or the device's business.
constexpr uint64_t kVhostFeatures = virtio::kFVersion1 | virtio::kFEventIdx | virtio::kFIndirectDesc | net::kMrgRxbuf;

class VhostRings final : public PortBackend {
public:
    VhostRings(std::unique_ptr<NetPort> port, std::unique_ptr<VhostBackend> vhost, const std::string& label)
        : PortBackend(std::move(port)), vhost_(std::move(vhost)), label_(label) {
        for (unsigned k = 0; k < pairs(); k++) pairs_.push_back(std::make_unique<Pair>());
    }
    const char* datapath() const override { return vhost_->name(); }
    bool activate(const Rings& rings) override;
    void set_pairs_in_use(unsigned n) override;
    void notify(uint16_t queue) override;
    void reset() override;
    std::vector<uint16_t> quiesce() override;
    void resume() override;
    void set_dirty_log(const DirtyBitmap& log) override;
    const QueueStats* stats(unsigned queue) const override { return vhost_->stats(queue); }
    bool coalescing() const override { return vhost_->coalescing(); }
    void set_coalesce(unsigned queue, const Coalesce& c) override {
        if (vhost_->coalescing()) vhost_->set_vring_coalesce(queue, c);
    }

private:
    struct Pair {
        std::mutex lock;
        bool configured[2] = {};  // rx, tx: the driver set the ring up
        bool serving = false;     // the rings have the port queue as backend
        // Per ring, as a failure may leave one of the two attached: reset
        // must still detach it, or the ring keeps writing into guest memory.
        bool has_backend[2] = {};
        uint16_t stopped_at[2] = {};  // quiesce(): each ring's next avail entry
    };
    void hand_over(unsigned k, const Rings& rings);
    void apply_log();  // with every pair's lock held, rings handed over

    // Logging for a migration: what activate() and set_dirty_log() give vhost.
    uint64_t features_ = 0;        // negotiated, without VHOST_F_LOG_ALL
    std::vector<VringAddr> addrs_;  // per ring, as handed over
    DirtyBitmap log_;

    std::unique_ptr<VhostBackend> vhost_;
    std::string label_;
    std::vector<std::unique_ptr<Pair>> pairs_;
    // Set at activation with every pair's lock held.
    VirtioTransport* transport_ = nullptr;
    Device* device_ = nullptr;
    bool quiesced_ = false;  // with every pair's lock held
    // Rings that go on from a saved position (a loaded state) are kicked
    // once they have a backend: the driver may have kicked for entries the
    // old device never took, and will not kick again for them.
    bool kick_when_attached_ = false;
    void kick(unsigned i);
};

void VhostRings::kick(unsigned i) {
    int fd = transport_ ? transport_->kick_eventfd(static_cast<uint16_t>(i)) : -1;
    uint64_t one = 1;
    if (fd >= 0) [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
}

bool VhostRings::activate(const Rings& rings) {
    {
        std::vector<std::unique_lock<std::mutex>> locks;
        for (auto& p : pairs_) locks.emplace_back(p->lock);
        transport_ = &rings.transport;
        device_ = &rings.device;
        for (unsigned k = 0; k < rings.usable_pairs; k++)
            for (unsigned j : {0u, 1u}) pairs_[k]->configured[j] = rings.queues[2 * k + j].enabled;
        set_offloads(rings.features);
        kick_when_attached_ = rings.positions != nullptr;
    }
    try {
        uint64_t want = rings.features & kVhostFeatures;
        // A port without headers: vhost adds and strips them itself.
        if (!vnet_header()) want |= vhost::kFNetVirtioNetHdr;
        if (want & ~vhost_->get_features())
            return device_->needs_reset("the vhost backend lacks features the driver took"), false;
        features_ = want;
        vhost_->set_features(want);
        std::vector<VhostRegion> regions;
        for (const MemRegion& r : rings.mem.regions())
            regions.push_back({r.gpa, r.size, reinterpret_cast<uint64_t>(r.hva)});
        vhost_->set_mem_table(regions);
        addrs_.assign(2 * pairs_.size(), VringAddr{});
        for (unsigned k = 0; k < rings.usable_pairs; k++) hand_over(k, rings);
        // A driver that starts the device while a migration logs is logged too.
        if (log_) {
            std::vector<std::unique_lock<std::mutex>> locks;
            for (auto& p : pairs_) locks.emplace_back(p->lock);
            apply_log();
        }
    } catch (const std::exception& e) {
        return device_->needs_reset(std::string("vhost: ") + e.what()), false;
    }
    return true;
}

// Gives vhost the rings of pair k; its backend comes when the pair is in use.
void VhostRings::hand_over(unsigned k, const Rings& rings) {
    Pair& p = *pairs_[k];
    std::lock_guard g(p.lock);
    for (unsigned i : {2 * k, 2 * k + 1}) {
        if (!p.configured[i % 2]) continue;
        const QueueConfig& q = rings.queues[i];
        auto qi = static_cast<uint16_t>(i);
        int kick = transport_->kick_eventfd(qi), call = transport_->call_eventfd(qi), err = transport_->error_eventfd(qi);
        if (kick < 0 || call < 0 || err < 0) throw InternalError("the transport has no KVM eventfds for vhost");
        vhost_->set_vring_num(i, q.size);
        vhost_->set_vring_base(i, rings.positions ? (*rings.positions)[i] : 0);
        // Ring placement was checked before activation (SplitQueue::valid).
        auto hva = [&](uint64_t gpa) { return reinterpret_cast<uint64_t>(rings.mem.ptr(gpa, 1)); };
        addrs_[i] = {hva(q.desc), hva(q.driver), hva(q.device), q.device, false};
        vhost_->set_vring_addr(i, addrs_[i]);
        vhost_->set_vring_kick(i, kick);
        vhost_->set_vring_call(i, call);
        vhost_->set_vring_err(i, err);
    }
}

// Logging as vhost wants it turned on: the log first (the kernel checks it
// covers the memory table before it takes VHOST_F_LOG_ALL), then the
// feature (every buffer write logged), then each ring's used-ring log; off
// in the reverse order.
void VhostRings::apply_log() {
    bool on = static_cast<bool>(log_);
    if (on) vhost_->set_log_base(reinterpret_cast<uint64_t>(log_.base()), log_.bytes());
    vhost_->set_features(features_ | (on ? vhost::kFLogAll : 0));
    for (unsigned k = 0; k < pairs_.size(); k++)
        for (unsigned i : {2 * k, 2 * k + 1}) {
            if (!pairs_[k]->configured[i % 2]) continue;
            VringAddr a = addrs_[i];
            a.log_used = on;
            vhost_->set_vring_addr(i, a);
        }
    if (!on) vhost_->set_log_base(0, 0);
}

void VhostRings::set_dirty_log(const DirtyBitmap& log) {
    std::vector<std::unique_lock<std::mutex>> locks;
    for (auto& p : pairs_) locks.emplace_back(p->lock);
    log_ = log;
    // Not started: activate() applies it. Errors reach the migration, which fails.
    if (transport_) apply_log();
}

// A pair out of use has no backend on its rings, so they move nothing.
void VhostRings::set_pairs_in_use(unsigned n) {
    for (unsigned k = 0; k < pairs_.size(); k++) {
        Pair& p = *pairs_[k];
        std::lock_guard g(p.lock);
        bool on = k < n && device_ && device_->running() && !quiesced_;
        if (on) attach_queue(k);
        if (p.serving != on) {
            try {
                for (unsigned i : {2 * k, 2 * k + 1}) {
                    if (!p.configured[i % 2] || p.has_backend[i % 2] == on) continue;
                    vhost_->set_backend(i, on ? port_->fd(k) : -1);
                    p.has_backend[i % 2] = on;
                    if (on && kick_when_attached_) kick(i);
                }
                p.serving = on;
            } catch (const std::exception& e) {
                device_->needs_reset(std::string("vhost: ") + e.what());
            }
        }
        if (!on) detach_queue(k);
    }
}

// A kick that missed the ioeventfd (an unusual write width): forward it, to
// a ring the backend serves. Asking for any other ring's kick fd would make
// one, and its ioeventfd, from this vCPU thread.
void VhostRings::notify(uint16_t q) {
    if (q / 2u >= pairs_.size()) return;
    Pair& p = *pairs_[q / 2];
    std::lock_guard g(p.lock);
    bool served = transport_ && p.serving && p.configured[q % 2];
    int fd = served ? transport_->kick_eventfd(q) : -1;
    uint64_t one = 1;
    if (fd >= 0) [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
}

void VhostRings::reset() {
    std::vector<std::unique_lock<std::mutex>> locks;
    for (auto& p : pairs_) locks.emplace_back(p->lock);
    for (unsigned k = 0; k < pairs_.size(); k++) {
        Pair& p = *pairs_[k];
        for (unsigned i : {2 * k, 2 * k + 1}) {
            if (!p.configured[i % 2]) continue;
            try {
                // Stop in the order the kernel wants: detach the tap, then
                // read where the ring stopped (which also stops it).
                if (p.has_backend[i % 2]) vhost_->set_backend(i, -1);
                vhost_->get_vring_base(i);
            } catch (const std::exception& e) {
                std::fprintf(stderr, "minivmm: %s: stopping vhost: %s\n", label_.c_str(), e.what());
            }
        }
        p.serving = false;
        p.configured[0] = p.configured[1] = false;
        p.has_backend[0] = p.has_backend[1] = false;
    }
    transport_ = nullptr;
    quiesced_ = kick_when_attached_ = false;
    clear_offloads();
}

// As reset() stops them, but keeping everything else: without a backend a
// ring moves nothing, and GET_VRING_BASE says where it stopped.
std::vector<uint16_t> VhostRings::quiesce() {
    std::vector<std::unique_lock<std::mutex>> locks;
    for (auto& p : pairs_) locks.emplace_back(p->lock);
    std::vector<uint16_t> at(2 * pairs_.size(), 0);
    if (quiesced_) throw InternalError(label_ + ": quiesced twice");
    for (unsigned k = 0; k < pairs_.size(); k++) {
        Pair& p = *pairs_[k];
        for (unsigned i : {2 * k, 2 * k + 1}) {
            if (!p.configured[i % 2]) continue;
            // A ring that may still run cannot be saved: this throws.
            if (p.has_backend[i % 2]) vhost_->set_backend(i, -1);
            p.has_backend[i % 2] = false;
            p.stopped_at[i % 2] = at[i] = static_cast<uint16_t>(vhost_->get_vring_base(i));
        }
    }
    quiesced_ = true;
    return at;
}

// Each ring goes on at the entry it stopped at (its used index is in guest
// RAM, which vhost reads when the backend comes back).
void VhostRings::resume() {
    std::vector<std::unique_lock<std::mutex>> locks;
    for (auto& p : pairs_) locks.emplace_back(p->lock);
    if (!quiesced_) return;
    quiesced_ = false;
    try {
        for (unsigned k = 0; k < pairs_.size(); k++) {
            Pair& p = *pairs_[k];
            for (unsigned i : {2 * k, 2 * k + 1}) {
                if (!p.configured[i % 2]) continue;
                vhost_->set_vring_base(i, p.stopped_at[i % 2]);
                if (!p.serving) continue;
                vhost_->set_backend(i, port_->fd(k));
                p.has_backend[i % 2] = true;
                kick(i);
            }
        }
    } catch (const std::exception& e) {
        if (device_) device_->needs_reset(std::string("vhost: resuming: ") + e.what());
    }
}
}  // namespace

void VhostBackend::set_vring_coalesce(unsigned, const Coalesce&) {
    throw internal_error(std::string("vhost ") + name() + ": no notification coalescing", EOPNOTSUPP);
}

std::unique_ptr<NetBackend> make_vhost_rings_backend(std::unique_ptr<NetPort> port,
                                                     std::unique_ptr<VhostBackend> vhost, const std::string& label) {
    return std::make_unique<VhostRings>(std::move(port), std::move(vhost), label);
}

}  // namespace minivmm
