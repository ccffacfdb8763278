// Pausing without KVM: threads that loop as a vCPU does (park when asked,
// else "run") stop counting while paused, count again after resume, and a
// stop reaches them while they are parked.
#include "vmm/vcpu_pause.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "vmm/stop.hpp"

using namespace minivmm;
using namespace std::chrono_literals;

namespace {
struct FakeVcpus {
    static constexpr unsigned kN = 3;
    Stop stop;
    VcpuPause pause;
    std::atomic<uint64_t> runs[kN] = {};
    std::atomic<unsigned> kicks{0};
    std::vector<std::thread> threads;
    FakeVcpus() {
        for (unsigned i = 0; i < kN; i++)
            threads.emplace_back([this, i] {
                while (!stop.requested()) {
                    if (pause.wanted()) {
                        pause.park(stop);
                        continue;
                    }
                    runs[i]++;
                    std::this_thread::sleep_for(100us);  // "in the guest"
                }
            });
    }
    ~FakeVcpus() {
        stop.request(0, "test");
        pause.release_for_stop();
        for (auto& t : threads) t.join();
    }
    bool do_pause() {
        return pause.pause(kN, stop, [this] { kicks++; }, 10s);
    }
    uint64_t total() const {
        uint64_t n = 0;
        for (auto& r : runs) n += r;
        return n;
    }
};
}  // namespace

TEST(VcpuPause, PausedThreadsDoNotRunUntilResumed) {
    FakeVcpus v;
    std::this_thread::sleep_for(5ms);
    ASSERT_TRUE(v.do_pause());
    EXPECT_TRUE(v.pause.paused());
    EXPECT_EQ(v.pause.parked(), FakeVcpus::kN);
    EXPECT_GE(v.kicks.load(), 1u);
    uint64_t at = v.total();
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(v.total(), at) << "a parked thread ran";
    ASSERT_TRUE(v.do_pause());  // idempotent
    EXPECT_EQ(v.total(), at);
    v.pause.resume();
    EXPECT_FALSE(v.pause.paused());
    for (int i = 0; i < 1000 && v.total() == at; i++) std::this_thread::sleep_for(1ms);
    EXPECT_GT(v.total(), at) << "no thread ran after resume";
    v.pause.resume();  // idempotent
}

TEST(VcpuPause, StopReachesParkedThreads) {
    auto* v = new FakeVcpus;
    ASSERT_TRUE(v->do_pause());
    // The destructor stops while all are parked; joining proves they saw it.
    delete v;
}

TEST(VcpuPause, PauseAfterStopFails) {
    FakeVcpus v;
    v.stop.request(0, "test");
    v.pause.release_for_stop();
    EXPECT_FALSE(v.do_pause());
}

TEST(VcpuPause, PauseWithAVcpuThatNeverParksTimesOut) {
    Stop stop;
    VcpuPause p;
    // One "vCPU" that is never started: the limit ends the wait.
    EXPECT_FALSE(p.pause(1, stop, [] {}, 30ms));
    EXPECT_TRUE(p.paused());  // the request stays until resume
    p.resume();
    EXPECT_FALSE(p.paused());
}
