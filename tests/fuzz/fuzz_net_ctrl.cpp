// libFuzzer target: the virtio-net control queue (net_ctrl.cpp) through a
// whole VirtioNet, on a socketpair port, with minivmm's own datapath
// (vhost=off: its I/O threads run) or a vhost backend that only records
// what it is told, and a fake transport. Every input builds the device and
// destroys it, joining its threads.
//
// The driver negotiates any features and places the queues (sometimes
// badly), then sends commands of any class, command and length (MAC
// tables around the 64 KiB limit among them), split over chains of any
// shape, direct or indirect, with the status anywhere it may be, or
// nowhere; a kick may leave more than one lock hold's worth of commands
// for the control thread. Resets and re-activations come in between.
//
// A strict driver's commands are checked against the spec (5.1.6.5): each
// comes back in order, with length 1 and the status the command deserves
// in the first byte it may write, nothing else written; the MAC in the
// configuration space, the port queues attached and the vhost rings
// running follow the commands that succeeded; a chain with no room for its
// status or one the ring walker refuses breaks the device, and nothing
// else does. Notification coalescing (its parameters per queue, VQ_GET's
// answer after the status) is checked against a model of its own, and
// what reaches the recording backend against it. The machine's request
// for an announcement (after a load) shows in the status, with a config
// interrupt, only on a running device whose driver took GUEST_ANNOUNCE,
// until ANNOUNCE_ACK (which has no data) clears it. A wild driver also
// scribbles over the ring: then only memory safety and termination are checked.
#include <sys/eventfd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "tests/fuzz/fuzz_support.hpp"
#include "vhost/net_backends.hpp"
#include "vhost/vhost.hpp"
#include "virtio/net.hpp"
#include "vmm/io_bus.hpp"
#include "vmm/kvm.hpp"

using namespace minivmm;
using namespace minivmm::fuzz;

namespace {
constexpr uint64_t kRam = 4ull << 20;
constexpr uint64_t kCtrlDesc = 0x10000, kCtrlAvail = 0x11000, kCtrlUsed = 0x12000, kTables = 0x20000,
                   kTablesEnd = 0x100000, kRings = 0x100000, kBufs = 0x200000;
constexpr uint16_t kDataQueueSize = 8;
constexpr uint8_t kOk = 0, kErr = 1;
constexpr VirtioNet::Mac kMac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

GuestMemory& mem() { return guarded_ram(kRam); }

// The transport: records what the device asks, and has eventfds to hand a
// vhost backend. Called from the device's threads too: locked.
struct Transport : VirtioTransport {
    std::mutex lock;
    std::string broken;
    std::map<uint16_t, std::array<Fd, 3>> fds;  // kick, call, error

