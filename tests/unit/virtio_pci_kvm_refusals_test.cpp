// The virtio-pci transport when KVM refuses what it asks (an ioeventfd at
// an address another device has, an irqfd, an MSI route), or answers a
// removal with an error. Both can follow from what the guest does, so
// neither may throw into the vCPU thread that did it, nor out of a reset or
// a destructor (std::terminate); an eventfd counts as registered only once
// KVM took it. A fake KVM keeps the tables and answers as KVM does.
#include <unistd.h>

#include <gtest/gtest.h>

#include "tests/unit/virtio_pci_guest.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {
constexpr uint32_t kElsewhere = 0xd000'0000u;  // in the PCI window, clear of both guests' BARs

// Queue q raises vector q + 1 (vector 0 is the config change's), live in the
// MSI-X table with data 0x40 + q.
void vectors_live(Guest& g) {
    for (uint16_t q = 0; q < kQueues; q++) {
        g.set_common(common::kQSelect, q, 2);
        g.set_common(common::kQVector, q + 1u, 2);
        g.msix_vector(q + 1u, 0x40u + q);
    }
}

// Started, every vector live and every queue's call fd made. Call it in
// ASSERT_NO_FATAL_FAILURE.
void calls_live(VhostGuest& v) {
    v.g.start();
    vectors_live(v.g);
    for (uint16_t q = 0; q < kQueues; q++) ASSERT_GE(v.g.pci->call_eventfd(q), 0);
}

// KVM failing every removal: irqfds and routes refused, and with its
// ioeventfd table emptied, every ioeventfd removal answers ENOENT.
void refuse_every_removal(FakeKvm& kvm) {
    kvm.refuse_irqfds = kvm.refuse_routes = true;
    kvm.ioeventfds.clear();
}

void signal(int fd) {
    uint64_t one = 1;
    ASSERT_EQ(::write(fd, &one, sizeof one), 8);
}
}  // namespace

// Two devices of one VM, the guest giving the second the first one's BAR 0:
// KVM refuses the second's kick ioeventfds (EEXIST). Had the second counted
// them as its own, its reset would remove them and KVM answer ENOENT, thrown
// into the vCPU thread, or out of its destructor.
TEST(VirtioPciKvmRefusals, SecondDeviceGivenTheFirstsBar0) {
    FakeKvm kvm;
    VhostGuest a(&kvm);
    auto b = std::make_unique<VhostGuest>(&kvm);
    b->g.cfg_write(0x10, kElsewhere);
    const uint32_t bar0 = a.g.cfg_read(0x10);
    a.g.start();
    const auto a_kicks = a.kicks_at(bar0);
    ASSERT_EQ(kvm.ioeventfds, a_kicks);

    b->g.cfg_write(0x10, bar0);
    ASSERT_NO_THROW(b->g.start());
    EXPECT_EQ(b->g.pci->kick_ioeventfd_failures(), kQueues);
    EXPECT_EQ(kvm.ioeventfds, a_kicks);
    EXPECT_NO_THROW(b->g.set_status(0));
    EXPECT_EQ(kvm.ioeventfds, a_kicks) << "the second device removed the first one's kicks";
    EXPECT_TRUE(a.kicks_bypass(bar0));

    // Started again and moved off: its kicks take their own place, and
    // moved back on, they leave it again.
    ASSERT_NO_THROW(b->g.start());
    EXPECT_NO_THROW(b->g.cfg_write(0x10, kElsewhere));
    EXPECT_EQ(kvm.ioeventfds.size(), 2u * kQueues);
    EXPECT_TRUE(b->kicks_bypass(kElsewhere));
    EXPECT_NO_THROW(b->g.cfg_write(0x10, bar0));
    EXPECT_EQ(kvm.ioeventfds, a_kicks);

    b.reset();  // the destructor, with the device running
    EXPECT_EQ(kvm.ioeventfds, a_kicks);
    EXPECT_TRUE(a.kicks_bypass(bar0));
    a.g.set_status(0);
    EXPECT_TRUE(kvm.ioeventfds.empty());
}

