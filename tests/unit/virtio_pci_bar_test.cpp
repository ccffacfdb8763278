// A guest moving BAR 0 of a virtio-pci function whose kicks go through KVM
// ioeventfds: they must follow it, or every kick exits to minivmm. No
// /dev/kvm here: a fake KVM keeps the ioeventfd table, and the guest's
// writes go through it first, as they do in KVM_RUN.
#include <gtest/gtest.h>

#include "tests/unit/virtio_pci_guest.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
constexpr uint32_t kMoved = 0xd000'0000u;  // in the PCI window, clear of BAR 1
}  // namespace

TEST(VirtioPciBar, KicksFollowBar0MovedWhileRunning) {
    VhostGuest v;
    v.g.start();
    ASSERT_EQ(v.g.dev.kicks.size(), kQueues);
    const uint64_t old = v.g.pci->bar_address(0);
    EXPECT_TRUE(v.kicks_bypass(old));

    v.g.cfg_write(0x10, kMoved);
    EXPECT_TRUE(v.kicks_bypass(kMoved)) << v.exits << " kicks exited to minivmm";
    EXPECT_EQ(v.kvm.ioeventfds, v.kicks_at(kMoved));  // the old ones are gone
    // Nothing decodes at the old place now: a kick there exits and goes nowhere.
    v.kick(notify(old, 0), 0);
    EXPECT_EQ(v.backend_kicks(0), 0u);
    EXPECT_TRUE(v.g.dev.notified.empty());

    v.g.cfg_write(0x10, static_cast<uint32_t>(old));
    EXPECT_EQ(v.kvm.ioeventfds, v.kicks_at(old));
    int exits = v.exits;
    EXPECT_TRUE(v.kicks_bypass(old));
    EXPECT_EQ(v.exits, exits);

    v.g.set_status(0);
    EXPECT_TRUE(v.kvm.ioeventfds.empty());
}

TEST(VirtioPciBar, KicksFollowBar0MovedBeforeTheQueuesStart) {
    VhostGuest v;
    v.g.cfg_write(0x10, kMoved);
    EXPECT_EQ(v.kvm.calls, 0);  // no kick eventfds yet: nothing to move
    v.g.start();
    EXPECT_EQ(v.kvm.ioeventfds, v.kicks_at(kMoved));
    EXPECT_TRUE(v.kicks_bypass(kMoved));
}

TEST(VirtioPciBar, SizingBar0LeavesTheKicksWhereTheyWere) {
    VhostGuest v;
    v.g.start();
    const uint32_t bar0 = v.g.cfg_read(0x10);
    const auto placed = v.kvm.ioeventfds;
    // As Linux sizes: memory decoding off, all ones, read the mask, restore,
    // decoding on. Kicks decode nowhere meanwhile, so no ioeventfd takes them.
    v.g.cfg_write(0x04, 0x4, 2);
    EXPECT_TRUE(v.kvm.ioeventfds.empty());
    v.g.cfg_write(0x10, 0xffff'ffffu);
    EXPECT_EQ(v.g.cfg_read(0x10), 0xffff'c000u);
    EXPECT_TRUE(v.kvm.ioeventfds.empty());
    v.g.cfg_write(0x10, bar0);
    v.g.cfg_write(0x04, 0x6, 2);
    EXPECT_EQ(v.kvm.ioeventfds, placed);
    EXPECT_TRUE(v.kicks_bypass(bar0));
    // Sizing with decoding on: the mask lies outside the PCI window.
    v.g.cfg_write(0x10, 0xffff'ffffu);
    EXPECT_TRUE(v.kvm.ioeventfds.empty());
    v.g.cfg_write(0x10, bar0);
    EXPECT_EQ(v.kvm.ioeventfds, placed);
    // Rewriting what is there asks nothing of KVM.
    int calls = v.kvm.calls;
    v.g.cfg_write(0x10, bar0);
    v.g.cfg_write(0x04, 0x6, 2);
    EXPECT_EQ(v.kvm.calls, calls);
}

TEST(VirtioPciBar, HostileMovesNeitherThrowNorLeak) {
    VhostGuest v;
    v.g.start();
    // KVM refuses queue 1's place at the new address: its kicks exit and
    // still reach the device.
    v.kvm.refused.insert(notify(kMoved, 1));
    EXPECT_NO_THROW(v.g.cfg_write(0x10, kMoved));
    EXPECT_EQ(v.g.pci->kick_ioeventfd_failures(), 1u);
    v.kick(notify(kMoved, 0), 0);
    EXPECT_EQ(v.backend_kicks(0), 1u);
    EXPECT_EQ(v.exits, 0);
    v.kick(notify(kMoved, 1), 1);
    EXPECT_EQ(v.exits, 1);
    EXPECT_EQ(v.g.dev.notified, std::vector<uint16_t>{1});

    // Anywhere, any number of times, decoding flipping under it.
    const size_t fds = open_fds();
    const uint32_t bar1 = v.g.cfg_read(0x14);
    uint32_t x = 1;
    for (int i = 0; i < 2000; i++) {
        x = x * 1103515245u + 12345u;
        uint32_t to[] = {x, 0xffff'ffffu, 0, bar1, kMoved, static_cast<uint32_t>(PciBus::kWindowStart) + (x & 0x3fff'c000u)};
        EXPECT_NO_THROW(v.g.cfg_write(0x10, to[i % 6]));
        if (i % 7 == 0) {
            EXPECT_NO_THROW(v.g.cfg_write(0x04, x & 0x6, 2));
        }
    }
    EXPECT_EQ(open_fds(), fds);
    v.kvm.refused.clear();
    v.g.cfg_write(0x04, 0x6, 2);
    v.g.cfg_write(0x10, kMoved + 0x10'0000u);
    EXPECT_EQ(v.kvm.ioeventfds, v.kicks_at(kMoved + 0x10'0000u));
    EXPECT_TRUE(v.kicks_bypass(kMoved + 0x10'0000u));
    v.g.set_status(0);
    EXPECT_TRUE(v.kvm.ioeventfds.empty());
}
