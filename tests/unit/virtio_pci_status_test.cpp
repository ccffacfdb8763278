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
