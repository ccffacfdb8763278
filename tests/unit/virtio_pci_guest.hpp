// Shared by the virtio-pci unit tests: a guest with one virtio-pci function
// on a PciBus, driven as a driver does it (configuration space through
// 0xCF8/0xCFC, the structures through the BARs), and a fake device model.
#pragma once
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "tests/support/guest_ring.hpp"
#include "tests/unit/fake_kvm.hpp"
#include "virtio/virtio_pci.hpp"

namespace minivmm::testing {

namespace common {  // offsets in the common configuration structure (4.1.4.3)
constexpr uint32_t kDfSelect = 0, kDf = 4, kGfSelect = 8, kGf = 12, kMsixConfig = 16, kNumQueues = 18,
                   kStatus = 20, kQSelect = 22, kQSize = 24, kQVector = 26, kQEnable = 28, kQNotifyOff = 30,
                   kQDesc = 32, kQDriver = 40, kQDevice = 48;
}
constexpr uint64_t kOffered = virtio::kFVersion1 | virtio::kFEventIdx | 1;
constexpr uint16_t kQueues = 2, kMaxQueue = 128;

struct FakeDevice : VirtioDevice {
    struct State {
        int activations = 0, resets = 0;
        uint64_t features = 0;
        std::vector<QueueConfig> queues;
        std::vector<uint16_t> notified;
        std::vector<std::pair<uint64_t, uint64_t>> config_writes;
        bool takes_kicks = false;  // as a vhost backend: the kick eventfds at activation
        std::vector<int> kicks;
        int quiesces = 0, resumes = 0, loads = 0;
        uint32_t token = 0;  // the device's own saved state: what save() writes, load() reads
    };
    explicit FakeDevice(State& st) : s(st) {}
    uint16_t device_id() const override { return 4; }
    uint64_t features() const override { return kOffered; }
    uint16_t num_queues() const override { return kQueues; }
    uint16_t max_queue_size() const override { return kMaxQueue; }
    void config_read(uint64_t off, uint8_t* data, uint32_t size) override {
        for (uint32_t i = 0; i < size; i++) data[i] = off + i < 8 ? static_cast<uint8_t>(0x10 + off + i) : 0;
    }
    void config_write(uint64_t off, const uint8_t* data, uint32_t size) override {
        s.config_writes.push_back({off, le_load(data, size)});
    }
    void activate(uint64_t f, const std::vector<QueueConfig>& q, VirtioTransport& t) override {
        s.activations++;
        s.features = f;
        s.queues = q;
        if (s.takes_kicks)
            for (uint16_t i = 0; i < q.size(); i++) s.kicks.push_back(t.kick_eventfd(i));
    }
    void reset() override {
        s.resets++;
        s.kicks.clear();
    }
    void notify(uint16_t q) override { s.notified.push_back(q); }
    void quiesce() override { s.quiesces++; }
    void resume() override { s.resumes++; }
    void save(state::Writer& w) const override { w.u32(s.token); }
    void load(state::Reader& r, const LoadedTransport& t, VirtioTransport& transport) override {
        s.loads++;
        s.token = r.u32();
        if (t.driver_ok && !t.broken) activate(t.features, t.queues, transport);
    }
    State& s;
};

// A guest with one virtio-pci function at slot 1, memory decoding on; with
// kvm, the transport hands out ioeventfds and irqfds through it. The
// function's device is a FakeDevice (its state in dev), or the one given.
struct Guest {
    FakeDevice::State dev;
    std::vector<MsiMessage> sent;
    std::atomic<size_t> delivered{0};  // sent.size(), for messages the watcher thread sends
    PciBus bus;
    std::shared_ptr<VirtioPci> pci;
    unsigned slot;

    explicit Guest(const VirtioPci::KvmHooks* kvm = nullptr, std::unique_ptr<VirtioDevice> device = nullptr)
        : pci(std::make_shared<VirtioPci>(device ? std::move(device) : std::make_unique<FakeDevice>(dev),
                                          [this](const MsiMessage& m) {
                                              sent.push_back(m);
                                              delivered++;
                                          }, kvm)),
          slot(bus.add(pci)) {
        cfg_write(0x04, 0x6, 2);
    }

