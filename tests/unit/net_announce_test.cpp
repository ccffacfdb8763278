// virtio-net's GUEST_ANNOUNCE (virtio 1.3, 5.1.4 and 5.1.6.5.4) through the
// virtio-pci transport, on a tap in a private network namespace: after a
// load the machine calls announce(); a running NIC whose driver took the
// feature shows VIRTIO_NET_S_ANNOUNCE in its status and raises the
// configuration change interrupt, until the driver's ANNOUNCE_ACK clears
// it. Nothing else does either, and the saved state does not change.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "tests/unit/netns_helpers.hpp"
#include "tests/unit/vhost_rig.hpp"
#include "tests/unit/virtio_pci_guest.hpp"
#include "vhost/net_backends.hpp"
#include "vhost/ports/tap.hpp"
#include "virtio/net.hpp"

using namespace minivmm;
using namespace minivmm::testing;

namespace {

constexpr uint16_t kRing = 8, kCtrlQueue = 2;
constexpr uint64_t kRxBase = 0x10000, kTxBase = 0x20000, kCtrlBase = 0x30000, kCmd = 0x300000, kAck = 0x301000;
constexpr uint64_t kAnnounceFeatures =
    virtio::kFVersion1 | net::kStatus | net::kCtrlVq | net::kCtrlRx | net::kGuestAnnounce;
constexpr uint8_t kFeaturesOkStatus = virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk;
constexpr uint8_t kOkStatus = kFeaturesOkStatus | virtio::kDriverOk;
constexpr uint8_t kClassAnnounce = 3, kAnnounceAck = 0, kOk = 0, kErr = 1;
constexpr uint32_t kConfigMsi = 0x4030, kCtrlMsi = 0x4031;  // the MSI data of the two vectors
constexpr uint16_t kLinkUp = 1, kAnnouncing = 1 | 2;

// A NIC on a fresh tap an0 behind virtio-pci (with a fake KVM, which the
// worker datapath needs), and its driver: config changes on MSI-X vector 0,
// the control queue's interrupts on vector 1.
struct Nic {
    FakeKvm kvm;
    VirtioPci::KvmHooks hooks{kvm, kvm};
    Guest g;
    GuestRing ctrl;

    Nic(GuestMemory& mem, const std::string& datapath = "off")
        : g(&hooks, std::make_unique<VirtioNet>(
                        mem,
                        make_net_backend(std::make_unique<Tap>("an0"),
                                         datapath == "worker" ? make_worker_vhost(1, "an0") : nullptr, "an0"),
                        VirtioNet::Mac{0x52, 0x54, 0, 0, 0, 7}, "an0")),
          ctrl(mem, kRing, RingLayout::paged(kCtrlBase)) {}

    // The driver up to FEATURES_OK with features, its queues and vectors
    // set; DRIVER_OK if asked.
    void start(uint64_t features, bool driver_ok = true) {
        ASSERT_TRUE(g.negotiate(features) & virtio::kFeaturesOk);
        g.msix_vector(0, kConfigMsi);
        g.msix_vector(1, kCtrlMsi);
        g.set_common(common::kMsixConfig, 0, 2);
        g.setup_queue(0, kRing, kRxBase);
        g.setup_queue(1, kRing, kTxBase);
        g.setup_queue(kCtrlQueue, kRing, kCtrlBase);
        g.set_common(common::kQVector, 1, 2);  // the control queue's, selected last
        if (!driver_ok) return;
        g.set_status(kOkStatus);
        ASSERT_EQ(g.status(), kOkStatus);
    }
    // The config space's status field, as the driver reads it.
    uint16_t net_status() { return static_cast<uint16_t>(g.read(0, VirtioPci::kDeviceCfg + 6, 2)); }
    // Configuration change interrupts the guest has received.
    size_t config_interrupts() const {
        size_t n = 0;
        for (const MsiMessage& m : g.sent) n += m.data == kConfigMsi;
        return n;
    }
    void announce() { g.pci->device().announce(); }  // as the machine does after a load
    // A control command through the control queue; its status, or -1.
    int command(uint8_t cls, uint8_t cmd, const std::vector<uint8_t>& data = {}) {
        std::vector<uint8_t> b = {cls, cmd};
        b.insert(b.end(), data.begin(), data.end());
        std::memcpy(ctrl.mem->ptr(kCmd, b.size()), b.data(), b.size());
        *ctrl.mem->ptr(kAck, 1) = 0xee;
        ctrl.desc(0, kCmd, static_cast<uint32_t>(b.size()), kNext, 1);
        ctrl.desc(1, kAck, 1, kWrite);
        uint16_t before = ctrl.used_idx();
        ctrl.offer(0);
        g.write(0, VirtioPci::kNotify + VirtioPci::kNotifyMultiplier * kCtrlQueue, kCtrlQueue, 2);
        if (!ctrl.wait_used(static_cast<uint16_t>(before + 1))) return -1;
        return *ctrl.mem->ptr(kAck, 1);
    }
    int ack(const std::vector<uint8_t>& data = {}) { return command(kClassAnnounce, kAnnounceAck, data); }
    std::vector<uint8_t> save() {
        state::Writer w;
        g.pci->save(w);
        return w.take();
    }
};

class NetAnnounceOn : public ::testing::TestWithParam<const char*> {};

}  // namespace