    bool signal_queue(uint16_t) override { return true; }
    void mark_broken(const std::string& why) override {
        std::lock_guard g(lock);
        if (broken.empty()) broken = why;
    }
    void signal_config() override { config_signals++; }
    std::atomic<unsigned> config_signals{0};
    bool is_broken() {
        std::lock_guard g(lock);
        return !broken.empty();
    }
    int fd(uint16_t q, int which) {
        std::lock_guard g(lock);
        Fd& f = fds[q][which];
        if (!f) f = Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        return f.get();
    }
    int kick_eventfd(uint16_t q) override { return fd(q, 0); }
    int call_eventfd(uint16_t q) override { return fd(q, 1); }
    int error_eventfd(uint16_t q) override { return fd(q, 2); }
};

// A vhost backend that serves nothing and remembers which port fd each
// ring was last given (-1: none, stopped), and, when it takes coalescing,
// each ring's parameters.
struct RecordingVhost : VhostBackend {
    std::vector<int>& backends;
    std::vector<Coalesce>* coal;
    RecordingVhost(std::vector<int>& b, std::vector<Coalesce>* c) : backends(b), coal(c) {}
    bool coalescing() const override { return coal; }
    void set_vring_coalesce(unsigned i, const Coalesce& c) override {
        CHECK(coal && i < coal->size());
        (*coal)[i] = c;
    }
    const char* name() const override { return "recording"; }
    void set_owner() override {}
    uint64_t get_features() override {
        return virtio::kFVersion1 | virtio::kFEventIdx | virtio::kFIndirectDesc | net::kMrgRxbuf |
               vhost::kFNetVirtioNetHdr;
    }
    void set_features(uint64_t) override {}
    void set_mem_table(const std::vector<VhostRegion>&) override {}
    void set_log_base(uint64_t, uint64_t) override {}
    void set_vring_num(unsigned, unsigned) override {}
    void set_vring_base(unsigned, unsigned) override {}
    unsigned get_vring_base(unsigned) override { return 0; }
    void set_vring_addr(unsigned, const VringAddr&) override {}
    void set_vring_kick(unsigned, int) override {}
    void set_vring_call(unsigned, int) override {}
    void set_vring_err(unsigned, int) override {}
    void set_backend(unsigned i, int fd) override {
        CHECK(i < backends.size());
        backends[i] = fd;
    }
};

// The port's receive steering (RSS), as a tap's steering program would
// be given it: the last settings, or none (cleared).
struct RecordingSteering : PortSteering {
    bool set_ = false;
    uint32_t types = 0;
    std::vector<uint8_t> key;
    std::vector<uint16_t> table;
    uint16_t unclassified = 0;
    void set(uint32_t t, std::span<const uint8_t> k, std::span<const uint16_t> tb, uint16_t u) override {
        set_ = true, types = t, key.assign(k.begin(), k.end()), table.assign(tb.begin(), tb.end()), unclassified = u;
    }
    void clear() override { set_ = false; }
};

// A port with several queues and the virtio-net header steers, as a tap
// with its steering program does: the device then offers RSS.
struct SteeringPort : SocketPort {
    RecordingSteering steering_rec;
    SteeringPort(unsigned pairs, bool header) : SocketPort(pairs, header) {}
    PortSteering* steering() override { return queues() > 1 && vnet_header() ? &steering_rec : nullptr; }
};

// A command in flight: what the device must make of it.
struct Command {
    uint16_t head;
    std::vector<uint8_t> bytes;  // the readable part: class, command, data
    bool breaks = false;         // the walker refuses it, or it has nowhere for the status
    uint64_t status_at = 0;      // the first byte the device may write
    std::vector<Segment> writable;
    std::vector<uint16_t> descs;
};

struct Ctrl {
    FuzzedDataProvider& in;
    bool strict;
    unsigned pairs;
    bool header;
    std::vector<int> backends;  // per data ring, with the recording backend
    bool coalescing = false;    // the recording backend takes coalescing
    std::vector<Coalesce> recorded;  // ... and was given these
    SteeringPort* port = nullptr;
    Transport t;
    std::unique_ptr<VirtioNet> net;
    bool vhost = false;

    // The driver's view of the device it activated.
    bool active = false, broken = false;
    uint64_t features = 0;
    std::vector<QueueConfig> queues;
    uint16_t ctrl_index = 0;
    GuestRing ring;
    std::vector<uint8_t> busy;
    uint16_t next_free = 0;  // where to look for free descriptors first
    std::deque<Command> pending;  // offered, not yet served, in ring order
    uint64_t bufs = kBufs, tables = kTables;
    uint64_t bufs_used = kBufs, tables_used = kTables;  // high-water marks, for clearing
    bool scribbled = false;
    // The model: what the commands served so far have set.
    VirtioNet::Mac mac = kMac;
    unsigned in_use = 1;
    RecordingSteering rss;  // what the port's steering must hold
    std::vector<Coalesce> coal;  // per data queue
    bool announcing = false;     // the status shows ANNOUNCE
    int want_room = -1;          // VQ_GET: the writable bytes its answer and status need

    Ctrl(FuzzedDataProvider& i) : in(i), strict(i.ConsumeBool()) {
        pairs = in.ConsumeIntegralInRange(1, 4);
        header = in.ConsumeBool();
        vhost = in.ConsumeBool();
        coalescing = vhost && in.ConsumeBool();
        backends.assign(2 * pairs, -1);
        recorded.assign(2 * pairs, Coalesce{});
        coal.assign(2 * pairs, Coalesce{});
        auto p = std::make_unique<SteeringPort>(pairs, header);
        port = p.get();
        net = std::make_unique<VirtioNet>(
            mem(), make_net_backend(std::move(p),
                                   vhost ? std::make_unique<RecordingVhost>(backends, coalescing ? &recorded : nullptr)
                                         : nullptr,
                                   "fz"),
            kMac, "fz");
        TRACE("device: %u pairs, header %d, %s\n", pairs, header, vhost ? "recording vhost" : "vhost=off");
    }
    ~Ctrl() {
        net->reset();
        net.reset();  // joins its threads
    }

    bool has(uint64_t f) const { return features & f; }

