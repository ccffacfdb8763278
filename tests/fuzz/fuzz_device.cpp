// libFuzzer target: the virtio-net device as a guest meets it, a VirtioPci
// function over a VirtioNet on a PCI bus, with a socketpair port. Its
// datapath is minivmm's own (vhost=off: I/O threads) or the vhost worker
// (ring threads; kicks and interrupts through a fake KVM's ioeventfds and
// irqfds, which sometimes refuses them so that kicks exit instead). No
// /dev/kvm: the fuzzer is the vCPU, and its MMIO writes go through the fake
// KVM's ioeventfd table first, as in KVM_RUN.
//
// The input interleaves configuration space and BAR accesses (common
// config, notify, ISR, device config, MSI-X table and PBA, BAR moves), the
// contents of every ring (receive buffers, frames to send, control
// commands, and scribbles), frames arriving at the port, and pauses that let
// the device's threads run; a well-behaved driver's start can come first
// or in between. Every input builds the device and destroys it, joining all
// its threads.
//
// Beyond memory safety and termination: the function keeps its identity
// and capabilities; once reset it touches guest memory no more (frames
// arriving and kicks then change nothing); and whatever the input did, a
// reset and a well-behaved driver's start get a working device: a frame
// sent goes out and a frame arriving comes in, within five seconds (what
// takes microseconds: the margin is for a loaded machine).
#include <sys/eventfd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "tests/fuzz/fuzz_support.hpp"
#include "vhost/net_backends.hpp"
#include "vhost/vhost.hpp"
#include "virtio/net.hpp"
#include "virtio/virtio_pci.hpp"
#include "vmm/error.hpp"
#include "vmm/io_bus.hpp"

using namespace minivmm;
using namespace minivmm::fuzz;

namespace {
constexpr uint64_t kRam = 2ull << 20;
constexpr uint64_t kRings = 0x10000, kBufs = 0x40000;
// Common configuration offsets (4.1.4.3).
constexpr uint32_t kDfSelect = 0, kDf = 4, kGfSelect = 8, kGf = 12, kMsixConfig = 16, kStatus = 20, kQSelect = 22,
                   kQSize = 24, kQVector = 26, kQEnable = 28, kQDesc = 32, kQDriver = 40, kQDevice = 48;
constexpr auto kDeadline = std::chrono::seconds(5);

GuestMemory& mem() { return guarded_ram(kRam); }

// KVM as far as the transport sees it: an ioeventfd table (which the
// guest's MMIO writes go through first), irqfds and MSI routes.
struct FakeKvm : KvmEventfds, MsiRoutes {
    std::mutex lock;
    std::map<std::pair<uint64_t, uint32_t>, int> ioeventfds;
    bool refuse = false;  // as a KVM whose I/O bus is full
    uint32_t next_gsi = 24;

    void ioeventfd(uint64_t addr, uint32_t len, int fd, bool assign) override {
        std::lock_guard g(lock);
        auto it = ioeventfds.find({addr, len});
        if (assign) {
            if (it != ioeventfds.end() || refuse) throw sys_error("KVM IOEVENTFD failed", EEXIST);
            ioeventfds[{addr, len}] = fd;
        } else {
            if (it == ioeventfds.end() || it->second != fd) throw sys_error("KVM IOEVENTFD failed", ENOENT);
            ioeventfds.erase(it);
        }
    }
    void irqfd(int, uint32_t, bool) override {}
    uint32_t add_msi(const MsiMessage&) override {
        std::lock_guard g(lock);
        return next_gsi++;
    }
    void update_msi(uint32_t, const MsiMessage&) override {}
    void remove(uint32_t) override {}
    // The fd KVM would signal for a write of len bytes at addr, or -1.
    int match(uint64_t addr, uint32_t len) {
        std::lock_guard g(lock);
        auto it = ioeventfds.find({addr, len});
        return it == ioeventfds.end() ? -1 : it->second;
    }
};

// One split ring as the driver keeps it, handing out descriptors in turn.
struct Queue {
    GuestRing ring;
    uint16_t next_desc = 0;
};

struct Device {
    FuzzedDataProvider& in;
    unsigned pairs;
    bool header, worker;
    FakeKvm kvm;
    VirtioPci::KvmHooks hooks{kvm, kvm};
    std::atomic<uint64_t> messages{0};
    SocketPort* port = nullptr;
    PciBus bus;
    std::shared_ptr<VirtioPci> pci;
    unsigned slot = 0;
    uint32_t id = 0, class_rev = 0, bar0 = 0, bar1 = 0;
    std::vector<uint8_t> caps;
    std::vector<Queue> q;
    uint64_t features = 0, bufs = kBufs;
    uint32_t seed = 0;
    int slept_us = 0;

