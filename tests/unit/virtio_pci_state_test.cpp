// The virtio-pci function's saved state, with the fake device model: the
// config space (BARs where the guest moved them), MSI-X, the common
// configuration and the queues round-trip, a loaded function decodes and
// kicks as the saved one did, and hostile states are refused.
#include <gtest/gtest.h>

#include "tests/unit/virtio_pci_guest.hpp"
#include "vmm/guest_memory.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {

constexpr uint64_t kMovedBar0 = 0xd000'0000;

// A started device whose guest moved BAR 0, programmed MSI-X, left values
// in every register it can write, and had interrupts pending.
void drive(Guest& g) {
    g.cfg_write(0x04, 0x0, 2);  // decoding off while the BAR moves, as Linux sizes
    g.cfg_write(0x10, kMovedBar0);
    g.cfg_write(0x04, 0x6, 2);
    g.cfg_write(0x3c, 10, 1);
    g.start();
    g.msix_vector(0, 0x31);
    g.msix_vector(1, 0x32, false);  // masked
    g.set_common(common::kMsixConfig, 0, 2);
    g.set_common(common::kQSelect, 0, 2);
    g.set_common(common::kQVector, 1, 2);
    g.set_common(common::kQSelect, 1, 2);
    g.set_common(common::kQVector, 0, 2);
    g.set_common(common::kDfSelect, 1, 4);
    g.set_common(common::kGfSelect, 1, 4);
    g.set_common(common::kQSelect, 1, 2);
    g.pci->signal_queue(0);  // vector 1 masked: pending, and ISR set
    g.dev.token = 0xfeedbeef;
}

std::vector<uint8_t> save(Guest& g) {
    state::Writer w;
    g.pci->save(w);
    return w.take();
}

void load(Guest& g, const std::vector<uint8_t>& bytes, const MemView& ram) {
    state::Reader r(bytes, "test");
    g.pci->load(r, ram);
    r.expect_end();
}

// Where the common configuration starts in the saved bytes: after the
// config space and the MSI-X table (3 vectors), then each queue's 29 bytes.
constexpr size_t kConfig = 256, kMsix = 4 + 17 * 3, kT = kConfig + kMsix;
constexpr size_t kStatusAt = kT, kIsrAt = kT + 1, kFeaturesAt = kT + 10, kConfigVectorAt = kT + 20,
                 kGenerationAt = kT + 22, kQueueCountAt = kT + 23;
constexpr size_t queue_at(unsigned q) { return kT + 25 + 29 * q; }

}  // namespace

TEST(VirtioPciState, RunningFunctionRoundTripsAndDecodesWhereTheGuestPutIt) {
    GuestMemory ram(1ull << 20);
    Guest a;
    drive(a);
    EXPECT_THROW(save(a), InternalError) << "a running device must be quiesced first";
    a.pci->quiesce();
    EXPECT_EQ(a.dev.quiesces, 1);
    auto bytes = save(a);

    Guest b;
    load(b, bytes, ram);
    EXPECT_EQ(b.dev.loads, 1);
    EXPECT_EQ(b.dev.activations, 1) << "a started device starts again";
    EXPECT_EQ(b.dev.token, 0xfeedbeefu);
    EXPECT_EQ(b.dev.queues.size(), a.dev.queues.size());
    for (size_t i = 0; i < a.dev.queues.size(); i++) {
        EXPECT_EQ(b.dev.queues[i].size, a.dev.queues[i].size);
        EXPECT_EQ(b.dev.queues[i].desc, a.dev.queues[i].desc);
        EXPECT_EQ(b.dev.queues[i].device, a.dev.queues[i].device);
    }
    b.pci->quiesce();
    EXPECT_EQ(save(b), bytes);
    b.pci->resume();
    a.pci->resume();
    EXPECT_EQ(a.dev.resumes, 1);

    // The BAR decodes at the guest's address, in b as in a.
    EXPECT_EQ(b.pci->decoded_address(0), kMovedBar0);
    for (Guest* g : {&a, &b}) {
        EXPECT_EQ(g->cfg_read(0x3c, 1), 10u);
        EXPECT_EQ(g->status(), virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk | virtio::kDriverOk);
        EXPECT_EQ(g->common(common::kQSelect, 2), 1u);
        EXPECT_EQ(g->common(common::kQVector, 2), 0u);
        EXPECT_EQ(g->common(common::kDfSelect, 4), 1u);
        EXPECT_EQ(g->common(common::kDf, 4), kOffered >> 32);
        EXPECT_EQ(g->common(common::kMsixConfig, 2), 0u);
        EXPECT_EQ(g->read(1, VirtioPci::kMsixPba, 8), 2u) << "vector 1 pending";
        EXPECT_EQ(g->read(0, VirtioPci::kIsr, 1), 1u);  // and reading clears it
        g->write(0, VirtioPci::kNotify + VirtioPci::kNotifyMultiplier * 1, 1, 2);
        EXPECT_EQ(g->dev.notified.back(), 1) << "kicks reach the device at the moved BAR";
        // Unmasking vector 1 sends the pending interrupt.
        size_t before = g->sent.size();
        g->write(1, VirtioPci::kMsixTable + 16 + 12, 0, 4);
        ASSERT_EQ(g->sent.size(), before + 1);
        EXPECT_EQ(g->sent.back().data, 0x32u);
    }
}