    void activate() {
        mem_clear();
        uint64_t offered = net->features();
        features = virtio::kFVersion1 | (offered & in.ConsumeIntegral<uint64_t>());
        if (in.ConsumeIntegralInRange(0, 7)) features |= net::kCtrlVq;
        // N = max_virtqueue_pairs with MQ or RSS, else 1; the control queue at 2N (5.1.2).
        ctrl_index = static_cast<uint16_t>(has(net::kMq | net::kRss) ? 2 * pairs : 2);
        queues.assign(net->num_queues(), QueueConfig{});
        for (uint16_t i = 0; i < queues.size(); i++) {
            uint64_t at = kRings + 0x4000ull * i;
            queues[i] = {kDataQueueSize, at, at + 0x1000, at + 0x2000, in.ConsumeIntegralInRange(0, 15) != 0, i};
        }
        // Wild rings are kept small, so one kick never leaves work for the
        // control thread (whose timing would make the input unrepeatable).
        uint16_t size = static_cast<uint16_t>(1u << in.ConsumeIntegralInRange(0, strict ? 8 : 5));
        if (strict && in.ConsumeBool()) size = 256;  // room for a flood
        QueueConfig& c = queues[ctrl_index];
        c = {size, kCtrlDesc, kCtrlAvail, kCtrlUsed, in.ConsumeIntegralInRange(0, 15) != 0, ctrl_index};
        bool bad_ring = in.ConsumeIntegralInRange(0, 31) == 0;
        if (bad_ring) c.driver = in.ConsumeBool() ? kRam - 2 : kCtrlAvail + 1;
        ring = GuestRing(mem(), size, {c.desc, c.driver, c.device});
        busy.assign(size, 0);
        next_free = 0;
        pending.clear();
        bufs = kBufs, tables = kTables;
        in_use = 1;
        TRACE("activate: features %#llx, ctrl queue %u of %u entries%s%s\n", (unsigned long long)features, ctrl_index,
              size, c.enabled ? "" : " (disabled)", bad_ring ? " (bad ring)" : "");
        net->activate(features, queues, t);
        active = true;
        bool ctrl = has(net::kCtrlVq) && c.enabled;
        broken = ctrl && bad_ring;
        CHECK(t.is_broken() == broken);
        check_effects();
    }
    void reset() {
        TRACE("reset\n");
        net->reset();
        rss.set_ = false;
        coal.assign(2 * pairs, Coalesce{});  // a reset clears them (and tells the backend)
        if (coalescing) CHECK(recorded == coal);
        std::lock_guard g(t.lock);
        t.broken.clear();
        active = broken = announcing = false;
    }
    // After a load the machine asks the device to have its driver announce
    // the guest: only a running device whose driver took GUEST_ANNOUNCE
    // (with the control queue) shows it and raises its config interrupt.
    void announce() {
        unsigned before = t.config_signals;
        net->announce();
        bool asked = active && !broken && has(net::kGuestAnnounce) && has(net::kCtrlVq);
        TRACE("announce: %s\n", asked ? "asked" : "ignored");
        if (asked) announcing = true;
        CHECK(t.config_signals == before + (asked ? 1u : 0u));
        check_effects();
    }
    // Clears what the last activation used (all of RAM after a wild driver).
    void mem_clear() {
        auto clear = [](uint64_t from, uint64_t to) { std::memset(mem().ptr(from, to - from), 0, to - from); };
        if (scribbled) {
            clear(0, kRam);
        } else {
            clear(kCtrlDesc, kCtrlUsed + 0x1000);
            clear(kTables, tables_used);
            clear(kRings, kRings + 0x4000ull * net->num_queues());
            clear(kBufs, bufs_used);
        }
        scribbled = false;
        bufs_used = kBufs, tables_used = kTables;
    }
    bool ctrl_usable() const { return active && has(net::kCtrlVq) && queues[ctrl_index].enabled; }