// A reset (status 0, on a vCPU) with KVM failing every removal: the fds
// still close, and the device starts again.
TEST(VirtioPciKvmRefusals, ResetWithRemovalsRefusedDoesNotThrow) {
    const size_t fds = open_fds();
    {
        VhostGuest v;
        ASSERT_NO_FATAL_FAILURE(calls_live(v));
        ASSERT_EQ(v.kvm.irqfds.size(), kQueues);
        refuse_every_removal(v.kvm);
        EXPECT_NO_THROW(v.g.set_status(0));
        v.kvm.refuse_irqfds = v.kvm.refuse_routes = false;
        v.kvm.irqfds.clear();
        ASSERT_NO_THROW(v.g.start());
        EXPECT_TRUE(v.kicks_bypass(v.g.pci->bar_address(0)));
    }
    EXPECT_EQ(open_fds(), fds);
}

// The same at exit: a destructor that threw would end the process.
TEST(VirtioPciKvmRefusals, DestructorWithRemovalsRefusedDoesNotThrow) {
    const size_t fds = open_fds();
    {
        VhostGuest v;
        ASSERT_NO_FATAL_FAILURE(calls_live(v));
        refuse_every_removal(v.kvm);
    }
    EXPECT_EQ(open_fds(), fds);
}

// KVM refusing the irqfd when the guest makes a vector live (its MSI-X
// table write): the interrupt goes through minivmm's watcher instead.
TEST(VirtioPciKvmRefusals, RefusedIrqfdLeavesInterruptsToTheWatcher) {
    VhostGuest v;
    v.g.start();
    int call = v.g.pci->call_eventfd(0);
    ASSERT_GE(call, 0);
    v.kvm.refuse_irqfds = true;
    EXPECT_NO_THROW(vectors_live(v.g));
    EXPECT_TRUE(v.kvm.irqfds.empty());
    EXPECT_GE(v.g.pci->irqfd_failures(), 1u);
    signal(call);
    ASSERT_TRUE(v.g.wait_delivered(1)) << "the call was lost";
    EXPECT_EQ(v.g.sent[0].data, 0x40u);
}

// No route for the call fd (KVM's routing table full): the same.
TEST(VirtioPciKvmRefusals, RefusedRouteLeavesInterruptsToTheWatcher) {
    VhostGuest v;
    v.g.start();
    v.kvm.refuse_routes = true;
    int call = -1;
    EXPECT_NO_THROW(call = v.g.pci->call_eventfd(0));
    ASSERT_GE(call, 0);
    EXPECT_NO_THROW(vectors_live(v.g));
    EXPECT_TRUE(v.kvm.irqfds.empty()) << "an irqfd on a GSI with no route";
    signal(call);
    ASSERT_TRUE(v.g.wait_delivered(1));
    EXPECT_EQ(v.g.sent[0].data, 0x40u);
}

// The guest reprograms a live vector and KVM refuses the route's update:
// the irqfd would raise the old message, so it is detached, and the watcher
// sends the new one.
TEST(VirtioPciKvmRefusals, RefusedRouteUpdateDetachesTheIrqfd) {
    VhostGuest v;
    v.g.start();
    vectors_live(v.g);
    int call = v.g.pci->call_eventfd(0);
    ASSERT_GE(call, 0);
    ASSERT_EQ(v.kvm.irqfds.size(), 1u);
    v.kvm.refuse_routes = true;
    EXPECT_NO_THROW(v.g.write(1, VirtioPci::kMsixTable + 16 + 8, 0x99, 4));
    EXPECT_TRUE(v.kvm.irqfds.empty());
    signal(call);
    ASSERT_TRUE(v.g.wait_delivered(1));
    EXPECT_EQ(v.g.sent[0].data, 0x99u);
}