// Offered with the control queue its acknowledgement needs, on every
// datapath: the device model alone serves it.
TEST_P(NetAnnounceOn, OfferedWithTheControlQueue) {
    in_netns([datapath = std::string(GetParam())] {
        GuestMemory mem(16ull << 20);
        Nic n(mem, datapath);
        uint64_t f = n.g.pci->device().features();
        EXPECT_TRUE(f & net::kGuestAnnounce);
        EXPECT_TRUE(f & net::kCtrlVq);
        EXPECT_TRUE(f & net::kStatus);  // the driver reads ANNOUNCE in the status field
    });
}

TEST_P(NetAnnounceOn, StatusAndConfigInterruptUntilTheDriverAcknowledges) {
    in_netns([datapath = std::string(GetParam())] {
        GuestMemory mem(16ull << 20);
        Nic n(mem, datapath);
        n.start(kAnnounceFeatures);
        EXPECT_EQ(n.net_status(), kLinkUp);
        EXPECT_EQ(n.config_interrupts(), 0u);
        n.announce();
        EXPECT_EQ(n.net_status(), kAnnouncing);
        EXPECT_EQ(n.config_interrupts(), 1u);
        EXPECT_EQ(n.g.read(0, VirtioPci::kIsr, 1), 2u);  // a configuration change
        // Asked again before the driver got to it: the same bit, one more interrupt.
        n.announce();
        EXPECT_EQ(n.net_status(), kAnnouncing);
        EXPECT_EQ(n.config_interrupts(), 2u);
        // Data with the acknowledgement (it has none): refused, still pending.
        EXPECT_EQ(n.ack({0}), kErr);
        EXPECT_EQ(n.net_status(), kAnnouncing);
        EXPECT_EQ(n.ack(), kOk);
        EXPECT_EQ(n.net_status(), kLinkUp);
        // A second acknowledgement, with nothing pending: harmless.
        EXPECT_EQ(n.ack(), kOk);
        EXPECT_EQ(n.net_status(), kLinkUp);
        EXPECT_EQ(n.config_interrupts(), 2u);  // the acknowledgements raise none
        // The next load announces again.
        n.announce();
        EXPECT_EQ(n.net_status(), kAnnouncing);
        EXPECT_EQ(n.config_interrupts(), 3u);
        EXPECT_EQ(n.ack(), kOk);
        EXPECT_EQ(n.net_status(), kLinkUp);
        EXPECT_EQ(n.g.status(), kOkStatus);  // nothing broke
    });
}

INSTANTIATE_TEST_SUITE_P(Datapaths, NetAnnounceOn, ::testing::Values("off", "worker"));

// A driver that did not take the feature is never asked, and its
// acknowledgement is an unknown command.
TEST(NetAnnounceRefused, WithoutTheFeature) {
    in_netns([] {
        GuestMemory mem(16ull << 20);
        Nic n(mem);
        n.start(kAnnounceFeatures & ~net::kGuestAnnounce);
        n.announce();
        EXPECT_EQ(n.net_status(), kLinkUp);
        EXPECT_EQ(n.config_interrupts(), 0u);
        EXPECT_EQ(n.g.read(0, VirtioPci::kIsr, 1), 0u);
        EXPECT_EQ(n.ack(), kErr);
        EXPECT_EQ(n.g.status(), kOkStatus);
    });
}

// GUEST_ANNOUNCE without the control queue breaks the spec's rule for the
// driver (5.1.3.1), and could never be acknowledged: not asked.
TEST(NetAnnounceRefused, WithoutTheControlQueue) {
    in_netns([] {
        GuestMemory mem(16ull << 20);
        Nic n(mem);
        n.start(kAnnounceFeatures & ~(net::kCtrlVq | net::kCtrlRx));
        n.announce();
        EXPECT_EQ(n.net_status(), kLinkUp);
        EXPECT_EQ(n.config_interrupts(), 0u);
    });
}