TEST(VirtioPciState, UnstartedFunctionLoadsConfiguredButInactive) {
    GuestMemory ram(1ull << 20);
    Guest a;
    ASSERT_TRUE(a.negotiate(virtio::kFVersion1) & virtio::kFeaturesOk);
    a.setup_queue(0, 64, 0x10000);
    auto bytes = save(a);  // not started: no quiesce needed
    Guest b;
    load(b, bytes, ram);
    EXPECT_EQ(b.dev.activations, 0);
    EXPECT_EQ(save(b), bytes);
    // The driver goes on: the rest of its setup, then DRIVER_OK starts it.
    b.setup_queue(1, 32, 0x20000);
    b.set_status(virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk | virtio::kDriverOk);
    ASSERT_EQ(b.dev.activations, 1);
    EXPECT_EQ(b.dev.queues[0].size, 64);
    EXPECT_EQ(b.dev.queues[0].desc, 0x10000u);
    EXPECT_EQ(b.dev.features, virtio::kFVersion1);
    state::Reader again(bytes, "test");
    EXPECT_THROW(b.pci->load(again, ram), InternalError) << "only a fresh function takes a state";
}

// With KVM, the loaded function's kicks bypass minivmm at the moved BAR,
// and its irqfds follow the loaded MSI-X table.
TEST(VirtioPciState, LoadedFunctionGetsIoeventfdsAndIrqfds) {
    GuestMemory ram(1ull << 20);
    std::vector<uint8_t> bytes;
    {
        VhostGuest a;
        drive(a.g);
        a.g.pci->quiesce();
        bytes = save(a.g);
    }
    VhostGuest b;
    load(b.g, bytes, ram);
    EXPECT_EQ(b.kvm.ioeventfds, b.kicks_at(kMovedBar0));
    EXPECT_TRUE(b.kicks_bypass(kMovedBar0));
    // Queue 1's vector 0 is live: its call fd has an irqfd on a route with
    // vector 0's message; queue 0's vector 1 is masked: none.
    int call1 = b.g.pci->call_eventfd(1), call0 = b.g.pci->call_eventfd(0);
    ASSERT_EQ(b.kvm.irqfds.count(call1), 1u);
    EXPECT_EQ(b.kvm.routes.at(b.kvm.irqfds.at(call1)).data, 0x31u);
    EXPECT_EQ(b.kvm.irqfds.count(call0), 0u);
}

// A call a vhost backend made on a masked vector just before the device
// stopped is in the saved pending bits, though the watcher never saw it.
TEST(VirtioPciState, QuiesceCollectsCallsOnMaskedVectors) {
    VhostGuest a;
    drive(a.g);
    int call0 = a.g.pci->call_eventfd(0);  // vector 1, masked: the watcher's
    uint64_t one = 1;
    ASSERT_EQ(::write(call0, &one, sizeof one), 8);
    a.g.pci->quiesce();
    EXPECT_TRUE(a.g.pci->msix().pending(1));
}