    // A command the input describes: mostly the spec's, with the wrong
    // lengths and values a driver could send, sometimes anything.
    std::vector<uint8_t> command_bytes() {
        std::vector<uint8_t> b;
        auto le = [&](uint64_t v, int n) {
            for (int i = 0; i < n; i++) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
        };
        auto more = [&](size_t n) {
            auto r = in.ConsumeBytes<uint8_t>(n);
            b.insert(b.end(), r.begin(), r.end());
            b.resize(b.size() + (n - r.size()), 0x5a);
        };
        int odd = in.ConsumeIntegralInRange(0, 7) == 0 ? in.ConsumeIntegralInRange(-2, 2) : 0;
        want_room = -1;
        switch (in.ConsumeIntegralInRange(0, 11)) {
            case 0:
            case 1:  // RX mode: promiscuous, all-multicast, and the ones we lack
                b = {0, in.ConsumeIntegralInRange<uint8_t>(0, 6)};
                more(static_cast<size_t>(std::max(0, 1 + odd)));
                break;
            case 2:
            case 3: {  // MAC filter tables
                b = {1, 0};
                for (int table = 0; table < 2; table++) {
                    uint32_t n = in.ConsumeIntegralInRange<uint32_t>(0, 4);
                    uint32_t claimed = in.ConsumeIntegralInRange(0, 7) ? n : in.ConsumeIntegral<uint32_t>();
                    le(claimed, 4);
                    more(6ull * n);
                }
                if (odd > 0) more(static_cast<size_t>(odd));
                if (odd < 0) b.resize(b.size() - std::min<size_t>(b.size() - 2, static_cast<size_t>(-odd)));
                break;
            }
            case 4: {  // a MAC filter table around the largest command
                b = {1, 0};
                uint32_t total = in.ConsumeIntegralInRange<uint32_t>(64 * 1024 - 40, 64 * 1024 + 40);
                uint32_t n2 = in.ConsumeIntegralInRange<uint32_t>(0, 3);
                uint32_t n1 = (total - 2 - 8 - 6 * n2) / 6;
                le(n1, 4);
                b.resize(b.size() + 6ull * n1, 0x02);
                le(n2, 4);
                b.resize(b.size() + 6ull * n2, 0x02);
                b.resize(total, 0x02);
                break;
            }
            case 5:
            case 6:  // the MAC address
                b = {1, 1};
                more(static_cast<size_t>(6 + odd));
                break;
            case 7:  // the number of queue pairs, or the RSS settings that set it too
                if (has(net::kRss) && in.ConsumeBool()) {
                    b = {4, 1};
                    le(in.ConsumeIntegralInRange(0, 7) ? in.ConsumeIntegralInRange<uint32_t>(0, 0x3f)
                                                       : in.ConsumeIntegral<uint32_t>(), 4);
                    uint32_t entries = 1u << in.ConsumeIntegralInRange(0, 8);  // 256: too many
                    le(in.ConsumeIntegralInRange(0, 7) ? entries - 1 : in.ConsumeIntegral<uint16_t>(), 2);
                    le(in.ConsumeIntegralInRange<uint16_t>(0, static_cast<uint16_t>(pairs)), 2);  // unclassified
                    for (uint32_t e = 0; e < entries; e++)
                        le(in.ConsumeIntegralInRange(0, 15) ? in.ConsumeIntegralInRange<uint16_t>(0, 1)
                                                            : in.ConsumeIntegralInRange<uint16_t>(0, 5), 2);
                    le(in.ConsumeIntegralInRange<uint16_t>(0, static_cast<uint16_t>(pairs + 1)), 2);  // max_tx_vq
                    uint8_t key_len = in.ConsumeIntegralInRange<uint8_t>(0, 42);
                    b.push_back(key_len);
                    more(key_len);
                    if (odd > 0) more(static_cast<size_t>(odd));
                    if (odd < 0) b.resize(b.size() - static_cast<size_t>(-odd));
                    break;
                }
                b = {4, 0};
                le(in.ConsumeIntegralInRange(0, 7) ? in.ConsumeIntegralInRange<uint16_t>(0, 5) : in.ConsumeIntegral<uint16_t>(), 2);
                if (odd > 0) more(static_cast<size_t>(odd));
                if (odd < 0) b.resize(b.size() - static_cast<size_t>(-odd));
                break;
            case 8:  // shorter than a header
                more(in.ConsumeIntegralInRange(0, 1));
                break;
            case 9:  // the announcement's acknowledgement, which has no data, and its neighbours
                b = {3, in.ConsumeIntegralInRange<uint8_t>(0, 1)};
                more(static_cast<size_t>(std::max(0, odd)));
                break;
            case 10:
            case 11: {  // notification coalescing: TX_SET, RX_SET, VQ_SET, VQ_GET and beyond
                uint8_t cmd = in.ConsumeIntegralInRange<uint8_t>(0, 4);
                b = {6, cmd};
                auto value = [&](uint32_t max) {
                    return in.ConsumeIntegralInRange(0, 7) ? in.ConsumeIntegralInRange<uint32_t>(0, max + 1)
                                                           : in.ConsumeIntegral<uint32_t>();
                };
                auto params = [&] { le(value(kMaxCoalescePackets), 4), le(value(kMaxCoalesceUsecs), 4); };
                if (cmd >= 2) {  // vqn: the data queues, the control queue, beyond
                    le(in.ConsumeIntegralInRange(0, 7) ? in.ConsumeIntegralInRange<uint16_t>(0, 2 * pairs + 1)
                                                       : in.ConsumeIntegral<uint16_t>(), 2);
                    if (cmd != 3 || in.ConsumeBool()) le(in.ConsumeIntegral<uint16_t>(), 2);
                }
                if (cmd != 3 || b.size() > 4) params();
                if (cmd == 3) want_room = in.ConsumeIntegralInRange(0, 3) ? 9 : in.ConsumeIntegralInRange(1, 12);
                if (odd > 0) more(static_cast<size_t>(odd));
                if (odd < 0) b.resize(b.size() - std::min<size_t>(b.size() - 2, static_cast<size_t>(-odd)));
                break;
            }
            default:
                b = {in.ConsumeIntegral<uint8_t>(), in.ConsumeIntegral<uint8_t>()};
                more(in.ConsumeIntegralInRange(0, 12));
                break;
        }
        return b;
    }

