// The device status of the virtio-pci transport when other threads mark
// the device broken while the driver writes it, and when the driver writes
// it through the PCI-config window instead of BAR 0.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "tests/unit/virtio_pci_guest.hpp"

using namespace minivmm;
using namespace minivmm::testing;
using namespace minivmm::virtio;

namespace {
// mark_broken says once per reset on stderr why; thousands of rounds would
// bury the test output.
struct QuietStderr {
    int saved = ::dup(2);
    QuietStderr() {
        int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
        ::dup2(null, 2);
        ::close(null);
    }
    ~QuietStderr() {
        ::dup2(saved, 2);
        ::close(saved);
    }
};
}  // namespace

// The watcher thread (a vhost ring error) or a vhost=off I/O thread may mark
// the device broken while a vCPU writes the status. Each round: a reset,
// then the driver rewrites the status in a loop while another thread marks
// the device broken once; after that, DEVICE_NEEDS_RESET must be set. A
// status write that read the old value before the mark and stored after it
// would drop the bit (the device dead, the driver never told). The window
// is a few instructions of each write, so one round rarely hits it; many
// rounds, with the mark landing at a different point each time, do.
TEST(VirtioPciStatus, NeedsResetIsNeverLostToAConcurrentStatusWrite) {
    Guest g;
    constexpr int kRounds = 20000;
    std::atomic<int> round{0}, marked{0};
    QuietStderr quiet;
    std::thread breaker([&] {
        for (int r = 1; r <= kRounds; r++) {
            while (round.load() < r) {
            }
            volatile int spin = r % 64;  // the mark lands at a different point of the loop below
            while (spin > 0) spin = spin - 1;
            g.pci->mark_broken("concurrent");
            marked.store(r);
        }
    });
    int lost = 0;
    for (int r = 1; r <= kRounds; r++) {
        g.set_status(0);
        g.set_status(kAcknowledge);
        round.store(r);
        while (marked.load() < r) g.set_status(kAcknowledge | kDriver);
        g.set_status(kAcknowledge | kDriver);
        if (!(g.status() & kNeedsReset)) lost++;
    }
    breaker.join();
    EXPECT_EQ(lost, 0) << "rounds in which DEVICE_NEEDS_RESET was lost, of " << kRounds;
}

namespace {
// The driver's accesses to BAR 0 made through the PCI-config window
// (VIRTIO_PCI_CAP_PCI_CFG), as firmware without MMIO access would.
struct Window {
    Guest& g;
    uint8_t cap = g.caps().at(0x105);
    void aim(uint64_t off, uint32_t len) {
        g.cfg_write(cap + 4u, 0, 1);  // BAR 0
        g.cfg_write(cap + 8u, static_cast<uint32_t>(off));
        g.cfg_write(cap + 12u, len);
    }
    void write(uint64_t off, uint32_t v, uint32_t len) {
        aim(off, len);
        g.cfg_write(cap + 16u, v, len);
    }
    uint32_t read(uint64_t off, uint32_t len) {
        aim(off, len);
        return g.cfg_read(cap + 16u, len);
    }
};
}  // namespace

// Two devices driven through the same status writes, good and bad, one
// through BAR 0 and one through the window: they must end up alike at
// every step, DRIVER_OK starting each exactly once.
TEST(VirtioPciStatus, StatusThroughThePciCfgWindowActsAsThroughTheBar) {
    Guest bar, cfg;
    Window w{cfg};
    const uint64_t status = VirtioPci::kCommon + common::kStatus;
    auto features = [&](uint64_t f) {
        bar.write_features(f);
        for (uint32_t half : {0u, 1u}) {
            w.write(VirtioPci::kCommon + common::kGfSelect, half, 4);
            w.write(VirtioPci::kCommon + common::kGf, static_cast<uint32_t>(f >> (32 * half)), 4);
        }
    };
    auto both = [&](uint8_t s) {
        bar.set_status(s);
        w.write(status, s, 1);
        EXPECT_EQ(w.read(status, 1), bar.status()) << "after writing 0x" << std::hex << int(s);
        EXPECT_EQ(cfg.status(), bar.status());
        EXPECT_EQ(cfg.dev.activations, bar.dev.activations) << "after writing 0x" << std::hex << int(s);
    };
    both(kAcknowledge);
    both(kAcknowledge | kDriver | kDriverOk);  // DRIVER_OK before FEATURES_OK: ignored
    features(kFVersion1 | (1ull << 40));       // not offered: FEATURES_OK will not stick
    both(kAcknowledge | kDriver | kFeaturesOk);
    features(kFVersion1 | kFEventIdx);
    both(kAcknowledge | kDriver | kFeaturesOk);
    for (Guest* g : {&bar, &cfg}) {
        g->setup_queue(0, 64, 0x10000);
        g->setup_queue(1, 32, 0x20000);
    }
    both(kAcknowledge | kDriver | kFeaturesOk | kDriverOk);
    ASSERT_EQ(cfg.dev.activations, 1);
    EXPECT_EQ(cfg.dev.features, kFVersion1 | kFEventIdx);
    ASSERT_EQ(cfg.dev.queues.size(), kQueues);
    EXPECT_EQ(cfg.dev.queues[0].size, 64);
    EXPECT_EQ(cfg.dev.queues[1].desc, 0x20000u);
    both(kAcknowledge | kDriver | kFeaturesOk | kDriverOk);  // again: no second start
    both(kAcknowledge);                                       // clearing bits: not taken
    // Kicks through the window reach the device too.
    w.write(VirtioPci::kNotify + VirtioPci::kNotifyMultiplier * 1, 1, 2);
    EXPECT_EQ(cfg.dev.notified, std::vector<uint16_t>{1});
    // DEVICE_NEEDS_RESET stays through status writes, and zero resets.
    bar.pci->mark_broken("test");
    cfg.pci->mark_broken("test");
    both(kAcknowledge | kDriver | kFeaturesOk | kDriverOk | kFailed);
    EXPECT_TRUE(cfg.status() & kNeedsReset);
    int resets = cfg.dev.resets;
    both(0);
    EXPECT_EQ(cfg.dev.resets, resets + 1);
    EXPECT_EQ(cfg.status(), 0);
}
