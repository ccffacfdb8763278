// A device reset while frames flow both ways, again and again: for
// minivmm's own datapath (vhost=off, its per-pair I/O thread) and for the
// vhost worker (its per-ring threads). Whatever a reset interrupts, it must
// return (no hang: a watchdog ends the program otherwise), leave the rings
// where a driver can take them back (used index not past what was offered,
// no ring reported broken), and, once the device is gone, leave no thread
// behind.
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>

#include "tests/unit/test_helpers.hpp"
#include "tests/unit/vhost_rig.hpp"
#include "vhost/net_backends.hpp"
#include "virtio/net.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
constexpr int kResets = 200;
constexpr uint16_t kWrite = 2;

// Ends the test program if the test does not finish in time: a hung reset
// would otherwise hang the whole suite with no word of where.
class Watchdog {
public:
    explicit Watchdog(int seconds)
        : thread_([this, seconds] {
              std::unique_lock l(lock_);
              if (!done_cv_.wait_for(l, std::chrono::seconds(seconds), [this] { return done_; })) {
                  std::fprintf(stderr, "reset race: still running after %d s: a reset hung\n", seconds);
                  std::abort();
              }
          }) {}
    ~Watchdog() {
        {
            std::lock_guard g(lock_);
            done_ = true;
        }
        done_cv_.notify_all();
        thread_.join();
    }

private:
    std::mutex lock_;
    std::condition_variable done_cv_;
    bool done_ = false;
    std::thread thread_;
};

