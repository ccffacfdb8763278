// libFuzzer target: loading saved device state, which may come from a
// hostile migration stream or an edited snapshot file. The input picks a
// device (the UART, ACPI PM, the PCI bus, an MSI-X table, or a virtio-net
// function on minivmm's own datapath) and gives it either raw bytes or a
// real saved state with a few bytes changed and maybe cut short: random
// bytes alone rarely get past the config space's read-only fields.
//
// Beyond memory safety and termination: a load either throws state::Error
// or succeeds, and what loaded saves to a state that loads again into a
// fresh device and saves to the same bytes (no field is taken that the
// device cannot give back).
#include <fuzzer/FuzzedDataProvider.h>

#include <functional>
#include <memory>

#include "tests/fuzz/fuzz_support.hpp"
#include "vhost/net_backends.hpp"
#include "virtio/net.hpp"
#include "virtio/virtio_pci.hpp"
#include "vmm/acpi_pm.hpp"
#include "vmm/msix.hpp"
#include "vmm/pci.hpp"
#include "vmm/serial.hpp"
#include "vmm/state_stream.hpp"

using namespace minivmm;
using namespace minivmm::fuzz;

namespace {
constexpr uint64_t kRam = 2ull << 20;
constexpr uint64_t kRings = 0x10000;
constexpr unsigned kPairs = 2;
constexpr uint16_t kQueueSize = 8;

GuestMemory& mem() { return guarded_ram(kRam); }

// A virtio-net function as the machine builds one, on a socketpair port.
struct Nic {
    std::shared_ptr<VirtioPci> pci;
    Nic() {
        auto net = std::make_unique<VirtioNet>(
            mem(), make_net_backend(std::make_unique<SocketPort>(kPairs, true), nullptr, "fz"),
            VirtioNet::Mac{2, 0, 0, 0, 0, 1}, "fz");
        pci = std::make_shared<VirtioPci>(std::move(net), [](const MsiMessage&) {});
    }
    void common(uint32_t off, uint64_t v, uint32_t size) {
        uint8_t d[8];
        le_store(d, size, v);
        pci->bar_write(0, VirtioPci::kCommon + off, d, size);
    }
};

// The state every edited input starts from: a started NIC with MQ and all
// its queues set up, MSI-X entries written, quiesced and saved. Made once.
const std::vector<uint8_t>& base_state() {
    static const std::vector<uint8_t> bytes = [] {
        Nic n;
        uint64_t f = virtio::kFVersion1 | virtio::kFEventIdx | net::kCtrlVq | net::kCtrlRx | net::kMq |
                     net::kMrgRxbuf | net::kCtrlMacAddr;
        n.common(20, virtio::kAcknowledge | virtio::kDriver, 1);
        n.common(8, 0, 4), n.common(12, static_cast<uint32_t>(f), 4);
        n.common(8, 1, 4), n.common(12, f >> 32, 4);
        n.common(20, virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk, 1);
        for (uint16_t q = 0; q < 2 * kPairs + 1; q++) {
            uint64_t at = kRings + 0x3000ull * q;
            n.common(22, q, 2);
            n.common(24, kQueueSize, 2);
            n.common(32, at, 8), n.common(40, at + 0x1000, 8), n.common(48, at + 0x2000, 8);
            n.common(26, q, 2);
            n.common(28, 1, 2);
        }
        for (uint16_t v = 0; v < 2 * kPairs + 2; v++) {
            uint8_t d[4];
            le_store(d, 4, 0xfee0'0000u);
            n.pci->bar_write(1, VirtioPci::kMsixTable + 16 * v, d, 4);
            le_store(d, 4, 0x30 + v);
            n.pci->bar_write(1, VirtioPci::kMsixTable + 16 * v + 8, d, 4);
        }
        n.common(20, virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk | virtio::kDriverOk, 1);
        CHECK(n.pci->status() & virtio::kDriverOk);
        n.pci->quiesce();
        state::Writer w;
        n.pci->save(w);
        return w.take();
    }();
    return bytes;
}

// A saved state of one device type: save into bytes; load from a reader.
struct Kind {
    std::function<std::vector<uint8_t>()> sample;  // a real state to edit
    // Loads bytes into a fresh device; returns what it saves then, or
    // nothing if the load was refused.
    std::function<bool(const std::vector<uint8_t>&, std::vector<uint8_t>&)> load;
    // Whether a saved state shows the device stopped by its guest's rings:
    // loaded rings run at once, and a position or ring the guest's RAM
    // contradicts breaks the device then, as a hostile driver could.
    std::function<bool(const std::vector<uint8_t>&)> broke = [](const auto&) { return false; };
};

// Where the NIC's device status lies: after config space and 6 MSI-X vectors.
constexpr size_t kNicStatus = 256 + 4 + 17 * 6;

template <class Make, class Save, class Load>
bool round(const std::vector<uint8_t>& in, std::vector<uint8_t>& out, Make make, Load load, Save save) {
    auto dev = make();
    state::Reader r(in, "fuzz");
    try {
        load(*dev, r);
        r.expect_end();
    } catch (const state::Error& e) {
        TRACE("refused: %s\n", e.what());
        return false;
    }
    state::Writer w;
    save(*dev, w);
    out = w.take();
    return true;
}

Stop& stop() {
    static Stop s;
    return s;
}

std::vector<Kind> kinds() {
    auto serial = [] { return std::make_unique<Serial>([](bool) {}, -1); };
    auto pm = [] { return std::make_unique<AcpiPm>(stop()); };
    auto bus = [] { return std::make_unique<PciBus>(); };
    auto msix = [] { return std::make_unique<Msix>(6, [](const MsiMessage&) {}); };
    auto nic = [] { return std::make_unique<Nic>(); };
    return {
        {[=] { state::Writer w; serial()->save(w); return w.take(); },
         [=](const auto& in, auto& out) {
             return round(in, out, serial, [](Serial& d, state::Reader& r) { d.load(r); },
                          [](Serial& d, state::Writer& w) { d.save(w); });
         }},
        {[=] { state::Writer w; pm()->save(w); return w.take(); },
         [=](const auto& in, auto& out) {
             return round(in, out, pm, [](AcpiPm& d, state::Reader& r) { d.load(r); },
                          [](AcpiPm& d, state::Writer& w) { d.save(w); });
         }},
        {[=] { state::Writer w; bus()->save(w); return w.take(); },
         [=](const auto& in, auto& out) {
             return round(in, out, bus, [](PciBus& d, state::Reader& r) { d.load(r); },
                          [](PciBus& d, state::Writer& w) { d.save(w); });
         }},
        {[=] { state::Writer w; msix()->save(w); return w.take(); },
         [=](const auto& in, auto& out) {
             return round(in, out, msix, [](Msix& d, state::Reader& r) { d.load(r, "fz"); },
                          [](Msix& d, state::Writer& w) { d.save(w); });
         }},
        {[] { return base_state(); },
         [=](const auto& in, auto& out) {
             return round(in, out, nic, [](Nic& d, state::Reader& r) { d.pci->load(r, mem()); },
                          [](Nic& d, state::Writer& w) {
                              d.pci->quiesce();
                              d.pci->save(w);
                          });
         },
         [](const auto& b) { return b.size() > kNicStatus && (b[kNicStatus] & virtio::kNeedsReset); }},
    };
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::vector<Kind> all = kinds();
    FuzzedDataProvider in(data, size);
    const Kind& k = all[in.ConsumeIntegralInRange<size_t>(0, all.size() - 1)];
    std::vector<uint8_t> bytes;
    if (in.ConsumeBool()) {
        bytes = in.ConsumeRemainingBytes<uint8_t>();
    } else {
        bytes = k.sample();
        for (unsigned n = in.ConsumeIntegralInRange(0, 8); n && !bytes.empty(); n--)
            bytes[in.ConsumeIntegralInRange<size_t>(0, bytes.size() - 1)] = in.ConsumeIntegral<uint8_t>();
        if (in.ConsumeBool()) bytes.resize(in.ConsumeIntegralInRange<size_t>(0, bytes.size()));
    }
    std::vector<uint8_t> saved, again;
    if (!k.load(bytes, saved)) return 0;
    CHECK(k.load(saved, again));
    if (k.broke(again) && !k.broke(saved)) return 0;
    for (size_t i = 0; i < std::min(again.size(), saved.size()); i++)
        if (again[i] != saved[i]) TRACE("differs at %zu: %02x, then %02x\n", i, saved[i], again[i]);
    CHECK(again == saved);
    return 0;
}