    uint64_t alloc(uint64_t& at, uint64_t end, uint64_t n) {
        uint64_t a = (at + 15) & ~15ull;
        if (a + n > end) return 0;
        at = a + n + 16;  // a gap the device must not write
        bufs_used = std::max(bufs_used, bufs), tables_used = std::max(tables_used, tables);
        return a;
    }

    // Builds a chain for the command and offers it: readable pieces, then
    // the writable ones (none: nowhere for the status), direct or in an
    // indirect table. false: no room (descriptors, buffers) for it.
    // plain: the shape a driver flooding the queue uses, one piece each way
    // (or none for the status: no_status) in an indirect table, costing no input.
    bool offer(std::vector<uint8_t> bytes, bool plain = false, bool no_status = false) {
        Command c;
        c.bytes = std::move(bytes);
        unsigned nr = c.bytes.empty() ? 0 : plain ? 1 : in.ConsumeIntegralInRange<unsigned>(1, std::min<size_t>(6, c.bytes.size()));
        unsigned nw = plain ? !no_status : in.ConsumeIntegralInRange(0, 15) == 0 ? 0 : in.ConsumeIntegralInRange(1, 3);
        // An answer's room, split over the writable buffers (as long as each gets a byte).
        uint32_t room = !plain && nw && want_room >= int(nw) ? uint32_t(want_room) : 0;
        bool indirect = (plain || in.ConsumeBool()) && nr + nw > 0;
        // Buffers: the command's pieces, then the writable ones, marked.
        std::vector<std::pair<uint64_t, uint32_t>> parts;
        size_t at = 0;
        for (unsigned k = 0; k < nr; k++) {
            size_t left = c.bytes.size() - at, pieces = nr - k;
            size_t n = k + 1 == nr ? left : in.ConsumeIntegralInRange<size_t>(1, left - (pieces - 1));
            uint64_t gpa = alloc(bufs, kRam, n);
            if (!gpa) return false;
            std::memcpy(mem().ptr(gpa, n), &c.bytes[at], n);
            parts.push_back({gpa, static_cast<uint32_t>(n)});
            at += n;
        }
        for (unsigned k = 0; k < nw; k++) {
            uint32_t n = plain ? 1 : in.ConsumeIntegralInRange<uint32_t>(1, 16);
            if (room) n = k + 1 == nw ? room : in.ConsumeIntegralInRange<uint32_t>(1, room - (nw - 1 - k));
            if (room) room -= n;
            uint64_t gpa = alloc(bufs, kRam, n);
            if (!gpa) return false;
            std::memset(mem().ptr(gpa, n), 0xee, n);
            parts.push_back({gpa, n});
            c.writable.push_back({gpa, n, true});
        }
        if (!nw) c.breaks = true;
        else c.status_at = c.writable.front().gpa;
        // A shape the walker refuses: a zero length, or a readable piece
        // after a writable one.
        int zero = -1, swap = -1;
        if (!plain && in.ConsumeIntegralInRange(0, 15) == 0 && !parts.empty())
            zero = in.ConsumeIntegralInRange<int>(0, parts.size() - 1);
        if (!plain && in.ConsumeIntegralInRange(0, 15) == 0 && nr && nw) swap = static_cast<int>(nr) - 1;
        if (zero >= 0 || swap >= 0) c.breaks = true;
        auto flags = [&](unsigned k) -> uint16_t {
            bool w = k >= nr;
            if (swap >= 0 && (k == unsigned(swap) || k == unsigned(swap) + 1)) w = !w;
            return static_cast<uint16_t>((w ? kWrite : 0) | (k + 1 < parts.size() ? kNext : 0));
        };
        unsigned descs = indirect ? 1 : static_cast<unsigned>(std::max<size_t>(parts.size(), 1));
        std::vector<uint16_t> idx;
        for (uint32_t k = 0; k < ring.size && idx.size() < descs; k++) {
            auto d = static_cast<uint16_t>((next_free + k) % ring.size);
            if (!busy[d]) idx.push_back(d);
        }
        if (idx.size() < descs) return false;
        if (parts.empty()) {  // nothing at all: one zero-length descriptor
            c.breaks = true;
            write_desc(mem(), ring.at.desc, idx[0], bufs, 0, 0, 0);
        } else if (indirect) {
            uint64_t table = alloc(tables, kTablesEnd, 16 * parts.size());
            if (!table) return false;
            for (unsigned k = 0; k < parts.size(); k++)
                write_desc(mem(), table, k, parts[k].first, int(k) == zero ? 0 : parts[k].second, flags(k),
                           static_cast<uint16_t>(k + 1));
            write_desc(mem(), ring.at.desc, idx[0], table, static_cast<uint32_t>(16 * parts.size()), kIndirect, 0);
        } else {
            for (unsigned k = 0; k < parts.size(); k++)
                write_desc(mem(), ring.at.desc, idx[k], parts[k].first, int(k) == zero ? 0 : parts[k].second, flags(k),
                           k + 1 < parts.size() ? idx[k + 1] : 0);
        }
        for (uint16_t d : idx) busy[d] = 1;
        next_free = static_cast<uint16_t>((idx.back() + 1) % ring.size);
        c.descs = idx;
        c.head = idx[0];
        TRACE("offer %u: class %d cmd %d, %zu bytes in %u pieces, %u writable%s%s\n", c.head,
              c.bytes.size() > 0 ? c.bytes[0] : -1, c.bytes.size() > 1 ? c.bytes[1] : -1, c.bytes.size(), nr, nw,
              indirect ? ", indirect" : "", c.breaks ? " (breaks)" : "");
        pending.push_back(std::move(c));
        ring.offer(idx[0]);
        return true;
    }

