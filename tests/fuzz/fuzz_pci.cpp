// libFuzzer target: a hostile guest against the PCI bus and a virtio-pci
// function. The input is a sequence of configuration-port and BAR accesses
// (common config, ISR, device config, notify, MSI-X table and PBA), mixed
// with the device side raising interrupts and giving up on the driver.
// Beyond not crashing, the function must keep its identity and capability
// list, and the device model must only be kicked while it runs.
#include <fuzzer/FuzzedDataProvider.h>

#include <memory>
#include <vector>

#include "tests/fuzz/fuzz_check.hpp"
#include "virtio/virtio_pci.hpp"

using namespace minivmm;

namespace {

struct FakeDevice : VirtioDevice {
    uint16_t queues;
    uint64_t offered;
    VirtioTransport* transport = nullptr;  // set while activated
    uint8_t cfg[12] = {};
    FakeDevice(uint16_t q, uint64_t f) : queues(q), offered(f) {}

    uint16_t device_id() const override { return 1; }
    uint64_t features() const override { return offered; }
    uint16_t num_queues() const override { return queues; }
    void config_read(uint64_t off, uint8_t* data, uint32_t size) override {
        for (uint32_t i = 0; i < size; i++) data[i] = off + i < sizeof cfg ? cfg[off + i] : 0;
    }
    void config_write(uint64_t off, const uint8_t* data, uint32_t size) override {
        for (uint32_t i = 0; i < size; i++)
            if (off + i < sizeof cfg) cfg[off + i] = data[i];
    }
    void activate(uint64_t f, const std::vector<QueueConfig>& q, VirtioTransport& t) override {
        CHECK(q.size() == queues && !(f & ~offered) && (f & virtio::kFVersion1));
        transport = &t;
    }
    void reset() override { transport = nullptr; }
    void notify(uint16_t q) override {
        CHECK(transport != nullptr && q < queues);
        uint8_t s = static_cast<VirtioPci*>(transport)->status();
        CHECK((s & virtio::kDriverOk) && !(s & virtio::kNeedsReset));
        transport->signal_queue(q);  // as a device completing work at once would
    }
};

// The capability offsets, as the guest would walk them.
std::vector<uint8_t> capabilities(PciDevice& d) {
    std::vector<uint8_t> at;
    for (uint8_t p = static_cast<uint8_t>(d.config_read(0x34)); p && at.size() < 64;
         p = static_cast<uint8_t>(d.config_read(p) >> 8))
        at.push_back(p);
    return at;
}

struct Guest {
    FuzzedDataProvider& in;
    PciBus& bus;
    VirtioPci& pci;
    unsigned slot;