    explicit Device(FuzzedDataProvider& i) : in(i) {
        pairs = in.ConsumeIntegralInRange(1, 2);
        header = in.ConsumeBool();
        worker = in.ConsumeBool();
        kvm.refuse = worker && in.ConsumeIntegralInRange(0, 7) == 0;
        auto p = std::make_unique<SocketPort>(pairs, header);
        port = p.get();
        auto net = std::make_unique<VirtioNet>(
            mem(), make_net_backend(std::move(p), worker ? make_worker_vhost(pairs, "fz") : nullptr, "fz"),
            VirtioNet::Mac{0x52, 0x54, 0, 0, 0, 1}, "fz");
        pci = std::make_shared<VirtioPci>(std::move(net), [this](const MsiMessage&) { messages++; },
                                          worker ? &hooks : nullptr);
        slot = bus.add(pci);
        id = pci->config_read(0), class_rev = pci->config_read(8);
        bar0 = pci->config_read(0x10), bar1 = pci->config_read(0x14);
        caps = capabilities();
        q.resize(pci->device().num_queues());
        TRACE("device: %u pairs, header %d, %s%s\n", pairs, header, worker ? "worker" : "vhost=off",
              kvm.refuse ? ", KVM refuses ioeventfds" : "");
    }
    ~Device() {
        // The device stops before the memory and fds its threads use go.
        pci->bar_write(0, VirtioPci::kCommon + kStatus, std::array<uint8_t, 1>{0}.data(), 1);
    }

    std::vector<uint8_t> capabilities() {
        std::vector<uint8_t> at;
        for (uint8_t p = static_cast<uint8_t>(pci->config_read(0x34)); p && at.size() < 64;
             p = static_cast<uint8_t>(pci->config_read(p) >> 8))
            at.push_back(p);
        return at;
    }
    uint8_t msix_cap() const { return caps.back(); }