    // The spec's answer to a command, and what it changes. answer: what
    // the device writes after the status, with room (writable bytes) for it.
    uint8_t expect(const std::vector<uint8_t>& b, uint64_t room, std::vector<uint8_t>& answer) {
        if (b.size() < 2 || b.size() > 64 * 1024) return kErr;
        uint8_t cls = b[0], cmd = b[1];
        std::vector<uint8_t> d(b.begin() + 2, b.end());
        if (cls == 6) return expect_coalesce(cmd, d, room, answer);
        if (cls == 3 && cmd == 0 && has(net::kGuestAnnounce)) {
            if (!d.empty()) return kErr;
            announcing = false;
            return kOk;
        }
        if (cls == 0 && has(net::kCtrlRx) && d.size() == 1) return cmd <= 1 ? kOk : kErr;
        if (cls == 1 && cmd == 0 && has(net::kCtrlRx)) {
            // struct virtio_net_ctrl_mac twice: le32 entries, then that many addresses.
            size_t at = 0;
            for (int table = 0; table < 2; table++) {
                if (d.size() < at + 4) return kErr;
                uint64_t n = le_load(&d[at], 4);
                at += 4;
                if (n * 6 > d.size() - at) return kErr;
                at += n * 6;
            }
            return at == d.size() ? kOk : kErr;
        }
        if (cls == 1 && cmd == 1 && has(net::kCtrlMacAddr)) {
            if (d.size() != 6 || (d[0] & 1)) return kErr;
            std::copy(d.begin(), d.end(), mac.begin());
            return kOk;
        }
        if (cls == 4 && cmd == 0 && has(net::kMq) && d.size() == 2) {
            unsigned n = static_cast<unsigned>(le_load(d.data(), 2));
            if (n < 1 || n > pairs) return kErr;
            for (unsigned k = 0; k < n; k++)
                if (!queues[2 * k].enabled || !queues[2 * k + 1].enabled) return kErr;
            in_use = n;
            return kOk;
        }
        if (cls == 4 && cmd == 1 && has(net::kRss)) {
            // struct virtio_net_rss_config (virtio 1.3, 5.1.6.5.7.1) and the
            // device's limits: 40-byte key, 128 entries, six hash types.
            if (d.size() < 8) return kErr;
            uint32_t types = static_cast<uint32_t>(le_load(&d[0], 4));
            size_t n = le_load(&d[4], 2) + 1;
            unsigned unclassified = static_cast<unsigned>(le_load(&d[6], 2));
            if (n > 128 || (n & (n - 1)) || (types & ~0x3fu) || d.size() < 8 + 2 * n + 3) return kErr;
            unsigned max_tx = static_cast<unsigned>(le_load(&d[8 + 2 * n], 2));
            size_t key_len = d[8 + 2 * n + 2];
            if (key_len > 40 || d.size() < 8 + 2 * n + 3 + key_len) return kErr;  // padding after it ignored
            if (max_tx < 1 || max_tx > pairs || unclassified >= max_tx) return kErr;
            std::vector<uint16_t> table;
            for (size_t e = 0; e < n; e++) {
                table.push_back(static_cast<uint16_t>(le_load(&d[8 + 2 * e], 2)));
                if (table.back() >= max_tx) return kErr;
            }
            unsigned usable = has(net::kMq | net::kRss) ? pairs : 1;
            for (unsigned k = 0; k < max_tx; k++)
                if (k >= usable || !queues[2 * k].enabled || !queues[2 * k + 1].enabled) return kErr;
            in_use = max_tx;
            rss.set_ = true, rss.types = types, rss.table = table;
            rss.unclassified = static_cast<uint16_t>(unclassified);
            rss.key.assign(d.begin() + 8 + 2 * n + 3, d.begin() + 8 + 2 * n + 3 + key_len);
            return kOk;
        }
        return kErr;
    }