    uint32_t size() {
        static constexpr uint32_t kSizes[] = {1, 2, 4, 8};
        return kSizes[in.ConsumeIntegralInRange(0, 3)];
    }
    // Where a driver would aim, with some accesses anywhere in the window.
    uint64_t mmio_offset(uint32_t n) {
        static constexpr uint32_t kBar0[] = {VirtioPci::kCommon, VirtioPci::kIsr, VirtioPci::kDeviceCfg,
                                             VirtioPci::kNotify};
        static constexpr uint32_t kBar1[] = {VirtioPci::kMsixTable, VirtioPci::kMsixPba};
        uint64_t gpa;
        switch (in.ConsumeIntegralInRange(0, 7)) {
            case 0: gpa = PciBus::kWindowStart + in.ConsumeIntegral<uint32_t>(); break;
            case 1: gpa = pci.bar_address(0) + in.ConsumeIntegral<uint16_t>(); break;
            case 2:
            case 3: gpa = pci.bar_address(1) + kBar1[in.ConsumeBool()] + in.ConsumeIntegralInRange(0, 0x40); break;
            default: gpa = pci.bar_address(0) + kBar0[in.ConsumeIntegralInRange(0, 3)] + in.ConsumeIntegralInRange(0, 0x40);
        }
        // The MMIO bus hands the window device only accesses inside it.
        constexpr uint64_t len = PciBus::kWindowEnd - PciBus::kWindowStart;
        uint64_t off = gpa - PciBus::kWindowStart;
        return off <= len - n ? off : in.ConsumeIntegralInRange<uint64_t>(0, len - n);
    }
    uint32_t config_address() {
        if (in.ConsumeIntegralInRange(0, 7) == 0) return in.ConsumeIntegral<uint32_t>();
        unsigned s = in.ConsumeIntegralInRange(0, 3) ? slot : in.ConsumeIntegralInRange(0, 31);
        return 0x8000'0000u | s << 11 | (in.ConsumeIntegral<uint8_t>() & 0xfc);
    }
    void port_write(uint64_t off, uint64_t v, uint32_t n) {
        uint8_t d[4];
        le_store(d, n, v);
        bus.write(off, d, n);
    }
    void config_write(uint32_t reg, uint32_t v, uint32_t n) {
        port_write(0, 0x8000'0000u | slot << 11 | (reg & 0xfc), 4);
        port_write(4 + (reg & 3), v, n);
    }
    void mmio_write(int bar, uint64_t off, uint64_t v, uint32_t n) {
        uint8_t d[8];
        le_store(d, n, v);
        bus.mmio().write(pci.bar_address(bar) + off - PciBus::kWindowStart, d, n);
    }
    // A well-behaved driver's start, so that the input can begin deep in.
    void prelude(uint8_t what) {
        if (what & 1) config_write(0x04, 0x6, 2);
        if (what & 2) {
            uint8_t msix = capabilities(pci).back();
            config_write(msix + 2u, 0x8000, 2);
            for (uint16_t v = 0; v < pci.msix().size(); v++) {
                mmio_write(1, 16u * v, 0xfee0'0000u, 4);
                mmio_write(1, 16u * v + 8, v, 4);
                mmio_write(1, 16u * v + 12, 0, 4);
            }
        }
        if (what & 8) {  // the PCI-cfg window onto device_status
            uint8_t window = capabilities(pci).end()[-2];
            config_write(window + 4u, 0, 1);
            config_write(window + 8u, 20, 4);
            config_write(window + 12u, 1, 4);
        }
        if (what & 4) {
            mmio_write(0, 20, virtio::kAcknowledge | virtio::kDriver, 1);
            mmio_write(0, 8, 1, 4);
            mmio_write(0, 12, 1, 4);  // VERSION_1
            mmio_write(0, 20, virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk, 1);
            for (uint16_t q = 0; q < pci.device().num_queues(); q++) {
                mmio_write(0, 22, q, 2);
                mmio_write(0, 26, q + 1u, 2);
                mmio_write(0, 28, 1, 2);
            }
            mmio_write(0, 16, 0, 2);
            mmio_write(0, 20, virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk | virtio::kDriverOk, 1);
        }
    }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    uint16_t queues = in.ConsumeIntegralInRange<uint16_t>(1, 9);
    uint64_t offered = virtio::kFVersion1 | virtio::kFEventIdx | in.ConsumeIntegral<uint32_t>();
    size_t sent = 0;
    PciBus bus;
    auto pci = std::make_shared<VirtioPci>(std::make_unique<FakeDevice>(queues, offered),
                                           [&sent](const MsiMessage&) { sent++; });
    unsigned slot = bus.add(pci);
    const uint32_t id = pci->config_read(0), class_rev = pci->config_read(8);
    const auto caps = capabilities(*pci);
    Guest g{in, bus, *pci, slot};
    g.prelude(in.ConsumeIntegral<uint8_t>());

    for (int op = 0; op < 512 && in.remaining_bytes(); op++) {
        switch (in.ConsumeIntegralInRange(0, 9)) {
            case 0: g.port_write(0, g.config_address(), 4); break;
            case 1: {  // data port reads and writes, any width at any byte
                uint32_t n = g.size() % 8;
                uint64_t off = in.ConsumeIntegralInRange(0, 7);
                uint8_t d[4] = {};
                if (n == 0 || off + n > 8) break;
                if (in.ConsumeBool())
                    bus.read(off, d, n);
                else
                    g.port_write(off, in.ConsumeIntegral<uint32_t>(), n);
                break;
            }
            case 2: {
                uint32_t reg = in.ConsumeIntegral<uint8_t>(), n = g.size() % 8;
                if (n) g.config_write(reg & ~(n - 1), in.ConsumeIntegral<uint32_t>(), n);
                break;
            }
            case 3:
            case 4: {
                uint32_t n = g.size();
                uint8_t d[8] = {};
                bus.mmio().read(g.mmio_offset(n), d, n);
                break;
            }
            case 5:
            case 6: {
                uint32_t n = g.size();
                uint8_t d[8];
                le_store(d, n, in.ConsumeIntegral<uint64_t>());
                bus.mmio().write(g.mmio_offset(n), d, n);
                break;
            }
            case 7: {
                size_t before = sent;
                bool msix_on = pci->msix().enabled();
                bool delivered = pci->signal_queue(in.ConsumeIntegralInRange<uint16_t>(0, queues));
                CHECK(delivered == (sent == before + 1) && (!delivered || msix_on));
                break;
            }
            case 8: pci->mark_broken("fuzz"); break;
            case 9: {  // straight at the function, past the 256 bytes the bus can reach
                uint32_t reg = in.ConsumeIntegralInRange<uint32_t>(0, 0x1ff) & ~3u;
                if (in.ConsumeBool())
                    pci->config_read(reg);
                else
                    pci->config_write(reg, in.ConsumeIntegral<uint32_t>(), in.ConsumeIntegral<uint32_t>());
                break;
            }
        }
        CHECK(pci->config_read(0) == id && pci->config_read(8) == class_rev);
        CHECK(capabilities(*pci) == caps);
        CHECK(pci->msix().size() == queues + 1u);
    }
    return 0;
}