    // The vCPU's accesses: configuration ports, and MMIO through KVM first.
    void port_write(uint64_t off, uint64_t v, uint32_t n) {
        uint8_t d[4];
        le_store(d, n, v);
        bus.write(off, d, n);
    }
    void cfg_write(uint32_t reg, uint32_t v, uint32_t n) {
        port_write(0, 0x8000'0000u | slot << 11 | (reg & 0xfc), 4);
        port_write(4 + (reg & 3), v, n);
    }
    void mmio_write(uint64_t gpa, uint64_t v, uint32_t n) {
        if (int fd = kvm.match(gpa, n); fd >= 0) {
            uint64_t one = 1;
            [[maybe_unused]] ssize_t w = ::write(fd, &one, sizeof one);
            return;
        }
        if (gpa < PciBus::kWindowStart || gpa > PciBus::kWindowEnd - n) return;
        uint8_t d[8];
        le_store(d, n, v);
        bus.mmio().write(gpa - PciBus::kWindowStart, d, n);
    }
    uint64_t mmio_read(uint64_t gpa, uint32_t n) {
        if (gpa < PciBus::kWindowStart || gpa > PciBus::kWindowEnd - n) return 0;
        uint8_t d[8] = {};
        bus.mmio().read(gpa - PciBus::kWindowStart, d, n);
        return le_load(d, n);
    }
    uint64_t bar(int b) const { return pci->bar_address(b); }
    void common(uint32_t off, uint64_t v, uint32_t n) { mmio_write(bar(0) + VirtioPci::kCommon + off, v, n); }
    uint64_t common_read(uint32_t off, uint32_t n) { return mmio_read(bar(0) + VirtioPci::kCommon + off, n); }
    void kick(uint16_t queue) {
        mmio_write(bar(0) + VirtioPci::kNotify + VirtioPci::kNotifyMultiplier * queue, queue, 2);
    }

    // Buffers: handed out round the buffer area, so that a long input reuses
    // what the device may still hold (a driver's mistake it must survive).
    uint64_t buffer(uint32_t len) {
        len = (len + 15) & ~15u;
        if (bufs + len > kRam) bufs = kBufs;
        uint64_t at = bufs;
        bufs += len;
        return at;
    }
    // A chain of buffers on queue i, offered.
    void post(uint16_t i, const std::vector<std::pair<uint64_t, uint32_t>>& parts, uint16_t writable_from) {
        Queue& r = q[i];
        GuestRing& ring = r.ring;
        if (!ring.size || parts.empty()) return;
        uint16_t head = r.next_desc;
        for (size_t k = 0; k < parts.size(); k++) {
            uint16_t d = static_cast<uint16_t>((head + k) % ring.size);
            uint16_t flags = static_cast<uint16_t>((k >= writable_from ? kWrite : 0) | (k + 1 < parts.size() ? kNext : 0));
            ring.desc(d, parts[k].first, parts[k].second, flags, static_cast<uint16_t>((d + 1) % ring.size));
        }
        r.next_desc = static_cast<uint16_t>((head + parts.size()) % ring.size);
        ring.offer(head);
    }
    void post_rx(uint16_t i, uint32_t len, unsigned pieces) {
        std::vector<std::pair<uint64_t, uint32_t>> parts;
        for (unsigned k = 0; k < pieces; k++) parts.push_back({buffer(len), len});
        post(i, parts, 0);
    }
    // A frame to send: the header (offloads asked or not), then the frame.
    void post_tx(uint16_t i, const std::vector<uint8_t>& hdr, const std::vector<uint8_t>& frame, unsigned pieces) {
        std::vector<uint8_t> all(hdr);
        all.insert(all.end(), frame.begin(), frame.end());
        std::vector<std::pair<uint64_t, uint32_t>> parts;
        size_t at = 0;
        for (unsigned k = 0; k < pieces && at < all.size(); k++) {
            size_t n = k + 1 == pieces ? all.size() - at : std::max<size_t>(1, (all.size() - at) / (pieces - k));
            uint64_t b = buffer(static_cast<uint32_t>(n));
            store(mem(), b, &all[at], n);
            parts.push_back({b, static_cast<uint32_t>(n)});
            at += n;
        }
        post(i, parts, static_cast<uint16_t>(parts.size()));
    }
    void post_ctrl(uint16_t i, std::vector<uint8_t> cmd) {
        uint64_t b = buffer(static_cast<uint32_t>(cmd.size())), s = buffer(1);
        store(mem(), b, cmd.data(), cmd.size());
        post(i, {{b, static_cast<uint32_t>(cmd.size())}, {s, 1}}, 1);
    }
    uint16_t ctrl_queue() const { return static_cast<uint16_t>(features & (net::kMq | net::kRss) ? 2 * pairs : 2); }

    // A well-behaved driver's start (3.1.1) with the features it picks from
    // what is offered: every queue it knows placed and enabled, MSI-X vectors
    // programmed, receive buffers posted.
    bool start(uint64_t want, uint16_t size, bool msix, uint32_t rx_len) {
        cfg_write(0x04, 0x6, 2);
        if (msix) {
            for (uint16_t v = 0; v < pci->msix().size(); v++) {
                uint64_t e = bar(1) + VirtioPci::kMsixTable + 16u * v;
                mmio_write(e, 0xfee0'0000u, 4);
                mmio_write(e + 8, v, 4);
                mmio_write(e + 12, 0, 4);
            }
            cfg_write(msix_cap() + 2u, 0x8000, 2);
        }
        common(kStatus, 0, 1);
        common(kStatus, virtio::kAcknowledge | virtio::kDriver, 1);
        common(kDfSelect, 0, 4);
        uint64_t offered = common_read(kDf, 4);
        common(kDfSelect, 1, 4);
        offered |= common_read(kDf, 4) << 32;
        features = (want & offered) | virtio::kFVersion1;
        common(kGfSelect, 0, 4);
        common(kGf, static_cast<uint32_t>(features), 4);
        common(kGfSelect, 1, 4);
        common(kGf, features >> 32, 4);
        common(kStatus, virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk, 1);
        if (!(common_read(kStatus, 1) & virtio::kFeaturesOk)) return false;
        common(kMsixConfig, 0, 2);
        unsigned used_pairs = features & (net::kMq | net::kRss) ? pairs : 1;
        for (uint16_t i = 0; i < q.size(); i++) q[i] = Queue{};
        std::vector<uint16_t> mine;
        for (uint16_t i = 0; i < 2 * used_pairs; i++) mine.push_back(i);
        if (features & net::kCtrlVq) mine.push_back(ctrl_queue());
        bufs = kBufs;
        for (uint16_t i : mine) {
            const RingLayout at = RingLayout::paged(kRings + 0x4000ull * i);
            q[i] = {GuestRing(mem(), size, at)};
            common(kQSelect, i, 2);
            common(kQSize, size, 2);
            common(kQDesc, at.desc, 8);
            common(kQDriver, at.avail, 8);
            common(kQDevice, at.used, 8);
            common(kQVector, msix ? i + 1u : Msix::kNoVector, 2);
            common(kQEnable, 1, 2);
            if (i % 2 == 0 && i != ctrl_queue())
                for (uint16_t k = 0; k < size / 2; k++) post_rx(i, rx_len, 1);
        }
        common(kStatus, virtio::kAcknowledge | virtio::kDriver | virtio::kFeaturesOk | virtio::kDriverOk, 1);
        if ((features & net::kMq) && (features & net::kCtrlVq)) {  // every pair in use, as Linux asks
            post_ctrl(ctrl_queue(), {4, 0, static_cast<uint8_t>(pairs), 0});
            kick(ctrl_queue());
        }
        TRACE("start: features %#llx, queues of %u, msix %d, rx buffers of %u\n", (unsigned long long)features, size,
              msix, rx_len);
        return common_read(kStatus, 1) & virtio::kDriverOk;
    }

    // Where the input aims an MMIO access: the structures, mostly.
    uint64_t target(uint32_t n) {
        static constexpr uint32_t kBar0[] = {VirtioPci::kCommon, VirtioPci::kIsr, VirtioPci::kDeviceCfg,
                                             VirtioPci::kNotify};
        switch (in.ConsumeIntegralInRange(0, 7)) {
            case 0: return PciBus::kWindowStart + in.ConsumeIntegral<uint32_t>();
            case 1:
            case 2: return bar(1) + (in.ConsumeBool() ? VirtioPci::kMsixPba : 0) + in.ConsumeIntegralInRange(0, 0x40);
            default:
                return bar(0) + kBar0[in.ConsumeIntegralInRange(0, 3)] + (in.ConsumeIntegralInRange(0, 0x3c) & ~(n - 1));
        }
    }
    uint32_t size() { return in.PickValueInArray<uint32_t>({1, 2, 4, 8}); }
    std::vector<uint8_t> ctrl_command() {
        std::vector<uint8_t> c;
        switch (in.ConsumeIntegralInRange(0, 3)) {
            case 0: c = {4, 0, in.ConsumeIntegralInRange<uint8_t>(0, 3), 0}; break;  // queue pairs
            case 1: c = {1, 1, 0x02, 0, 0, 0, 0, in.ConsumeIntegral<uint8_t>()}; break;  // MAC address
            case 2: c = {0, in.ConsumeIntegralInRange<uint8_t>(0, 1), in.ConsumeBool()}; break;  // RX mode
            default: c = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange(0, 12)); break;
        }
        return c;
    }
    void pause(int us) {
        if (slept_us + us > 1000) return;  // a bound on each input's time
        slept_us += us;
        std::this_thread::sleep_for(std::chrono::microseconds(us));
    }

    void op() {
        switch (in.ConsumeIntegralInRange(0, 17)) {
            case 0:
            case 1: {  // common configuration, by field
                static constexpr uint32_t kOff[] = {kDfSelect, kDf, kGfSelect, kGf, kMsixConfig, kStatus, kQSelect,
                                                    kQSize, kQVector, kQEnable, kQDesc, kQDesc + 4, kQDriver,
                                                    kQDriver + 4, kQDevice, kQDevice + 4};
                uint32_t off = in.PickValueInArray(kOff), n = size();
                uint64_t v = off == kStatus ? in.PickValueInArray<uint64_t>({0, 1, 3, 11, 15, 0x80, 0x4f}) :
                             off == kQSelect ? in.ConsumeIntegralInRange<uint64_t>(0, q.size()) : in.ConsumeIntegral<uint64_t>();
                common(off, v, n);
                break;
            }
            case 2: {
                uint32_t n = size();
                mmio_read(target(n), n);
                break;
            }
            case 3: {
                uint32_t n = size();
                mmio_write(target(n), in.ConsumeIntegral<uint64_t>(), n);
                break;
            }
            case 4:
            case 5:  // a kick, as the driver makes it (sometimes another width)
                mmio_write(bar(0) + VirtioPci::kNotify + VirtioPci::kNotifyMultiplier * in.ConsumeIntegralInRange<uint32_t>(0, q.size()),
                           in.ConsumeIntegralInRange<uint16_t>(0, q.size()), in.ConsumeIntegralInRange(0, 7) ? 2 : size());
                break;
            case 6: {  // MSI-X: an entry's field, or the enable and function mask bits
                if (in.ConsumeBool()) {
                    uint64_t e = bar(1) + 16u * in.ConsumeIntegralInRange<uint32_t>(0, pci->msix().size());
                    mmio_write(e + 4 * in.ConsumeIntegralInRange(0, 3), in.ConsumeIntegral<uint32_t>(), 4);
                } else {
                    cfg_write(msix_cap() + 2u, in.PickValueInArray<uint32_t>({0, 0x4000, 0x8000, 0xc000}), 2);
                }
                break;
            }
            case 7: {  // configuration space: the command register, BARs, anything
                uint32_t reg = in.ConsumeBool() ? in.PickValueInArray<uint32_t>({0x04, 0x10, 0x14}) : in.ConsumeIntegral<uint8_t>();
                uint32_t n = in.PickValueInArray<uint32_t>({1, 2, 4});
                uint32_t v = reg == 0x04 ? in.PickValueInArray<uint32_t>({0, 2, 4, 6}) :
                             reg == 0x10 && in.ConsumeBool() ? 0xd000'0000u : in.ConsumeIntegral<uint32_t>();
                cfg_write(reg & ~(n - 1), v, n);
                break;
            }
            case 8: {  // receive buffers
                uint16_t i = static_cast<uint16_t>(2 * in.ConsumeIntegralInRange<unsigned>(0, pairs - 1));
                uint32_t len = in.PickValueInArray<uint32_t>({1526, 2048, 4096, 65804, 8, 100});
                post_rx(i, len, in.ConsumeIntegralInRange(1, 3));
                break;
            }
            case 9:
            case 10: {  // a frame to send
                uint16_t i = static_cast<uint16_t>(2 * in.ConsumeIntegralInRange<unsigned>(0, pairs - 1) + 1);
                std::vector<uint8_t> hdr(net::kHeaderLen, 0);
                if (in.ConsumeIntegralInRange(0, 3) == 0) hdr = in.ConsumeBytes<uint8_t>(net::kHeaderLen);
                size_t len = in.ConsumeIntegralInRange(0, 3) ? in.ConsumeIntegralInRange<size_t>(14, 1514)
                                                             : in.ConsumeIntegralInRange<size_t>(0, 65600);
                post_tx(i, hdr, make_frame(len, ++seed), in.ConsumeIntegralInRange(1, 4));
                if (in.ConsumeBool()) kick(i);
                if (in.ConsumeBool()) pause(20);  // the device's threads get to it
                break;
            }
            case 11:  // a control command
                post_ctrl(ctrl_queue(), ctrl_command());
                if (in.ConsumeBool()) kick(ctrl_queue());
                break;
            case 12: {  // a frame arrives at the port
                auto f = make_frame(in.ConsumeIntegralInRange(0, 3) ? in.ConsumeIntegralInRange<size_t>(0, 1526)
                                                                    : in.ConsumeIntegralInRange<size_t>(0, net::kMaxFrame),
                                    ++seed);
                ::send(port->peer(in.ConsumeIntegralInRange<unsigned>(0, pairs - 1)), f.data(), f.size(), MSG_DONTWAIT);
                if (in.ConsumeBool()) pause(20);
                break;
            }
            case 13:
                for (unsigned k = 0; k < pairs; k++) SocketPort::drain(port->peer(k));
                break;
            case 14: pause(in.ConsumeIntegralInRange(1, 200)); break;
            case 15: {  // bytes anywhere in RAM: rings, buffers in flight
                auto b = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange(1, 16));
                uint64_t at = in.ConsumeBool() ? kRings + in.ConsumeIntegralInRange<uint64_t>(0, 0x14000)
                                               : in.ConsumeIntegralInRange<uint64_t>(0, kRam - 1);
                store(mem(), at, b.data(), b.size());
                break;
            }
            case 16:
                start(in.ConsumeIntegral<uint64_t>(), static_cast<uint16_t>(1u << in.ConsumeIntegralInRange(0, 6)),
                      in.ConsumeBool(), in.PickValueInArray<uint32_t>({1526, 2048, 65804, 4096}));
                break;
            case 17: {  // through the PCI-config window (for firmware)
                uint8_t window = caps.end()[-2];
                cfg_write(window + 4u, 0, 1);
                cfg_write(window + 8u, in.ConsumeIntegralInRange<uint32_t>(0, 0x3040), 4);
                cfg_write(window + 12u, in.PickValueInArray<uint32_t>({1, 2, 4}), 4);
                cfg_write(window + 16u, in.ConsumeIntegral<uint32_t>(), 4);
                break;
            }
        }
        CHECK(pci->config_read(0) == id && pci->config_read(8) == class_rev);
        CHECK(capabilities() == caps);
        CHECK(pci->msix().size() == q.size() + 1u);
    }