TEST(VirtioPciState, HostileFieldsAreRefused) {
    GuestMemory ram(1ull << 20);
    Guest a;
    drive(a);
    a.pci->quiesce();
    const auto good = save(a);
    auto refused = [&](std::vector<uint8_t> bytes, const std::string& what) {
        Guest b;
        state::Reader r(bytes, "test");
        try {
            b.pci->load(r, ram);
            ADD_FAILURE() << "loaded; expected an error about " << what;
        } catch (const state::Error& e) {
            EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
        }
    };
    auto with = [&](size_t at, std::initializer_list<uint8_t> v) {
        auto b = good;
        size_t i = at;
        for (uint8_t x : v) b[i++] = x;
        return b;
    };
    auto u16 = [&](size_t at, uint16_t v) { return with(at, {uint8_t(v), uint8_t(v >> 8)}); };
    auto u64 = [&](size_t at, uint64_t v) {
        auto b = good;
        std::memcpy(&b[at], &v, 8);
        return b;
    };
    // Config space.
    refused(with(0x00, {0x86}), "virtio4 config 0x0: read-only");
    refused(with(0x04, {0x07}), "virtio4 config 0x4: command/status bits");
    refused(with(0x10, {0x10}), "virtio4 config 0x10: BAR value");
    refused(with(0x3d, {0x01}), "interrupt pin");
    // MSI-X: a table size the function does not have, Message Control and
    // table out of step, a bad entry.
    size_t msix_cap = a.caps().at(0x11);
    refused(with(msix_cap + 2, {0x07}), "capability register");
    refused(with(msix_cap + 3, {0x00}), "Message Control and the table");
    refused(with(kConfig, {0x09}), "virtio4 MSI-X: table of 9 vectors");
    refused(with(kConfig + 4 + 12, {0x02}), "virtio4 MSI-X vector 0: vector control");
    // The common configuration.
    refused(with(kStatusAt, {0x0f | 0x10}), "virtio4 device status: undefined bits");
    refused(with(kStatusAt, {0x07}), "virtio4 device status: not a combination");
    refused(u64(kFeaturesAt, virtio::kFVersion1 | (1ull << 40)), "virtio4 driver features: bits this device does not offer");
    refused(u64(kFeaturesAt, 1), "virtio4 device status: not a combination");  // FEATURES_OK without VERSION_1
    refused(with(kIsrAt, {0x04}), "virtio4 ISR");
    refused(u16(kConfigVectorAt, 3), "virtio4 config vector");
    refused(with(kGenerationAt, {1}), "virtio4 config generation");
    refused(u16(kQueueCountAt, 3), "virtio4: 3 queues saved");
    refused(u16(queue_at(0), 48), "virtio4 queue 0: size 48 is not a power of two up to 128");
    refused(u16(queue_at(1), 256), "virtio4 queue 1: size 256");
    refused(u16(queue_at(1), 0), "virtio4 queue 1: size 0");
    refused(u64(queue_at(0) + 2, 0xffe00), "virtio4 queue 0: rings outside guest RAM");  // past 1 MiB
    refused(u64(queue_at(1) + 10, 0x20001), "virtio4 queue 1: rings outside guest RAM or misaligned");
    refused(u64(queue_at(1) + 18, ~0ull - 8), "virtio4 queue 1: rings outside guest RAM");
    refused(with(queue_at(0) + 26, {2}), "neither 0 nor 1");
    refused(u16(queue_at(1) + 27, 3), "virtio4 queue 1: MSI-X vector beyond the table");
    // Truncated anywhere: refused, never half-used.
    for (size_t n = 0; n < good.size(); n++) {
        Guest b;
        std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(n));
        state::Reader r(cut, "test");
        EXPECT_THROW(b.pci->load(r, ram), state::Error) << n;
    }
}