    uint32_t cfg_read(uint32_t reg, uint32_t size = 4) {
        select(reg);
        uint8_t d[4] = {};
        bus.read(4 + (reg & 3), d, size);
        return static_cast<uint32_t>(le_load(d, size));
    }
    void cfg_write(uint32_t reg, uint32_t v, uint32_t size = 4) {
        select(reg);
        uint8_t d[4];
        le_store(d, size, v);
        bus.write(4 + (reg & 3), d, size);
    }
    void select(uint32_t reg) {
        uint8_t d[4];
        le_store(d, 4, 0x8000'0000u | slot << 11 | (reg & 0xfc));
        bus.write(0, d, 4);
    }
    uint64_t read(int bar, uint64_t off, uint32_t size) {
        uint8_t d[8] = {};
        bus.mmio().read(pci->bar_address(bar) + off - PciBus::kWindowStart, d, size);
        return le_load(d, size);
    }
    void write(int bar, uint64_t off, uint64_t v, uint32_t size) {
        uint8_t d[8];
        le_store(d, size, v);
        bus.mmio().write(pci->bar_address(bar) + off - PciBus::kWindowStart, d, size);
    }
    uint64_t common(uint32_t off, uint32_t size) { return read(0, VirtioPci::kCommon + off, size); }
    void set_common(uint32_t off, uint64_t v, uint32_t size) { write(0, VirtioPci::kCommon + off, v, size); }
    // Waits up to a second for n messages in all; sent may be read then.
    bool wait_delivered(size_t n) {
        for (int i = 0; i < 1000 && delivered < n; i++) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return delivered == n;
    }
    uint8_t status() { return static_cast<uint8_t>(common(common::kStatus, 1)); }
    void set_status(uint8_t s) { set_common(common::kStatus, s, 1); }

    void write_features(uint64_t f) {
        set_common(common::kGfSelect, 0, 4);
        set_common(common::kGf, static_cast<uint32_t>(f), 4);
        set_common(common::kGfSelect, 1, 4);
        set_common(common::kGf, f >> 32, 4);
    }
    // 3.1.1 up to FEATURES_OK; returns the status read back.
    uint8_t negotiate(uint64_t f) {
        set_status(virtio::kAcknowledge);
        set_status(virtio::kAcknowledge | virtio::kDriver);
        write_features(f);
        set_status(virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk);
        return status();
    }
    void setup_queue(uint16_t q, uint16_t size, uint64_t base) {
        set_common(common::kQSelect, q, 2);
        set_common(common::kQSize, size, 2);
        const RingLayout at = RingLayout::paged(base);
        set_common(common::kQDesc, at.desc, 8);
        set_common(common::kQDriver, at.avail, 8);
        set_common(common::kQDevice, at.used, 8);
        set_common(common::kQEnable, 1, 2);
    }
    void start() {
        int before = dev.activations;
        ASSERT_TRUE(negotiate(virtio::kFVersion1) & virtio::kFeaturesOk);
        setup_queue(0, 64, 0x10000);
        setup_queue(1, 32, 0x20000);
        set_status(virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk | virtio::kDriverOk);
        ASSERT_EQ(dev.activations, before + 1);
    }
    // Capability offsets by ID, vendor capabilities by cfg_type.
    std::map<int, uint8_t> caps() {
        std::map<int, uint8_t> found;
        uint8_t at = static_cast<uint8_t>(cfg_read(0x34, 1));
        for (int n = 0; at && n < 48; n++, at = static_cast<uint8_t>(cfg_read(at + 1u, 1))) {
            uint8_t id = static_cast<uint8_t>(cfg_read(at, 1));
            int key = id == 0x09 ? 0x100 + static_cast<int>(cfg_read(at + 3u, 1)) : id;
            EXPECT_EQ(found.count(key), 0u) << "capability repeated or the list loops: " << key;
            found[key] = at;
        }
        return found;
    }
    // Programs MSI-X entry v through BAR 1 and enables MSI-X.
    void msix_vector(uint16_t v, uint32_t data, bool unmask = true) {
        write(1, VirtioPci::kMsixTable + 16 * v, 0xfee0'0000u, 4);
        write(1, VirtioPci::kMsixTable + 16 * v + 8, data, 4);
        if (unmask) write(1, VirtioPci::kMsixTable + 16 * v + 12, 0, 4);
        cfg_write(caps().at(0x11) + 2u, 0x8000, 2);
    }
};

inline uint64_t notify(uint64_t bar0, uint16_t q) { return bar0 + VirtioPci::kNotify + VirtioPci::kNotifyMultiplier * q; }

// A guest whose device's backend takes the kick eventfds, as vhost does;
// its KVM is its own, or one shared with other guests (as devices of one VM
// share KVM's tables).
struct VhostGuest {
    FakeKvm own;
    FakeKvm& kvm;
    VirtioPci::KvmHooks hooks{kvm, kvm};
    Guest g{&hooks};
    int exits = 0;

    explicit VhostGuest(FakeKvm* shared = nullptr) : kvm(shared ? *shared : own) { g.dev.takes_kicks = true; }
    // The driver's kick, a 16-bit write of the queue index: KVM signals an
    // ioeventfd registered there, or the write exits to minivmm's MMIO bus.
    void kick(uint64_t gpa, uint16_t q) {
        auto it = kvm.ioeventfds.find({gpa, 2});
        if (it != kvm.ioeventfds.end()) {
            uint64_t one = 1;
            EXPECT_EQ(::write(it->second, &one, sizeof one), 8);
            return;
        }
        exits++;
        uint8_t d[2];
        le_store(d, 2, q);
        g.bus.mmio().write(gpa - PciBus::kWindowStart, d, 2);
    }
    // Kicks queue q's backend saw since last asked.
    uint64_t backend_kicks(uint16_t q) {
        uint64_t n = 0;
        return ::read(g.dev.kicks.at(q), &n, sizeof n) == 8 ? n : 0;
    }
    // The ioeventfd table as it should be with BAR 0 at bar0.
    std::map<std::pair<uint64_t, uint32_t>, int> kicks_at(uint64_t bar0) {
        std::map<std::pair<uint64_t, uint32_t>, int> want;
        for (uint16_t q = 0; q < kQueues; q++) want[{notify(bar0, q), 2}] = g.dev.kicks.at(q);
        return want;
    }
    // Every queue kicked once at BAR 0 = bar0; true if each reached its backend without an exit.
    bool kicks_bypass(uint64_t bar0) {
        int before = exits;
        bool all = true;
        for (uint16_t q = 0; q < kQueues; q++) {
            kick(notify(bar0, q), q);
            all = all && backend_kicks(q) == 1;
        }
        return all && exits == before;
    }
};

inline size_t open_fds() {
    size_t n = 0;
    DIR* d = ::opendir("/proc/self/fd");
    while (d && ::readdir(d)) n++;
    if (d) ::closedir(d);
    return n;
}

}  // namespace minivmm::testing