    // 5.1.6.5.7: parameters for all receive (RX_SET) or transmit (TX_SET)
    // queues, or one data queue of those the features give (VQ_SET), read
    // back with VQ_GET into the 8 bytes after the status.
    uint8_t expect_coalesce(uint8_t cmd, const std::vector<uint8_t>& d, uint64_t room, std::vector<uint8_t>& answer) {
        unsigned queues = has(net::kMq | net::kRss) ? 2 * pairs : 2;
        auto params = [&](size_t at, Coalesce& c) {
            c = {uint32_t(le_load(&d[at], 4)), uint32_t(le_load(&d[at + 4], 4))};
            return c.max_packets <= kMaxCoalescePackets && c.max_usecs <= kMaxCoalesceUsecs;
        };
        Coalesce c;
        if (cmd <= 1) {  // TX_SET, RX_SET: NOTF_COAL's; VQ_SET, VQ_GET: VQ_NOTF_COAL's alone
            if (!has(net::kNotfCoal) || d.size() != 8 || !params(0, c)) return kErr;
            for (unsigned i = cmd == 0 ? 1 : 0; i < queues; i += 2) coal[i] = c;
            return kOk;
        }
        if (!has(net::kVqNotfCoal) || cmd > 3 || d.size() < 2) return kErr;
        unsigned vqn = unsigned(le_load(d.data(), 2));
        if (vqn >= queues) return kErr;
        if (cmd == 2) {
            if (d.size() != 12 || !params(4, c)) return kErr;
            coal[vqn] = c;
            return kOk;
        }
        if ((d.size() != 2 && d.size() != 12) || room != 9) return kErr;
        answer.resize(8);
        le_store(answer.data(), 4, coal[vqn].max_packets);
        le_store(answer.data() + 4, 4, coal[vqn].max_usecs);
        return kOk;
    }

    void kick() {
        TRACE("kick (%zu pending)\n", pending.size());
        // How many the device serves: up to the first that breaks it.
        size_t serve = 0;
        while (serve < pending.size() && !pending[serve].breaks) serve++;
        bool breaks = serve < pending.size() && !broken && ctrl_usable();
        if (broken || !ctrl_usable()) serve = 0;
        net->notify(ctrl_index);
        if (!strict) {  // what the device made of a wild ring is anyone's guess: start afresh
            pending.clear();
            busy.assign(ring.size, 0);
            return;
        }
        uint16_t want = static_cast<uint16_t>(ring.used_seen + serve);
        if (serve > VirtioNet::kCtrlBudget || (breaks && serve >= VirtioNet::kCtrlBudget)) {
            // The rest went to the control thread: wait for it, then for its
            // lock (config_read takes it), so that it is done with them.
            auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
            for (int spins = 0; ring.used_idx() != want || (breaks && !t.is_broken()); spins++) {
                CHECK(std::chrono::steady_clock::now() < until);  // the control thread never finished
                if (spins < 1000)
                    std::this_thread::yield();  // it takes microseconds, usually
                else
                    std::this_thread::sleep_for(std::chrono::microseconds(50));
            }
            uint8_t b[1];
            net->config_read(0, b, 1);
        }
        CHECK(ring.used_idx() == want);
        for (size_t k = 0; k < serve; k++) {
            Command c = std::move(pending.front());
            pending.pop_front();
            auto [id, len] = ring.used_elem(ring.used_seen++);
            uint64_t room = 0;
            for (const Segment& w : c.writable) room += w.len;
            std::vector<uint8_t> answer;
            uint8_t want_ack = expect(c.bytes, room, answer);
            std::vector<uint8_t> want = {want_ack};
            want.insert(want.end(), answer.begin(), answer.end());
            CHECK(id == c.head && len == want.size());
            // The status then the answer from the first writable byte on
            // (5.1.6.5); nothing else written: the rest of the writable
            // bytes, and the command.
            std::vector<uint8_t> got;
            for (const Segment& w : c.writable) got.insert(got.end(), mem().ptr(w.gpa, w.len), mem().ptr(w.gpa, w.len) + w.len);
            TRACE("  served %u: status %u, want %u\n", c.head, got[0], want_ack);
            want.resize(got.size(), 0xee);
            CHECK(got == want);
            for (uint16_t d : c.descs) busy[d] = 0;
        }
        if (breaks) {
            CHECK(t.is_broken());
            broken = true;
        }
        if (!broken) CHECK(!t.is_broken());
        if (pending.empty()) bufs = kBufs, tables = kTables;
        check_effects();
    }

