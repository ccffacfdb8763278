// The rig of the vhost backend unit tests: a simulated guest driver writing
// split rings into GuestMemory, a backend (minivmm's worker, or with
// MINIVMM_TEST_VHOST=kernel the kernel's vhost-net) configured as
// minivmm's virtio-net would, and a real tap as the packet backend. The
// test side of the tap is an AF_PACKET socket bound to it: what the socket
// sends arrives on the tap fd (the backend's RX), what the backend writes
// to the tap fd (TX) the socket receives. Use it inside in_netns().
#pragma once
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/guest_ring.hpp"
#include "tests/unit/netns_helpers.hpp"
#include "vhost/ports/tap.hpp"
#include "vhost/vhost.hpp"
#include "virtio/device.hpp"
#include "virtio/net_datapath.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/kvm.hpp"

namespace minivmm::testing {

constexpr uint64_t kMemSize = 16ull << 20;
constexpr uint16_t kQSize = 8;
constexpr unsigned kRx = net::kRxQueue, kTx = net::kTxQueue;
constexpr uint16_t kEtherType = 0x88b5;  // IEEE local experimental: nothing else sends it
constexpr int kTimeoutMs = GuestRing::kWaitMs;
constexpr int kQuietMs = 300;             // how long "nothing happens" is watched
// Buffers: one 4 KiB slot per descriptor head.
constexpr uint64_t kTxBuf = 0x100000, kRxBuf = 0x200000;

constexpr RingLayout kRxRing{0x10000, 0x11000, 0x12000}, kTxRing{0x20000, 0x21000, 0x22000};

inline uint64_t rx_slot(uint16_t head) { return kRxBuf + 0x1000ull * head; }
inline uint64_t tx_slot(uint16_t head) { return kTxBuf + 0x1000ull * head; }

inline std::vector<uint8_t> make_frame(size_t len, uint8_t seed) {
    std::vector<uint8_t> f(len);
    std::memset(f.data(), 0xff, 6);  // broadcast
    const uint8_t src[6] = {0x02, 0, 0, 0, 0, seed};
    std::memcpy(&f[6], src, 6);
    f[12] = kEtherType >> 8;
    f[13] = kEtherType & 0xff;
    for (size_t i = 14; i < len; i++) f[i] = static_cast<uint8_t>(seed * 31 + i * 7);
    return f;
}

// Sends frame f on the AF_PACKET socket pkt bound to the tap at ifindex: it
// arrives on the tap fd. Returns what sendto returns.
inline ssize_t send_to_tap(int pkt, int ifindex, const std::vector<uint8_t>& f, int flags = 0) {
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(kEtherType);
    sll.sll_ifindex = ifindex;
    sll.sll_halen = 6;
    std::memcpy(sll.sll_addr, f.data(), 6);
    return ::sendto(pkt, f.data(), f.size(), flags, reinterpret_cast<sockaddr*>(&sll), sizeof sll);
}

inline uint16_t le16(const std::vector<uint8_t>& b, size_t off) { return static_cast<uint16_t>(b[off] | b[off + 1] << 8); }

// The header the tap put in front of a received frame: no offloads, and
// num_buffers as the device set it.
inline void expect_rx_header(const std::vector<uint8_t>& b, uint16_t num_buffers) {
    ASSERT_GE(b.size(), net::kHeaderLen);
    EXPECT_EQ(b[1], 0) << "gso_type";  // VIRTIO_NET_HDR_GSO_NONE
    EXPECT_EQ(le16(b, 10), num_buffers) << "num_buffers";
}
inline std::vector<uint8_t> payload(const std::vector<uint8_t>& b) { return {b.begin() + net::kHeaderLen, b.end()}; }

struct Options {
    uint64_t features = virtio::kFVersion1;
    RingLayout rx = kRxRing, tx = kTxRing;
    bool log = false;  // set_log_base(bitmap) before the rings start
    uint16_t size = kQSize;  // both rings' (at most 256: one TX buffer slot per head below kRxBuf)
};

// MINIVMM_TEST_VHOST=kernel: the same rig drives the kernel's vhost-net
// instead, for the tests that need no worker-only counters; it runs where
// /dev/vhost-net exists (tests/integration/test_vhost_kernel.py, in the
// emulated outer host).
inline bool kernel_vhost() {
    const char* v = std::getenv("MINIVMM_TEST_VHOST");
    return v && std::string(v) == "kernel";
}

// A worker backend configured as minivmm's virtio-net would, with its tap,
// eventfds, guest memory and the test's packet socket.
struct Rig {
    Options opt;
    GuestMemory mem{kMemSize};
    std::vector<uint8_t> bitmap = std::vector<uint8_t>(kMemSize / 4096 / 8);  // dirty log
    Fd kick[2] = {make_eventfd(), make_eventfd()}, call[2] = {make_eventfd(), make_eventfd()},
       err[2] = {make_eventfd(), make_eventfd()};
    Tap tap{"vwtest0"};
    Fd pkt;
    int ifindex = 0;
    GuestRing ring[2] = {{mem, opt.size, opt.rx}, {mem, opt.size, opt.tx}};
    std::unique_ptr<VhostBackend> vh = kernel_vhost() ? open_kernel_vhost() : make_worker_vhost();  // last: stops first

