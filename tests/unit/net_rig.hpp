// Shared by the virtio-net device tests: a transport that records what the
// device asks of it, and a device on a multi-queue tap with every ring
// placed, whose control queue a simulated driver uses.
#pragma once
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "tests/support/guest_ring.hpp"
#include "vhost/net_backends.hpp"
#include "vhost/ports/tap.hpp"
#include "virtio/net.hpp"
#include "vmm/guest_memory.hpp"

namespace minivmm::testing {

constexpr uint16_t kQSize = 8;
constexpr uint64_t kCtrlDesc = 0x10000, kCtrlAvail = 0x11000, kCtrlUsed = 0x12000, kCmdBuf = 0x20000,
                   kStatusBuf = 0x21000;
constexpr uint8_t kOk = 0, kErr = 1;

constexpr uint64_t kMqFeatures =
    virtio::kFVersion1 | net::kCtrlVq | net::kCtrlRx | net::kCtrlMacAddr | net::kMq | net::kMrgRxbuf;

// Called from the device's threads as well as the test's: locked.
class FakeTransport : public VirtioTransport {
public:
    bool signal_queue(uint16_t q) override {
        std::lock_guard g(lock);
        signalled.insert(q);
        if (on_signal) on_signal(q);
        return true;
    }
    void mark_broken(const std::string& why) override {
        std::lock_guard g(lock);
        broken = why;
    }
    void signal_config() override { config_signals++; }
    std::string broken_why() {
        std::lock_guard g(lock);
        return broken;
    }
    std::mutex lock;
    std::set<uint16_t> signalled;
    std::string broken;
    std::atomic<unsigned> config_signals{0};
    std::function<void(uint16_t)> on_signal;  // set before the device runs
};

// A device with `pairs` queue pairs whose rings are all placed (queue i's
// at ring(i)), and a driver that sends control commands one at a time.
struct CtrlRig {
    GuestMemory mem{16ull << 20};
    Tap* tap = nullptr;
    std::string steering_note;  // why the tap has no RSS steering, if asked for
    std::unique_ptr<VirtioNet> net;
    FakeTransport t;
    uint16_t ctrl_index = 0, ctrl_size;
    GuestRing ctrl;

    CtrlRig(unsigned pairs, uint64_t features, const std::string& label = "t0", uint16_t ctrl_entries = kQSize,
            const std::function<void(uint16_t)>& on_signal = {}, bool rss_steering = false)
        : ctrl_size(ctrl_entries), ctrl(mem, ctrl_entries, {kCtrlDesc, kCtrlAvail, kCtrlUsed}) {
        t.on_signal = on_signal;
        auto tp = std::make_unique<Tap>("mqtest0", pairs);
        tap = tp.get();
        if (rss_steering) steering_note = tp->attach_steering();
        net = std::make_unique<VirtioNet>(mem, make_net_backend(std::move(tp), nullptr, label),
                                          VirtioNet::Mac{0x52, 0x54, 0, 1, 2, 3}, label);
        std::vector<QueueConfig> qs(net->num_queues());
        for (uint16_t i = 0; i < qs.size(); i++) qs[i] = {kQSize, ring(i), ring(i) + 0x1000, ring(i) + 0x2000, true, i};
        ctrl_index = net::ctrl_queue(features, pairs);
        qs[ctrl_index] = {ctrl_size, kCtrlDesc, kCtrlAvail, kCtrlUsed, true, 0};
        net->activate(features, qs, t);
    }
    ~CtrlRig() { net->reset(); }

    static uint64_t ring(uint16_t q) { return 0x100000 + 0x4000ull * q; }
    // A driver of data queue q, starting at the ring's start.
    GuestRing queue(uint16_t q) { return GuestRing(mem, kQSize, RingLayout::paged(ring(q))); }
    void desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
        ctrl.desc(i, addr, len, flags, next);
    }
    uint16_t used_idx() const { return ctrl.used_idx(); }
    // Sends class/cmd/data; returns the status byte the device wrote, or -1
    // if it did not complete the command.
    int command(uint8_t cls, uint8_t cmd, const std::vector<uint8_t>& data, bool with_status = true) {
        std::vector<uint8_t> buf = {cls, cmd};
        buf.insert(buf.end(), data.begin(), data.end());
        std::memcpy(mem.ptr(kCmdBuf, buf.size()), buf.data(), buf.size());
        *mem.ptr(kStatusBuf, 1) = 0xee;
        desc(0, kCmdBuf, static_cast<uint32_t>(buf.size()), with_status ? kNext : 0, 1);
        desc(1, kStatusBuf, 1, kWrite, 0);
        uint16_t before = used_idx();
        ctrl.offer(0);
        net->notify(ctrl_index);
        if (used_idx() != static_cast<uint16_t>(before + 1)) return -1;
        return *mem.ptr(kStatusBuf, 1);
    }
    int pairs_set(uint16_t n) { return command(4, 0, {uint8_t(n), uint8_t(n >> 8)}); }
};

}  // namespace minivmm::testing