    // What the device shows of the model: its MAC, the port queues
    // attached, the vhost rings given a port fd.
    void check_effects() {
        if (!strict) return;
        uint8_t cfg[12];
        net->config_read(0, cfg, sizeof cfg);
        CHECK(std::equal(mac.begin(), mac.end(), cfg));
        CHECK(cfg[6] == (announcing ? 3 : 1) && cfg[7] == 0 && le_load(cfg + 8, 2) == pairs && cfg[10] == 0 && cfg[11] == 0);
        if (!active || broken) return;
        bool mq = has(net::kMq | net::kRss);
        for (unsigned k = 1; k < pairs; k++) CHECK(port->attached(k) == (k < in_use));
        const RecordingSteering& st = port->steering_rec;
        CHECK(st.set_ == rss.set_);
        if (rss.set_)
            CHECK(st.types == rss.types && st.key == rss.key && st.table == rss.table &&
                  st.unclassified == rss.unclassified);
        if (coalescing) CHECK(recorded == coal);
        if (vhost)
            for (unsigned i = 0; i < 2 * pairs; i++) {
                bool runs = i / 2 < in_use && (mq || i < 2) && queues[i].enabled;
                CHECK(backends[i] == (runs ? port->fd(i / 2) : -1));
            }
    }

    // What only a wild driver does to the control ring.
    void misbehave() {
        scribbled = true;
        switch (in.ConsumeIntegralInRange(0, 3)) {
            case 0: {
                auto bytes = in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange(1, 16));
                uint64_t at = in.ConsumeBool() ? kCtrlDesc + in.ConsumeIntegralInRange<uint64_t>(0, 0x3000)
                                               : in.ConsumeIntegralInRange<uint64_t>(0, kRam - 1);
                store(mem(), at, bytes.data(), bytes.size());
                break;
            }
            case 1:
                write_desc(mem(), ring.at.desc, in.ConsumeIntegral<uint16_t>() % ring.size,
                           in.ConsumeBool() ? in.ConsumeIntegral<uint64_t>() : kBufs + in.ConsumeIntegralInRange(0, 4096),
                           in.ConsumeIntegral<uint32_t>(), in.ConsumeIntegral<uint16_t>(), in.ConsumeIntegral<uint16_t>());
                break;
            case 2:
                ring.avail_idx = static_cast<uint16_t>(ring.avail_idx + in.ConsumeIntegralInRange(-2, 40));
                ring.publish();
                break;
            case 3: ring.offer(in.ConsumeIntegral<uint16_t>()); break;
        }
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    Ctrl c(in);
    c.activate();
    for (int op = 0; op < 200 && in.remaining_bytes(); op++) {
        switch (in.ConsumeIntegralInRange(0, 15)) {
            case 0: case 1: case 2: case 3: case 4: case 5:
                if (c.ctrl_usable() && c.offer(c.command_bytes()) && in.ConsumeIntegralInRange(0, 3)) c.kick();
                break;
            case 6: case 7:
                if (c.active) c.kick();
                break;
            case 8:  // a flood: more than one kick's worth
                if (c.ctrl_usable() && c.strict) {
                    int n = in.ConsumeIntegralInRange(VirtioNet::kCtrlBudget - 2, 3 * VirtioNet::kCtrlBudget);
                    // Sometimes one in it has no room for its status.
                    int bad = in.ConsumeBool() ? in.ConsumeIntegralInRange(0, n) : -1;
                    auto bytes = c.command_bytes();
                    if (bytes.size() > 64) bytes.resize(64);
                    for (int k = 0; k < n && c.offer(bytes, true, k == bad); k++) {
                    }
                    c.kick();
                }
                break;
            case 9:  // a kick for any queue, the control queue's included
                if (c.active) {
                    auto q = in.ConsumeIntegralInRange<uint16_t>(0, c.net->num_queues());
                    if (q == c.ctrl_index)
                        c.kick();
                    else
                        c.net->notify(q);
                }
                break;
            case 10: {
                uint8_t b[8];
                uint32_t n = in.ConsumeIntegralInRange(1, 8);
                c.net->config_read(in.ConsumeIntegralInRange(0, 16), b, n);
                break;
            }
            case 11:
                c.reset();
                if (in.ConsumeIntegralInRange(0, 3)) c.activate();
                break;
            case 12:  // (offered commands, acknowledgements among them, may be served any time)
                if (c.strict && c.pending.empty()) c.announce();
                break;
            default:
                if (!c.strict && c.ctrl_usable())
                    c.misbehave();
                else if (c.active && c.pending.empty())  // (offered ones may be served any time)
                    c.check_effects();
                break;
        }
    }
    return 0;
}
