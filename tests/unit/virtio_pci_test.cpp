// The modern virtio-pci transport driven the way a guest driver does it:
// configuration space through 0xCF8/0xCFC, the structures through the BARs,
// with a fake device model behind it.
#include "virtio/virtio_pci.hpp"

#include <gtest/gtest.h>

#include <map>

#include "tests/unit/virtio_pci_guest.hpp"

using namespace minivmm;
using namespace minivmm::testing;
using namespace minivmm::virtio;

TEST(VirtioPci, IdentityAndBarSizes) {
    Guest g;
    EXPECT_EQ(g.cfg_read(0x00), 0x1044'1af4u);  // 0x1040 + device ID: modern
    EXPECT_EQ(g.cfg_read(0x08) & 0xff, 1u);
    EXPECT_EQ(g.cfg_read(0x08) >> 8, 0xff0000u);
    EXPECT_GE(g.cfg_read(0x2e, 2), 0x40u);
    uint32_t bar0 = g.cfg_read(0x10), bar1 = g.cfg_read(0x14);
    g.cfg_write(0x10, 0xffff'ffffu);
    g.cfg_write(0x14, 0xffff'ffffu);
    EXPECT_EQ(g.cfg_read(0x10), 0xffff'c000u);
    EXPECT_EQ(g.cfg_read(0x14), 0xffff'f000u);
    g.cfg_write(0x10, bar0);
    g.cfg_write(0x14, bar1);
    EXPECT_EQ(g.common(common::kNumQueues, 2), kQueues);
}

TEST(VirtioPci, CapabilitiesDescribeTheLayout) {
    Guest g;
    EXPECT_TRUE(g.cfg_read(0x06, 2) & (1u << 4));
    auto caps = g.caps();
    struct Want {
        uint8_t type, bar;
        uint32_t off, min_len;
    };
    for (Want w : {Want{1, 0, VirtioPci::kCommon, 0x38}, Want{2, 0, VirtioPci::kNotify, 4u * kQueues},
                   Want{3, 0, VirtioPci::kIsr, 1}, Want{4, 0, VirtioPci::kDeviceCfg, 8}}) {
        ASSERT_TRUE(caps.count(0x100 + w.type)) << "no cfg_type " << int(w.type);
        uint8_t at = caps[0x100 + w.type];
        EXPECT_GE(g.cfg_read(at + 2u, 1), 16u);
        EXPECT_EQ(g.cfg_read(at + 4u, 1), w.bar);
        EXPECT_EQ(g.cfg_read(at + 8u), w.off);
        EXPECT_GE(g.cfg_read(at + 12u), w.min_len);
    }
    EXPECT_EQ(g.cfg_read(caps[0x102] + 2u, 1), 20u);
    EXPECT_EQ(g.cfg_read(caps[0x102] + 16u), VirtioPci::kNotifyMultiplier);
    ASSERT_TRUE(caps.count(0x105));  // the PCI-cfg access window
    EXPECT_EQ(g.cfg_read(caps[0x105] + 2u, 1), 20u);
    ASSERT_TRUE(caps.count(0x11));
    uint8_t m = caps[0x11];
    EXPECT_EQ(g.cfg_read(m + 2u, 2), kQueues);  // N-1: a vector per queue plus config
    EXPECT_EQ(g.cfg_read(m + 4u), VirtioPci::kMsixTable | 1);
    EXPECT_EQ(g.cfg_read(m + 8u), VirtioPci::kMsixPba | 1);
}

TEST(VirtioPci, CapabilityHeadersAndBodiesAreReadOnly) {
    Guest g;
    auto caps = g.caps();
    std::map<uint8_t, uint32_t> before;
    for (auto [key, at] : caps)
        for (uint32_t r = at; r < at + 16u; r += 4) before[static_cast<uint8_t>(r)] = g.cfg_read(r);
    for (auto [key, at] : caps) {
        g.cfg_write(at, 0xa5, 1);       // ID
        g.cfg_write(at + 1u, 0x44, 1);  // next: would send the walk elsewhere
        if (key != 0x105) g.cfg_write(at + 8u, 0xdead'beefu);
    }
    for (auto [reg, v] : before) EXPECT_EQ(g.cfg_read(reg), v) << "config register 0x" << std::hex << int(reg);
    EXPECT_EQ(g.caps().size(), caps.size());
}

TEST(VirtioPci, MsixControlThroughConfigSpace) {
    Guest g;
    uint8_t m = g.caps().at(0x11);
    g.cfg_write(m + 2u, 0x8000, 2);
    EXPECT_TRUE(g.pci->msix().enabled());
    EXPECT_EQ(g.cfg_read(m + 2u, 2), 0x8000u | (kQueues));
    g.cfg_write(m + 2u, 0xc7ff, 2);  // the table size does not change
    EXPECT_EQ(g.cfg_read(m + 2u, 2), 0xc000u | (kQueues));
    EXPECT_TRUE(g.pci->msix().masked(0));
    g.cfg_write(m + 2u, 0, 2);
    EXPECT_FALSE(g.pci->msix().enabled());
    EXPECT_EQ(g.cfg_read(m + 2u, 2), kQueues);
    EXPECT_EQ(g.cfg_read(m, 1), Msix::kCapId);
}

TEST(VirtioPci, DeviceFeaturesByWindow) {
    Guest g;
    g.set_common(common::kDfSelect, 0, 4);
    EXPECT_EQ(g.common(common::kDf, 4), static_cast<uint32_t>(kOffered));
    g.set_common(common::kDfSelect, 1, 4);
    EXPECT_EQ(g.common(common::kDf, 4), kOffered >> 32);
    EXPECT_EQ(g.common(common::kDfSelect, 4), 1u);
    g.set_common(common::kDfSelect, 2, 4);
    EXPECT_EQ(g.common(common::kDf, 4), 0u);
}

TEST(VirtioPci, FeaturesOkSticksForAnOfferedSubsetWithVersion1) {
    Guest g;
    EXPECT_EQ(g.negotiate(kFVersion1 | kFEventIdx), kAcknowledge | kDriver | kFeaturesOk);
    // Frozen from here on.
    g.set_common(common::kGfSelect, 0, 4);
    g.set_common(common::kGf, 1, 4);
    EXPECT_EQ(g.common(common::kGf, 4), static_cast<uint32_t>(kFEventIdx));
    g.set_status(kAcknowledge | kDriver | kFeaturesOk | kDriverOk);
    EXPECT_EQ(g.dev.activations, 1);
    EXPECT_EQ(g.dev.features, kFVersion1 | kFEventIdx);
    EXPECT_EQ(g.status(), kAcknowledge | kDriver | kFeaturesOk | kDriverOk);
}

TEST(VirtioPci, FeaturesOkDoesNotStickOtherwise) {
    for (uint64_t f : {kFEventIdx | 1ull, kFVersion1 | (1ull << 5), kFVersion1 | (1ull << 40)}) {
        Guest g;
        EXPECT_EQ(g.negotiate(f), kAcknowledge | kDriver) << std::hex << f;
        // DRIVER_OK without FEATURES_OK is not taken either.
        g.set_status(kAcknowledge | kDriver | kFeaturesOk | kDriverOk);
        EXPECT_EQ(g.dev.activations, 0);
        EXPECT_FALSE(g.status() & kDriverOk);
    }
    // A driver that retries with an acceptable set gets through.
    Guest g;
    EXPECT_FALSE(g.negotiate(1) & kFeaturesOk);
    EXPECT_TRUE(g.negotiate(kFVersion1 | 1) & kFeaturesOk);
}

TEST(VirtioPci, DriverOkWithoutFeaturesOkIsIgnored) {
    Guest g;
    g.write_features(kFVersion1);
    g.set_status(kAcknowledge | kDriver | kDriverOk);
    EXPECT_EQ(g.dev.activations, 0);
    EXPECT_EQ(g.status(), kAcknowledge | kDriver);
}

TEST(VirtioPci, QueueFieldsBySelector) {
    Guest g;
    for (uint16_t q = 0; q < kQueues; q++) {
        g.set_common(common::kQSelect, q, 2);
        EXPECT_EQ(g.common(common::kQSize, 2), kMaxQueue);
        EXPECT_EQ(g.common(common::kQNotifyOff, 2), q);
        EXPECT_EQ(g.common(common::kQVector, 2), Msix::kNoVector);
        EXPECT_EQ(g.common(common::kQEnable, 2), 0u);
    }
    // 64-bit fields by halves, as drivers without 64-bit MMIO write them.
    g.set_common(common::kQSelect, 1, 2);
    g.set_common(common::kQDesc, 0x5000, 4);
    g.set_common(common::kQDesc + 4, 0x2, 4);
    EXPECT_EQ(g.common(common::kQDesc, 8), 0x2'0000'5000ull);
    g.set_common(common::kQDevice, 0x1234'5678'9abc'def0ull, 8);
    EXPECT_EQ(g.common(common::kQDevice + 4, 4), 0x1234'5678u);
    g.set_common(common::kQSelect, 0, 2);
    EXPECT_EQ(g.common(common::kQDesc, 8), 0u);
    // Past the last queue: size reads 0 (no such queue) and writes go nowhere.
    g.set_common(common::kQSelect, kQueues, 2);
    g.set_common(common::kQSize, 16, 2);
    g.set_common(common::kQEnable, 1, 2);
    EXPECT_EQ(g.common(common::kQSize, 2), 0u);
    EXPECT_EQ(g.common(common::kQEnable, 2), 0u);
    EXPECT_EQ(g.common(common::kQSelect, 2), kQueues);
}

TEST(VirtioPci, OutOfRangeVectorsReadBackNoVector) {
    Guest g;
    g.set_common(common::kMsixConfig, kQueues, 2);  // the last valid one
    EXPECT_EQ(g.common(common::kMsixConfig, 2), kQueues);
    g.set_common(common::kMsixConfig, kQueues + 1, 2);
    EXPECT_EQ(g.common(common::kMsixConfig, 2), Msix::kNoVector);
    g.set_common(common::kQSelect, 1, 2);
    g.set_common(common::kQVector, 1, 2);
    EXPECT_EQ(g.common(common::kQVector, 2), 1u);
    g.set_common(common::kQVector, 0x1234, 2);
    EXPECT_EQ(g.common(common::kQVector, 2), Msix::kNoVector);
}

TEST(VirtioPci, ActivationSeesTheQueuesAsConfigured) {
    Guest g;
    g.set_common(common::kQSelect, 1, 2);
    g.set_common(common::kQVector, 2, 2);
    g.start();
    ASSERT_EQ(g.dev.queues.size(), kQueues);
    EXPECT_EQ(g.dev.queues[0].size, 64);
    EXPECT_EQ(g.dev.queues[0].desc, 0x10000u);
    EXPECT_EQ(g.dev.queues[0].driver, 0x11000u);
    EXPECT_EQ(g.dev.queues[0].device, 0x12000u);
    EXPECT_TRUE(g.dev.queues[0].enabled);
    EXPECT_EQ(g.dev.queues[1].size, 32);
    EXPECT_EQ(g.dev.queues[1].msix_vector, 2);
}

TEST(VirtioPci, QueueFieldsAreFixedWhileRunning) {
    Guest g;
    g.start();
    g.set_common(common::kQSelect, 0, 2);
    g.set_common(common::kQSize, 16, 2);
    g.set_common(common::kQDesc, 0x90000, 8);
    g.set_common(common::kQDriver + 4, 1, 4);
    g.set_common(common::kQSelect, 1, 2);
    g.set_common(common::kQEnable, 0, 2);
    g.set_common(common::kQSelect, 0, 2);
    EXPECT_EQ(g.common(common::kQSize, 2), 64u);
    EXPECT_EQ(g.common(common::kQDesc, 8), 0x10000u);
    EXPECT_EQ(g.common(common::kQDriver, 8), 0x11000u);
    g.set_common(common::kQSelect, 1, 2);
    EXPECT_EQ(g.common(common::kQEnable, 2), 1u);
    // The vector may still move (the driver re-targets interrupts).
    g.set_common(common::kQVector, 1, 2);
    EXPECT_EQ(g.common(common::kQVector, 2), 1u);
    EXPECT_EQ(g.dev.activations, 1);
}

TEST(VirtioPci, WritingStatusZeroResets) {
    Guest g;
    g.set_common(common::kMsixConfig, 0, 2);
    g.set_common(common::kQSelect, 1, 2);
    g.set_common(common::kQVector, 1, 2);
    g.start();
    int resets = g.dev.resets;
    g.set_status(0);
    EXPECT_EQ(g.dev.resets, resets + 1);
    EXPECT_EQ(g.status(), 0);
    EXPECT_EQ(g.common(common::kMsixConfig, 2), Msix::kNoVector);
    EXPECT_EQ(g.common(common::kQSelect, 2), 0u);
    for (uint16_t q = 0; q < kQueues; q++) {
        g.set_common(common::kQSelect, q, 2);
        EXPECT_EQ(g.common(common::kQSize, 2), kMaxQueue);
        EXPECT_EQ(g.common(common::kQVector, 2), Msix::kNoVector);
        EXPECT_EQ(g.common(common::kQEnable, 2), 0u);
        EXPECT_EQ(g.common(common::kQDesc, 8), 0u);
        EXPECT_EQ(g.common(common::kQDriver, 8), 0u);
        EXPECT_EQ(g.common(common::kQDevice, 8), 0u);
    }
    g.set_common(common::kGfSelect, 1, 4);
    g.set_common(common::kGfSelect, 0, 4);
    EXPECT_EQ(g.common(common::kGf, 4), 0u);
    // Features are negotiable again after the reset.
    EXPECT_TRUE(g.negotiate(kFVersion1 | kFEventIdx) & kFeaturesOk);
}

TEST(VirtioPci, NotifyReachesTheDeviceOnlyWhileRunning) {
    Guest g;
    const uint64_t n = VirtioPci::kNotify, m = VirtioPci::kNotifyMultiplier;
    g.write(0, n, 0, 2);  // before DRIVER_OK
    EXPECT_TRUE(g.dev.notified.empty());
    g.start();
    g.write(0, n + m * 1, 1, 2);
    g.write(0, n, 0, 4);
    g.write(0, n + m * kQueues, kQueues, 2);  // no such queue
    EXPECT_EQ(g.dev.notified, (std::vector<uint16_t>{1, 0}));

    g.pci->mark_broken("test");
    EXPECT_TRUE(g.status() & kNeedsReset);
    g.write(0, n, 0, 2);
    EXPECT_EQ(g.dev.notified.size(), 2u);
    // Only a reset clears DEVICE_NEEDS_RESET.
    g.set_status(kAcknowledge | kDriver | kFeaturesOk | kDriverOk | kFailed);
    EXPECT_TRUE(g.status() & kNeedsReset);
    g.set_status(0);
    EXPECT_EQ(g.status(), 0);
    g.write(0, n, 0, 2);
    EXPECT_EQ(g.dev.notified.size(), 2u);
}

// Every notify address past the last queue's, up to the end of BAR 0, in
// every access width: the queue index they name does not exist, and the
// device hears of none of them.
TEST(VirtioPci, KicksForQueuesThatDoNotExistGoNowhere) {
    Guest g;
    g.start();
    const uint64_t first = VirtioPci::kNotify + uint64_t(VirtioPci::kNotifyMultiplier) * kQueues;
    for (uint64_t off = first; off < 0x4000; off += 2)
        for (uint32_t size : {1u, 2u, 4u}) g.write(0, off, off, size);
    EXPECT_TRUE(g.dev.notified.empty()) << g.dev.notified.size() << " kicks reached the device";
    g.write(0, VirtioPci::kNotify, 0, 2);  // queue 0's still does
    EXPECT_EQ(g.dev.notified, std::vector<uint16_t>{0});
}

TEST(VirtioPci, MarkBrokenRaisesTheConfigVectorOncePerReset) {
    Guest g;
    g.msix_vector(0, 0x4021);
    g.set_common(common::kMsixConfig, 0, 2);
    g.start();
    g.pci->mark_broken("first");
    ASSERT_EQ(g.sent.size(), 1u);
    EXPECT_EQ(g.sent[0].data, 0x4021u);
    EXPECT_EQ(g.read(0, VirtioPci::kIsr, 1), 2u);  // configuration change
    EXPECT_EQ(g.read(0, VirtioPci::kIsr, 1), 0u);  // reading cleared it
    g.pci->mark_broken("again");
    EXPECT_EQ(g.sent.size(), 1u);
    g.set_status(0);
    g.set_common(common::kMsixConfig, 0, 2);
    g.start();
    g.pci->mark_broken("after reset");
    EXPECT_EQ(g.sent.size(), 2u);
}

TEST(VirtioPci, QueueInterruptPendsWhileMaskedInBar1) {
    Guest g;
    g.msix_vector(2, 0x4022, false);
    g.set_common(common::kQSelect, 1, 2);
    g.set_common(common::kQVector, 2, 2);
    g.start();
    EXPECT_FALSE(g.pci->signal_queue(1));
    EXPECT_EQ(g.read(1, VirtioPci::kMsixPba, 8), 1u << 2);
    EXPECT_TRUE(g.sent.empty());
    g.write(1, VirtioPci::kMsixTable + 2 * 16 + 12, 0, 4);  // unmask
    ASSERT_EQ(g.sent.size(), 1u);
    EXPECT_EQ(g.sent[0].data, 0x4022u);
    EXPECT_EQ(g.read(1, VirtioPci::kMsixPba, 8), 0u);
    EXPECT_TRUE(g.pci->signal_queue(1));
    EXPECT_EQ(g.sent.size(), 2u);
    EXPECT_FALSE(g.pci->signal_queue(0));  // no vector assigned
    EXPECT_FALSE(g.pci->signal_queue(kQueues));
    EXPECT_EQ(g.read(0, VirtioPci::kIsr, 1), 1u);
    // The PBA is read-only, and byte accesses to the table are not taken.
    g.write(1, VirtioPci::kMsixPba, ~0ull, 8);
    g.write(1, VirtioPci::kMsixTable + 2 * 16 + 12, 1, 1);
    EXPECT_EQ(g.read(1, VirtioPci::kMsixPba, 8), 0u);
    EXPECT_FALSE(g.pci->msix().masked(2));
    EXPECT_EQ(g.read(1, VirtioPci::kMsixTable + 2 * 16 + 8, 1), 0u);
    EXPECT_EQ(g.read(1, VirtioPci::kMsixTable + 2 * 16 + 8, 4), 0x4022u);
}

TEST(VirtioPci, DeviceConfigurationWindow) {
    Guest g;
    EXPECT_EQ(g.read(0, VirtioPci::kDeviceCfg + 2, 2), 0x1312u);
    EXPECT_EQ(g.read(0, VirtioPci::kDeviceCfg + 6, 4), 0x1716u);
    g.write(0, VirtioPci::kDeviceCfg + 4, 0xab, 1);
    ASSERT_EQ(g.dev.config_writes.size(), 1u);
    EXPECT_EQ(g.dev.config_writes[0], (std::pair<uint64_t, uint64_t>{4, 0xab}));
}

TEST(VirtioPci, PciCfgCapabilityIsAWindowOntoTheBars) {
    Guest g;
    uint8_t c = g.caps().at(0x105);
    g.cfg_write(c + 4u, 0, 1);                                // BAR 0
    g.cfg_write(c + 8u, VirtioPci::kCommon + common::kStatus);  // offset
    g.cfg_write(c + 12u, 1);                                  // length
    g.cfg_write(c + 16u, kAcknowledge, 1);
    EXPECT_EQ(g.status(), kAcknowledge);
    g.set_status(kAcknowledge | kDriver);
    EXPECT_EQ(g.cfg_read(c + 16u) & 0xff, kAcknowledge | kDriver);
    g.cfg_write(c + 8u, VirtioPci::kDeviceCfg);
    g.cfg_write(c + 12u, 4);
    EXPECT_EQ(g.cfg_read(c + 16u), 0x1312'1110u);
    g.cfg_write(c + 12u, 3);  // not a valid access size: reads zero
    EXPECT_EQ(g.cfg_read(c + 16u), 0u);
    // cap_len and cfg_type stay what they are.
    EXPECT_EQ(g.cfg_read(c + 2u, 2), 20u | 5u << 8);
}