// The host's side: frames into the tap as fast as it takes them, and the
// guest's frames drained, until stopped.
class Flood {
public:
    Flood(int pkt, int ifindex) : thread_([this, pkt, ifindex] { run(pkt, ifindex); }) {}
    ~Flood() {
        stop_ = true;
        thread_.join();
    }

private:
    void run(int pkt, int ifindex) {
        std::vector<uint8_t> buf(2048);
        for (uint8_t seed = 0; !stop_; seed++) {
            send_to_tap(pkt, ifindex, make_frame(60 + seed % 1400, seed), MSG_DONTWAIT);
            while (::recv(pkt, buf.data(), buf.size(), MSG_DONTWAIT) > 0) {
            }
            if (seed % 16 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
    }
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// The driver starting over after a reset: both rings empty, indexes 0.
void clear_rings(GuestRing& rx, GuestRing& tx) {
    for (GuestRing* d : {&rx, &tx}) {
        std::memset(d->mem->ptr(d->at.avail, RingLayout::avail_bytes(kQSize)), 0, RingLayout::avail_bytes(kQSize));
        std::memset(d->mem->ptr(d->at.used, RingLayout::used_bytes(kQSize)), 0, RingLayout::used_bytes(kQSize));
        d->avail_idx = 0;
    }
}

// Every RX head a 2 KiB buffer, every TX head a frame; all offered.
void fill_rings(GuestRing& rx, GuestRing& tx) {
    for (uint16_t h = 0; h < kQSize; h++) {
        rx.desc(h, rx_slot(h), 2048, kWrite);
        rx.offer(h);
        auto f = make_frame(100 + h, static_cast<uint8_t>(0x80 + h));
        std::vector<uint8_t> b(net::kHeaderLen + f.size(), 0);
        std::copy(f.begin(), f.end(), b.begin() + net::kHeaderLen);
        store(*tx.mem, tx_slot(h), b.data(), b.size());
        tx.desc(h, tx_slot(h), static_cast<uint32_t>(b.size()), 0);
        tx.offer(h);
    }
}

void pause_a_little(int i) { std::this_thread::sleep_for(std::chrono::microseconds(300 * (i % 4))); }

struct Transport : VirtioTransport {
    bool signal_queue(uint16_t) override { return true; }
    void mark_broken(const std::string& why) override {
        std::lock_guard g(lock);
        broken = why;
    }
    void signal_config() override {}
    std::mutex lock;
    std::string broken;
};
}  // namespace

TEST(ResetRace, OwnDatapathResetUnderTraffic) {
    in_netns([] {
        Watchdog dog(120);
        GuestMemory mem(kMemSize);
        Transport t;
        {
            auto tap = std::make_unique<Tap>("rrtest0");
            int ifindex = static_cast<int>(if_nametoindex(tap->name().c_str()));
            ASSERT_NE(ifindex, 0);
            VirtioNet net(mem, make_net_backend(std::move(tap), nullptr, "rr0"), VirtioNet::Mac{2, 0, 0, 0, 0, 7}, "rr0");
            // Threads name themselves as they start: give it a moment.
            for (int i = 0; i < 200 && threads_named("rr0-io").empty(); i++) usleep(10000);
            ASSERT_EQ(threads_named("rr0-io").size(), 1u);
            Fd pkt(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
            sockaddr_ll sll{};
            sll.sll_family = AF_PACKET;
            sll.sll_protocol = htons(ETH_P_ALL);
            sll.sll_ifindex = ifindex;
            ASSERT_EQ(::bind(pkt.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll), 0);
            std::vector<QueueConfig> qs(net.num_queues());
            qs[kRx] = {kQSize, kRxRing.desc, kRxRing.avail, kRxRing.used, true, 0};
            qs[kTx] = {kQSize, kTxRing.desc, kTxRing.avail, kTxRing.used, true, 1};
            GuestRing rx{mem, kQSize, kRxRing}, tx{mem, kQSize, kTxRing};
            uint64_t moved = 0;
            {
                Flood flood(pkt.get(), ifindex);
                for (int i = 0; i < kResets; i++) {
                    clear_rings(rx, tx);
                    net.activate(virtio::kFVersion1, qs, t);
                    fill_rings(rx, tx);
                    net.notify(kTx);
                    net.notify(kRx);
                    pause_a_little(i);
                    net.reset();
                    ASSERT_LE(rx.used_idx(), kQSize);
                    ASSERT_LE(tx.used_idx(), kQSize);
                    moved += rx.used_idx() + tx.used_idx();
                }
            }
            EXPECT_GT(moved, 0u) << "no frame moved: the race was not run";
            std::lock_guard g(t.lock);
            EXPECT_EQ(t.broken, "");
        }
        EXPECT_TRUE(threads_named("rr0-io").empty()) << "an I/O thread outlived its device";
    });
}

TEST(ResetRace, WorkerResetUnderTraffic) {
    if (kernel_vhost()) GTEST_SKIP() << "the worker's threads";
    in_netns([] {
        Watchdog dog(120);
        {
            Rig r(Options{.features = virtio::kFVersion1 | virtio::kFEventIdx | net::kMrgRxbuf});
            ASSERT_TRUE(threads_named("vhost-net").empty());
            uint64_t moved = 0;
            {
                Flood flood(r.pkt.get(), r.ifindex);
                for (int i = 0; i < kResets; i++) {
                    clear_rings(r.ring[kRx], r.ring[kTx]);
                    for (unsigned q : {kRx, kTx}) r.vh->set_vring_base(q, 0);
                    // Rings started before and after the driver fills them.
                    if (i % 2) r.start(kRx), r.start(kTx);
                    fill_rings(r.ring[kRx], r.ring[kTx]);
                    r.kick_now(kRx), r.kick_now(kTx);
                    if (i % 2 == 0) r.start(kTx), r.start(kRx);
                    pause_a_little(i);
                    // A device reset as VirtioNet makes it: detach, then read the base.
                    for (unsigned q : {kRx, kTx}) {
                        r.vh->set_backend(q, -1);
                        unsigned base = r.vh->get_vring_base(q);
                        ASSERT_LE(base, kQSize);
                        ASSERT_LE(r.ring[q].used_idx(), base) << "used entries for buffers never taken";
                        ASSERT_FALSE(wait_event(r.err[q].get(), 0)) << "ring " << q << " reported broken";
                    }
                    moved += r.ring[kRx].used_idx() + r.ring[kTx].used_idx();
                }
            }
            EXPECT_GT(moved, 0u) << "no frame moved: the race was not run";
        }
        EXPECT_TRUE(threads_named("vhost-net").empty()) << "a ring thread outlived the backend";
    });
}