// Before DRIVER_OK the device does not run; after a reset the driver's
// features are gone, and so is an announcement it had not acknowledged.
TEST(NetAnnounceRefused, BeforeDriverOkAndAfterReset) {
    in_netns([] {
        GuestMemory mem(16ull << 20);
        Nic n(mem);
        n.start(kAnnounceFeatures, false);
        n.announce();
        EXPECT_EQ(n.net_status(), kLinkUp);
        EXPECT_EQ(n.config_interrupts(), 0u);
        n.g.set_status(kOkStatus);
        n.announce();
        EXPECT_EQ(n.net_status(), kAnnouncing);
        n.g.set_status(0);  // reset
        EXPECT_EQ(n.net_status(), kLinkUp);
        size_t before = n.config_interrupts();
        n.announce();
        EXPECT_EQ(n.net_status(), kLinkUp);
        EXPECT_EQ(n.config_interrupts(), before);
    });
}

// A device the driver broke (DEVICE_NEEDS_RESET) has stopped: silent.
TEST(NetAnnounceRefused, OnABrokenDevice) {
    in_netns([] {
        GuestMemory mem(16ull << 20);
        Nic n(mem);
        n.start(kAnnounceFeatures);
        // A command with nowhere to put its status breaks the device.
        n.ctrl.desc(0, kCmd, 2, 0);
        n.ctrl.offer(0);
        n.g.write(0, VirtioPci::kNotify + VirtioPci::kNotifyMultiplier * kCtrlQueue, kCtrlQueue, 2);
        ASSERT_TRUE(n.g.status() & virtio::kNeedsReset);
        size_t before = n.config_interrupts();  // the one that told the driver
        n.announce();
        EXPECT_EQ(n.net_status(), kLinkUp);
        EXPECT_EQ(n.config_interrupts(), before);
    });
}

// Raised while the guest has the config vector masked, the interrupt waits
// in the pending bits until it unmasks (as one raised before the vCPUs run
// waits in the LAPIC).
TEST(NetAnnounce, MaskedConfigVectorHoldsTheInterruptPending) {
    in_netns([] {
        GuestMemory mem(16ull << 20);
        Nic n(mem);
        n.start(kAnnounceFeatures);
        n.g.write(1, VirtioPci::kMsixTable + 12, 1, 4);  // mask vector 0
        n.announce();
        EXPECT_EQ(n.net_status(), kAnnouncing);
        EXPECT_EQ(n.config_interrupts(), 0u);
        EXPECT_EQ(n.g.read(1, VirtioPci::kMsixPba, 8), 1u);
        n.g.write(1, VirtioPci::kMsixTable + 12, 0, 4);
        EXPECT_EQ(n.config_interrupts(), 1u);
        EXPECT_EQ(n.g.read(1, VirtioPci::kMsixPba, 8), 0u);
    });
}

// The saved state does not hold the announcement: a NIC saved with one
// pending saves as it would without, and loads with none; the machine's
// announce() after the load asks again, and the loaded NIC takes the
// acknowledgement.
TEST(NetAnnounce, NotInTheSavedStateAndAskedAgainAfterALoad) {
    in_netns([] {
        GuestMemory mem(16ull << 20);
        std::vector<uint8_t> plain, pending;
        {
            Nic a(mem);
            a.start(kAnnounceFeatures);
            a.g.pci->quiesce();
            plain = a.save();
            a.g.pci->resume();
            a.announce();
            ASSERT_EQ(a.net_status(), kAnnouncing);
            ASSERT_EQ(a.g.read(0, VirtioPci::kIsr, 1), 2u);  // read, as a driver without MSI-X does: cleared
            a.g.pci->quiesce();
            pending = a.save();
            EXPECT_EQ(a.net_status(), kAnnouncing);  // saving changes nothing
        }
        EXPECT_EQ(pending, plain);

        Nic b(mem);
        state::Reader r(pending, "test");
        b.g.pci->load(r, mem);
        r.expect_end();
        EXPECT_EQ(b.g.status(), kOkStatus);
        EXPECT_EQ(b.net_status(), kLinkUp);
        b.g.pci->restart_after_load();
        b.announce();
        EXPECT_EQ(b.net_status(), kAnnouncing);
        EXPECT_EQ(b.config_interrupts(), 1u);
        EXPECT_EQ(b.ack(), kOk);
        EXPECT_EQ(b.net_status(), kLinkUp);
    });
}