    explicit Rig(Options o = {}) : opt(o) {
        ring[kRx].at = opt.rx;
        ring[kTx].at = opt.tx;
        for (auto& r : ring) r.event_idx = opt.features & virtio::kFEventIdx;
        tap.set_vnet_header_size(net::kHeaderLen);
        ifindex = static_cast<int>(if_nametoindex(tap.name().c_str()));
        if (!ifindex) throw std::runtime_error("tap has no interface index");
        pkt = Fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL)));
        if (!pkt) throw std::runtime_error(std::string("AF_PACKET socket: ") + std::strerror(errno));
        sockaddr_ll sll{};
        sll.sll_family = AF_PACKET;
        sll.sll_protocol = htons(ETH_P_ALL);
        sll.sll_ifindex = ifindex;
        if (::bind(pkt.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0)
            throw std::runtime_error(std::string("bind AF_PACKET: ") + std::strerror(errno));

        if (!kernel_vhost()) vh->set_owner();  // open_kernel_vhost() has made us the owner
        EXPECT_EQ(opt.features & ~vh->get_features(), 0u) << "the backend lacks a feature the test wants";
        vh->set_features(opt.features);
        vh->set_mem_table({{0, kMemSize, hva(0)}});
        if (opt.log) vh->set_log_base(reinterpret_cast<uint64_t>(bitmap.data()), bitmap.size());
        for (unsigned i = 0; i < 2; i++) {
            vh->set_vring_num(i, opt.size);
            vh->set_vring_base(i, 0);
            vh->set_vring_addr(i, vring_addr(ring[i].at));
            vh->set_vring_kick(i, kick[i].get());
            vh->set_vring_call(i, call[i].get());
            vh->set_vring_err(i, err[i].get());
        }
    }
    uint64_t hva(uint64_t gpa) const { return reinterpret_cast<uint64_t>(mem.ptr(gpa, 1)); }
    // Guest memory the test itself reads or writes: outside RAM is the test's bug.
    uint8_t* host(uint64_t gpa, uint64_t len) const {
        uint8_t* p = mem.ptr(gpa, len);
        if (!p) throw std::runtime_error("test bug: address outside guest memory");
        return p;
    }
    VringAddr vring_addr(const RingLayout& l) const {
        return {hva(l.desc), hva(l.avail), hva(l.used), l.used, opt.log};
    }
    void start(unsigned q) { vh->set_backend(q, tap.fd()); }
    const QueueStats& stats(unsigned q) const { return *vh->stats(q); }

    void kick_now(unsigned q) {
        uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(kick[q].get(), &one, sizeof one);
    }
    // Offers the heads and kicks if the device asked for it, as a driver does.
    void publish(unsigned q, std::initializer_list<uint16_t> heads) {
        uint16_t old = ring[q].avail_idx;
        for (uint16_t h : heads) ring[q].add(h);
        if (ring[q].publish_since(old)) kick_now(q);
    }

    void put(uint64_t gpa, const std::vector<uint8_t>& bytes) {
        std::memcpy(host(gpa, bytes.size()), bytes.data(), bytes.size());
    }
    std::vector<uint8_t> get(uint64_t gpa, size_t len) const {
        uint8_t* s = host(gpa, len);
        return {s, s + len};
    }
    // A one-descriptor TX chain at head: [zero virtio-net header | frame].
    void tx_chain(uint16_t head, const std::vector<uint8_t>& frame) {
        std::vector<uint8_t> b(net::kHeaderLen + frame.size(), 0);
        std::copy(frame.begin(), frame.end(), b.begin() + net::kHeaderLen);
        put(tx_slot(head), b);
        ring[kTx].desc(head, tx_slot(head), static_cast<uint32_t>(b.size()), 0);
    }
    // Writable one-descriptor RX buffers of len bytes at heads first.., filled with junk.
    void rx_buffers(uint16_t first, uint16_t n, uint32_t len) {
        for (uint16_t h = first; h < first + n; h++) {
            std::memset(host(rx_slot(h), len), 0xee, len);
            ring[kRx].desc(h, rx_slot(h), len, kWrite);
        }
    }

    // Receive buffers of len bytes at heads 0..n-1, offered, and the RX ring started.
    void start_rx(uint16_t n, uint32_t len) {
        rx_buffers(0, n, len);
        uint16_t old = ring[kRx].avail_idx;
        for (uint16_t h = 0; h < n; h++) ring[kRx].add(h);
        if (ring[kRx].publish_since(old)) kick_now(kRx);
        start(kRx);
    }
    // Sends frame as a one-descriptor chain at head; it must come out of the
    // tap as it went in. Call it in ASSERT_NO_FATAL_FAILURE.
    void expect_tx(uint16_t head, const std::vector<uint8_t>& frame) {
        tx_chain(head, frame);
        publish(kTx, {head});
        auto got = recv_frame();
        ASSERT_TRUE(got);
        EXPECT_EQ(*got, frame);
    }

    void send_frame(const std::vector<uint8_t>& f) {
        ssize_t n = send_to_tap(pkt.get(), ifindex, f);
        ASSERT_EQ(n, static_cast<ssize_t>(f.size())) << "sendto: " << std::strerror(errno);
    }
    // A new frame of len bytes (make_frame), sent as above; returns it.
    std::vector<uint8_t> send_frame(size_t len, uint8_t seed) {
        auto f = make_frame(len, seed);
        send_frame(f);
        return f;
    }
    // The next frame of ours that came out of the tap (the worker's TX), if one comes within ms.
    std::optional<std::vector<uint8_t>> recv_frame(int ms = kTimeoutMs) {
        auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
        std::vector<uint8_t> buf(65536);
        for (;;) {
            int left = static_cast<int>(
                std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()).count());
            pollfd pfd{pkt.get(), POLLIN, 0};
            if (left < 0 || ::poll(&pfd, 1, left) <= 0) return std::nullopt;
            sockaddr_ll from{};
            socklen_t fl = sizeof from;
            ssize_t n = ::recvfrom(pkt.get(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &fl);
            if (n < 14 || from.sll_pkttype == PACKET_OUTGOING) continue;
            if (((buf[12] << 8) | buf[13]) != kEtherType) continue;
            return std::vector<uint8_t>(buf.begin(), buf.begin() + n);
        }
    }
    // The bytes a used entry k of the RX ring says the device wrote into its one-descriptor buffer.
    std::vector<uint8_t> rx_used_bytes(uint16_t k) const {
        auto [id, len] = ring[kRx].used_elem(k);
        return get(rx_slot(static_cast<uint16_t>(id)), len);
    }
    // A frame the device spread over the used entries first.. (mergeable buffers), joined.
    std::vector<uint8_t> rx_used_bytes(uint16_t first, uint16_t n) const {
        std::vector<uint8_t> all;
        for (uint16_t k = first; k < first + n; k++) {
            auto part = rx_used_bytes(k);
            all.insert(all.end(), part.begin(), part.end());
        }
        return all;
    }
    // Used entry k of the RX ring: head k, holding frame f alone, after a
    // header without offloads. Call it in ASSERT_NO_FATAL_FAILURE.
    void expect_rx(uint16_t k, const std::vector<uint8_t>& f) const {
        ASSERT_TRUE(ring[kRx].wait_used(static_cast<uint16_t>(k + 1))) << "the frame never reached the RX ring";
        EXPECT_EQ(ring[kRx].used_elem(k), std::make_pair(uint32_t(k), uint32_t(net::kHeaderLen + f.size())));
        auto b = rx_used_bytes(k);
        expect_rx_header(b, 1);
        EXPECT_EQ(payload(b), f);
    }
    bool dirty(uint64_t page) const { return bitmap[page / 8] & (1u << (page % 8)); }
    std::set<uint64_t> dirty_pages() const {
        std::set<uint64_t> s;
        for (uint64_t pg = 0; pg < kMemSize / 4096; pg++)
            if (dirty(pg)) s.insert(pg);
        return s;
    }
};

}  // namespace minivmm::testing
