// The control queue against a driver that keeps it full: one kick may cost
// the vCPU that makes it a bounded number of commands, and every command
// is still served without the driver kicking again.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "tests/unit/net_rig.hpp"
#include "tests/unit/netns_helpers.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
using Clock = std::chrono::steady_clock;
constexpr uint16_t kRing = 256, kSlots = kRing / 2;  // a command takes two descriptors
constexpr uint64_t kFeatures = virtio::kFVersion1 | virtio::kFEventIdx | net::kCtrlVq | net::kCtrlRx;

// Slot i: descriptor 2i holds VIRTIO_NET_CTRL_RX_PROMISC on, 2i+1 its
// status byte. Commands complete in order, so slot avail % kSlots is free
// once fewer than kSlots are outstanding.
struct Flood {
    CtrlRig r{1, kFeatures, "cb0", kRing};
    uint16_t& avail = r.ctrl.avail_idx;
    std::atomic<int> kick_batch{-1};  // used index when the test's own kick signalled

    Flood() {
        for (uint16_t i = 0; i < kSlots; i++) {
            uint8_t* cmd = r.mem.ptr(kCmdBuf + 4 * i, 3);
            cmd[0] = 0, cmd[1] = 0, cmd[2] = 1;
            r.desc(2 * i, kCmdBuf + 4 * i, 3, kNext, 2 * i + 1);
            r.desc(2 * i + 1, kStatusBuf + i, 1, kWrite, 0);
        }
        std::thread::id kicker = std::this_thread::get_id();
        std::lock_guard g(r.t.lock);
        r.t.on_signal = [this, kicker](uint16_t) {
            if (std::this_thread::get_id() == kicker && kick_batch < 0) kick_batch = r.used_idx();
        };
    }
    // Adds the next command if a slot is free; false if none is.
    bool add() {
        if (static_cast<uint16_t>(avail - r.used_idx()) >= kSlots) return false;
        uint16_t slot = avail % kSlots;
        *r.mem.ptr(kStatusBuf + slot, 1) = 0xee;
        r.ctrl.offer(static_cast<uint16_t>(2 * slot));
        return true;
    }
    // As a driver with EVENT_IDX does after adding: kick only if the device
    // asked to hear of this entry (avail_event), which it does only once it
    // has found the ring empty.
    void kick_if_asked() {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (r.ctrl.avail_event() == static_cast<uint16_t>(avail - 1)) r.net->notify(r.ctrl_index);
    }
    bool all_served(int ms) {
        auto end = Clock::now() + std::chrono::milliseconds(ms);
        while (r.used_idx() != avail)
            if (Clock::now() > end) return false;
            else std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return true;
    }
};
}  // namespace

// A full ring and one kick: that kick serves at most kCtrlBudget commands,
// and the rest are served anyway, though the driver never kicks again.
TEST(NetCtrlBudget, OneKickOnAFullRingServesABudgetAndTheRestFollow) {
    in_netns([] {
        Flood f;
        while (f.add()) {
        }
        ASSERT_GT(f.avail, VirtioNet::kCtrlBudget);
        f.r.net->notify(f.r.ctrl_index);
        EXPECT_GT(f.kick_batch, 0);
        EXPECT_LE(f.kick_batch, int(VirtioNet::kCtrlBudget)) << "commands served inside one kick";
        EXPECT_TRUE(f.all_served(5000)) << f.r.used_idx() << " of " << f.avail << " served";
        for (uint16_t i = 0; i < kSlots; i++) EXPECT_EQ(*f.r.mem.ptr(kStatusBuf + i, 1), kOk) << "slot " << i;
        EXPECT_EQ(f.r.t.broken_why(), "");
    });
}

// A second vCPU refilling the ring as fast as it empties, for a second:
// the kick that started it returns after a budget's worth, config reads
// on a third vCPU are not held up for the flood, and all is served.
TEST(NetCtrlBudget, AFloodFromAnotherVcpuHoldsNoVcpuAndAllIsServed) {
    in_netns([] {
        Flood f;
        while (f.add()) {
        }
        std::atomic<bool> kicked{false}, feeding{false};
        std::thread feeder([&] {
            feeding = true;
            auto end = Clock::now() + std::chrono::seconds(1);
            while (Clock::now() < end)
                if (f.add()) f.kick_if_asked();
            while (!kicked) std::this_thread::yield();
        });
        std::atomic<bool> done{false};
        Clock::duration slowest{};
        std::thread reader([&] {
            while (!done) {
                auto t0 = Clock::now();
                uint8_t mac[6];
                f.r.net->config_read(0, mac, 6);
                slowest = std::max(slowest, Clock::now() - t0);
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
        });
        while (!feeding) std::this_thread::yield();
        f.r.net->notify(f.r.ctrl_index);
        kicked = true;
        feeder.join();
        done = true;
        reader.join();
        EXPECT_LE(f.kick_batch, int(VirtioNet::kCtrlBudget)) << "commands served inside one kick";
        EXPECT_LT(slowest, std::chrono::milliseconds(200)) << "a config read waited for the flood";
        EXPECT_TRUE(f.all_served(10000)) << f.r.used_idx() << " of " << f.avail << " served";
        EXPECT_EQ(f.r.t.broken_why(), "");
    });
}