    // After a reset the device leaves guest memory alone: frames arriving
    // and kicks change nothing.
    void check_quiet() {
        pci->bar_write(0, VirtioPci::kCommon + kStatus, std::array<uint8_t, 1>{0}.data(), 1);
        CHECK(pci->status() == 0);
        std::vector<uint8_t> before(mem().ptr(0, kRam), mem().ptr(0, kRam) + kRam);
        for (unsigned k = 0; k < pairs; k++) {
            auto f = make_frame(100, ++seed);
            ::send(port->peer(k), f.data(), f.size(), MSG_DONTWAIT);
        }
        for (uint16_t i = 0; i < q.size(); i++) kick(i);
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        CHECK(!std::memcmp(before.data(), mem().ptr(0, kRam), kRam));
    }

    template <typename F>
    static bool eventually(F done) {
        auto until = std::chrono::steady_clock::now() + kDeadline;
        for (int spins = 0; !done(); spins++) {
            if (std::chrono::steady_clock::now() > until) return false;
            if (spins < 200)
                std::this_thread::yield();  // the device's threads are usually done in microseconds
            else
                std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
        return true;
    }

    // Whatever happened before, a reset and a proper start give a device
    // that sends and receives.
    void check_recovers() {
        for (unsigned k = 0; k < pairs; k++) {
            SocketPort::drain(port->peer(k));
            SocketPort::drain(port->fd(k));  // the device is reset: nobody else reads there
        }
        std::memset(mem().ptr(0, kRam), 0, kRam);
        cfg_write(0x10, bar0, 4);  // the BARs where the firmware put them
        cfg_write(0x14, bar1, 4);
        bool mergeable = in.ConsumeBool();
        uint64_t want = net::kCtrlVq | net::kMac | (mergeable ? net::kMrgRxbuf : 0) |
                        (in.ConsumeBool() ? virtio::kFEventIdx : 0);
        CHECK(start(want, 16, in.ConsumeBool(), mergeable ? 2048 : 65804));
        // Out: one frame on pair 0.
        auto out = make_frame(200, ++seed);
        std::vector<uint8_t> hdr(net::kHeaderLen, 0);
        post_tx(1, hdr, out, 2);
        kick(1);
        std::vector<std::vector<uint8_t>> got;
        CHECK(eventually([&] {
            auto f = SocketPort::drain(port->peer(0));
            got.insert(got.end(), f.begin(), f.end());
            return !got.empty();
        }));
        std::vector<uint8_t> want_out(header ? hdr : std::vector<uint8_t>{});
        want_out.insert(want_out.end(), out.begin(), out.end());
        CHECK(got.size() == 1 && got[0] == want_out);
        CHECK(eventually([&] { return q[1].ring.used_idx() == 1; }));
        // In: one frame at pair 0's port queue.
        auto in_frame = make_frame(300, ++seed);
        std::vector<uint8_t> sent(header ? hdr : std::vector<uint8_t>{});
        sent.insert(sent.end(), in_frame.begin(), in_frame.end());
        CHECK(::send(port->peer(0), sent.data(), sent.size(), MSG_DONTWAIT) == static_cast<ssize_t>(sent.size()));
        CHECK(eventually([&] { return q[0].ring.used_idx() == 1; }));
        auto [id0, len] = q[0].ring.used_elem(0);
        CHECK(id0 < q[0].ring.size && len == net::kHeaderLen + in_frame.size());
        uint64_t buf = get<uint64_t>(mem(), q[0].ring.at.desc + sizeof(testing::Desc) * id0);
        CHECK(!std::memcmp(mem().ptr(buf + net::kHeaderLen, in_frame.size()), in_frame.data(), in_frame.size()));
        CHECK(!(pci->status() & virtio::kNeedsReset));
        TRACE("recovered\n");
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    std::memset(mem().ptr(0, kRam), 0, kRam);
    Device d(in);
    if (in.ConsumeBool())
        d.start(in.ConsumeIntegral<uint64_t>(), static_cast<uint16_t>(1u << in.ConsumeIntegralInRange(0, 6)),
                in.ConsumeBool(), in.PickValueInArray<uint32_t>({1526, 2048, 65804, 4096}));
    for (int op = 0; op < 128 && in.remaining_bytes(); op++) d.op();
    if (tracing()) static_cast<VirtioNet&>(d.pci->device()).print_stats(stderr, "fz");
    d.check_quiet();
    d.check_recovers();
    return 0;
}
