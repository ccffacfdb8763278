// make bench's datapath microbenchmark, no VM needed. This thread plays a
// guest's virtio-net driver on split rings in plain memory; a vhost backend
// moves the frames between those rings and a tap in a private network
// namespace (tools/datapath/rig.hpp): minivmm's worker threads (Worker*) and
// the kernel's vhost-net (Kernel*, where /dev/vhost-net exists; elsewhere its
// rows fail with "no /dev/vhost-net"), through the same driver, tap and
// frames. Frames of 64 B, 1500 B (a full 1500-byte IP packet) and 64 KiB
// (TSO: the virtio-net header carries GSO), as packets/s and Gbit/s, next to
// a plain memcpy of the same bytes, the ceiling for a datapath that copies
// each frame once.
//
// TX, guest->tap: the host stack drops what the backend writes at IP input
// (it is addressed to another host), so the figure is mostly the backend's.
// RX, tap->guest: this thread is also the host. 64 B and 1500 B frames go
// into the tap through a packet socket, a bounded window ahead of what the
// driver has received, so the tap's queue never overflows. A packet socket
// cannot hand the tap a GSO frame (the kernel segments "dodgy" GSO frames
// for a device like the tap), so 64 KiB frames come from where a guest gets
// them: a TCP stream from the host's stack, which this driver answers (SYN,
// then ACKs) as a guest's TCP would; the host's TCP work counts against it.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/if_packet.h>
#include <sched.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "tools/datapath/cpu.hpp"
#include "tools/datapath/frames.hpp"
#include "tools/datapath/rig.hpp"

using namespace bench;

namespace {
constexpr uint64_t kBatch = 64;  // frames per benchmark iteration
// Untimed frames before the TCP stream's timed ones: past slow start, where
// the host's TCP sends frames of about 64 KiB.
constexpr uint64_t kTcpWarm = 512;

// The header a guest puts in front of a frame it sends: above the MTU, TSO
// with the TCP checksum left to the host, as Linux sends TCP.
NetHdr send_header(size_t len) {
    NetHdr h{};
    if (len > 1514) h = {kNeedsCsum, kGsoTcpv4, kEthIpTcp, kMss, 14 + 20, 16, 0};
    return h;
}

// A frame of len bytes from one made-up host to another (never this one).
std::vector<uint8_t> filler_frame(size_t len) {
    const Endpoint a{{0x02, 0, 0, 0, 0, 0x11}, 0x0a080002, 40000}, b{{0x02, 0, 0, 0, 0, 0x12}, 0x0a080001, 5201};
    return tcp_frame(a, b, 1, 1, kAck | kPsh, len - kEthIpTcp, {}, len > 1514);
}

// The driver's side of the TX ring: a send slot per head.
class TxQueue {
public:
    explicit TxQueue(Rig& r) : r_(r), d_(r.ring(kTx)) {
        for (uint16_t h = 0; h < kQSize; h++) free_.push_back(h);
        r.start(kTx);
    }
    // Writes [header | frame] into head h's slot and points its descriptor there.
    void fill(uint16_t h, const NetHdr& hdr, const std::vector<uint8_t>& frame) {
        uint64_t gpa = kTxBufs + kTxSlot * h;
        std::memcpy(r_.mem(gpa), &hdr, kHdrLen);
        std::memcpy(r_.mem(gpa + kHdrLen), frame.data(), frame.size());
        d_.desc(h, gpa, static_cast<uint32_t>(kHdrLen + frame.size()), 0);
    }
    // Offers every free head (their slots filled before), kicking if asked.
    void offer_all() {
        uint16_t old = d_.avail_idx;
        for (uint16_t h : free_) d_.add(h);
        free_.clear();
        if (d_.publish_since(old)) r_.kick(kTx);
    }
    // Sends one frame now, if a head is free.
    void send(const NetHdr& hdr, const std::vector<uint8_t>& frame) {
        reap();
        if (free_.empty()) return;  // a later ACK covers this one
        uint16_t h = free_.back();
        free_.pop_back();
        fill(h, hdr, frame);
        uint16_t old = d_.avail_idx;
        d_.add(h);
        if (d_.publish_since(old)) r_.kick(kTx);
    }
    // Takes back the heads the device has sent; returns how many.
    uint64_t reap() {
        uint64_t n = 0;
        UsedElem e;
        for (; d_.next_used(e); n++) free_.push_back(static_cast<uint16_t>(e.first));
        return n;
    }
    GuestRing& ring() { return d_; }

private:
    Rig& r_;
    GuestRing& d_;
    std::vector<uint16_t> free_;
};

// The driver's side of the RX ring: every head a 4 KiB buffer, all posted,
// each posted again as soon as read (mergeable buffers, so a frame may span several).
class RxQueue {
public:
    explicit RxQueue(Rig& r) : r_(r), d_(r.ring(kRx)) {
        for (uint16_t i = 0; i < kQSize; i++) {
            d_.desc(i, kRxBufs + kRxBufLen * i, kRxBufLen, minivmm::testing::kWrite);
            d_.add(i);
        }
        d_.publish();
        r.start(kRx);
    }
    // Takes what the device used, calling on_frame(frame, length) for each
    // whole frame; its first buffer is posted again only after that.
    // Returns whether anything came.
    template <typename F>
    bool take(F&& on_frame) {
        uint16_t old = d_.avail_idx;
        UsedElem e;
        bool got = false;
        while (d_.next_used(e)) {
            auto& [id, len] = e;
            got = true;
            if (left_ == 0) {  // a frame's first buffer: its header says how many buffers it has
                NetHdr h;
                std::memcpy(&h, buffer(id), kHdrLen);
                left_ = std::max<uint16_t>(h.num_buffers, 1);
                first_ = static_cast<uint16_t>(id);
                len_ = 0;
                len -= std::min(len, kHdrLen);
            } else {
                d_.add(static_cast<uint16_t>(id));
            }
            len_ += len;
            if (--left_ == 0) {
                on_frame(buffer(first_) + kHdrLen, len_);
                d_.add(first_);
            }
        }
        if (d_.publish_since(old)) r_.kick(kRx);
        return got;
    }
    bool arm() { return d_.arm(); }

private:
    const uint8_t* buffer(uint32_t head) { return r_.mem(kRxBufs + kRxBufLen * head); }
    Rig& r_;
    GuestRing& d_;
    uint16_t left_ = 0, first_ = 0;
    size_t len_ = 0;
};

// Guest->tap: every head's slot holds the same frame, written once, so the
// loop measures moving frames, not making them; the ring is kept full.
class TxDriver {
public:
    TxDriver(Rig& r, size_t len) : r_(r), tx_(r), len_(len) {
        auto frame = filler_frame(len);
        for (uint16_t h = 0; h < kQSize; h++) tx_.fill(h, send_header(len), frame);
    }
    bool move(uint64_t n, std::string& why) {
        for (uint64_t target = done_ + n; done_ < target;) {
            tx_.offer_all();
            uint64_t got = tx_.reap();
            done_ += got;
            if (!got && tx_.ring().arm() && !r_.wait(kTx, why)) return false;
        }
        return true;
    }
    uint64_t frames() const { return done_; }
    uint64_t bytes() const { return done_ * len_; }

private:
    Rig& r_;
    TxQueue tx_;
    size_t len_;
    uint64_t done_ = 0;
};

// Tap->guest, 64 B and 1500 B frames, written into the tap by a packet socket.
class PacketRxDriver {
public:
    PacketRxDriver(Rig& r, size_t len)
        : r_(r), rx_(r), sock_(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0)) {  // protocol 0: sends only
        int one = 1, big = 16 << 20;
        if (setsockopt(sock_.fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) fail("PACKET_VNET_HDR");
        // Straight into the tap's queue: no qdisc between this "host" and the tap.
        if (setsockopt(sock_.fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0) fail("PACKET_QDISC_BYPASS");
        setsockopt(sock_.fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
        auto frame = filler_frame(len);
        NetHdr h{};
        pkt_.resize(kSocketHdrLen + len);
        std::memcpy(pkt_.data(), &h, kSocketHdrLen);
        std::memcpy(pkt_.data() + kSocketHdrLen, frame.data(), len);
    }
    bool move(uint64_t n, std::string& why) {
        for (uint64_t target = frames_ + n; frames_ < target;)
            if (!step(why)) return false;
        return true;
    }
    // Takes every frame already sent, so none is left in the tap.
    bool drain(std::string& why) {
        while (frames_ < sent_)
            if (!step(why)) return false;
        return true;
    }
    uint64_t frames() const { return frames_; }
    uint64_t bytes() const { return bytes_; }

private:
    // In flight at most: well under the tap's queue (500 frames) and the RX ring.
    static constexpr uint64_t kWindow = 128;
    bool step(std::string& why) {
        while (sent_ - frames_ < kWindow && send()) sent_++;
        if (rx_.take([this](const uint8_t*, size_t len) { frames_++, bytes_ += len; })) return true;
        if (sent_ == frames_) {
            why = std::string("the packet socket sends nothing: ") + std::strerror(errno);
            return false;
        }
        return !rx_.arm() || r_.wait(kRx, why);
    }
    bool send() {
        sockaddr_ll to{};
        to.sll_family = AF_PACKET;
        to.sll_protocol = htons(0x0800);
        to.sll_ifindex = g_tap.ifindex;
        // Never block: a full socket buffer waits for the worker, which needs this thread to go on.
        return ::sendto(sock_.fd, pkt_.data(), pkt_.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&to),
                        sizeof to) == static_cast<ssize_t>(pkt_.size());
    }
    Rig& r_;
    RxQueue rx_;
    Fd sock_;
    std::vector<uint8_t> pkt_;
    uint64_t sent_ = 0, frames_ = 0, bytes_ = 0;
};

// Tap->guest, 64 KiB frames: a TCP stream from the host's stack to the
// simulated guest, which answers the SYN (with window scaling, so the window
// is not what limits) and acknowledges what it received after each batch.
class TcpRxDriver {
public:
    TcpRxDriver(Rig& r) : r_(r), rx_(r), tx_(r), sock_(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)),
                          chunk_(1 << 20) {
        int big = 8 << 20;
        setsockopt(sock_.fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big);
        linger no{1, 0};  // closing resets: nobody is left to answer a FIN
        setsockopt(sock_.fd, SOL_SOCKET, SO_LINGER, &no, sizeof no);
        auto to = inet(kGuest.ip);
        to.sin_port = htons(kGuest.port);
        if (::connect(sock_.fd, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0 && errno != EINPROGRESS)
            fail("connect");
    }
    bool connect(std::string& why) {
        pollfd p{sock_.fd, POLLOUT, 0};
        while (::poll(&p, 1, 0) == 0)
            if (!step(why, false)) return false;
        return true;
    }
    bool move(uint64_t n, std::string& why) {
        for (uint64_t target = frames_ + n; frames_ < target;)
            if (!step(why, true)) return false;
        return true;
    }
    uint64_t frames() const { return frames_; }
    uint64_t bytes() const { return bytes_; }

private:
    bool step(std::string& why, bool pump) {
        while (pump && ::send(sock_.fd, chunk_.data(), chunk_.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
        }
        if (pump && errno != EAGAIN) {
            why = std::string("host TCP send: ") + std::strerror(errno);
            return false;
        }
        bool got = rx_.take([this](const uint8_t* f, size_t len) { seen(f, len); });
        if (rcv_nxt_ != acked_) {
            tx_.send({}, tcp_frame(kGuest, host_, kIss + 1, rcv_nxt_, kAck, 0));
            acked_ = rcv_nxt_;
        }
        return got || !rx_.arm() || r_.wait(kRx, why, sock_.fd, POLLOUT);
    }
    void seen(const uint8_t* f, size_t len) {
        TcpSeen t = parse_tcp(f, std::min<size_t>(len, kRxBufLen - kHdrLen));
        if (!t.tcp || t.dst.port != kGuest.port) return;
        if ((t.flags & (kSyn | kAck)) == kSyn) {
            host_ = t.src;
            rcv_nxt_ = acked_ = t.seq + 1;
            const std::vector<uint8_t> mss_ws = {2, 4, 1460 >> 8, 1460 & 0xff, 1, 3, 3, 7};  // MSS 1460, scale 2^7
            tx_.send({}, tcp_frame(kGuest, host_, kIss, rcv_nxt_, kSyn | kAck, 0, mss_ws));
        } else if (t.payload) {
            if (t.seq == rcv_nxt_) rcv_nxt_ += t.payload;  // else a retransmission: ACKed again
            frames_++;
            bytes_ += len;
        }
    }
    static constexpr uint32_t kIss = 1000;
    Rig& r_;
    RxQueue rx_;
    TxQueue tx_;
    Fd sock_;
    std::vector<uint8_t> chunk_;
    Endpoint host_{};
    uint32_t rcv_nxt_ = 0, acked_ = 0;
    uint64_t frames_ = 0, bytes_ = 0;
};

void report(benchmark::State& state, uint64_t frames, uint64_t bytes) {
    using benchmark::Counter;
    state.SetItemsProcessed(static_cast<int64_t>(frames));
    state.SetBytesProcessed(static_cast<int64_t>(bytes));
    state.counters["pps"] = Counter(static_cast<double>(frames), Counter::kIsRate);
    state.counters["gbps"] = Counter(bytes * 8 / 1e9, Counter::kIsRate);
    state.counters["frame_bytes"] = frames ? static_cast<double>(bytes) / frames : 0;
}

// Moves `warm` frames untimed (first faults and wake-ups; for the TCP
// stream, slow start), then kBatch frames per iteration, and reports the
// timed ones only.
template <typename Driver>
void run(benchmark::State& state, Driver& drv, uint64_t warm) {
    std::string why;
    if (!drv.move(warm, why)) return state.SkipWithError(("warm-up: " + why).c_str());
    const uint64_t frames = drv.frames(), bytes = drv.bytes(), cpu = backend_cpu_ns();
    for (auto _ : state) {
        if (!drv.move(kBatch, why)) {
            state.SkipWithError(why.c_str());
            break;
        }
    }
    const uint64_t moved = drv.frames() - frames;
    report(state, moved, drv.bytes() - bytes);
    // The backend's threads' CPU time per frame: its cost, whatever the
    // scheduler let the wall-clock rate be.
    state.counters["backend_cpu_ns"] = moved ? static_cast<double>(backend_cpu_ns() - cpu) / moved : 0;
}

// The backend's fixture, or none (and the row says why) where it cannot be had.
std::unique_ptr<Rig> make_rig(benchmark::State& state, Backend b) {
    std::string why = unavailable(b);
    if (why.empty()) {
        try {
            return std::make_unique<Rig>(b);
        } catch (const std::exception& e) {
            why = e.what();
        }
    }
    state.SkipWithError(why.c_str());
    return nullptr;
}

void Tx(benchmark::State& state, Backend b) {
    const size_t len = static_cast<size_t>(state.range(0));
    auto rig = make_rig(state, b);
    if (!rig) return;
    TxDriver drv(*rig, len);
    uint64_t before = tap_rx_packets();
    run(state, drv, kBatch);
    // Each frame the device completed must have reached the tap (one with a
    // header the tap refused is completed too, and counted as an error).
    if (tap_rx_packets() - before < drv.frames()) state.SkipWithError("the tap did not take every frame");
}

void Rx(benchmark::State& state, Backend b) {
    const size_t len = static_cast<size_t>(state.range(0));
    auto rig = make_rig(state, b);
    if (!rig) return;
    std::string why;
    if (len > 1514) {
        TcpRxDriver drv(*rig);
        if (!drv.connect(why)) return state.SkipWithError(("TCP handshake: " + why).c_str());
        return run(state, drv, kTcpWarm);
    }
    PacketRxDriver drv(*rig, len);
    run(state, drv, kBatch);
    if (drv.bytes() != drv.frames() * len) state.SkipWithError("frames arrived with the wrong length");
    if (!drv.drain(why)) state.SkipWithError(why.c_str());
}

// The ceiling: each frame copied once from its slot (the same slots as TX)
// into one buffer, as into a recycled socket buffer, with nothing else to do.
void Memcpy(benchmark::State& state) {
    const size_t len = static_cast<size_t>(state.range(0));
    std::vector<uint8_t> src(kTxSlot * kQSize, 1), dst(len, 2);
    uint64_t frames = 0;
    benchmark::DoNotOptimize(dst.data());
    for (auto _ : state) {
        for (uint64_t i = 0; i < kBatch; i++, frames++)
            std::memcpy(dst.data(), src.data() + kTxSlot * (frames % kQSize), len);
        benchmark::ClobberMemory();
    }
    report(state, frames, frames * len);
}

// 64 B, a full 1500-byte IP packet in its Ethernet frame, 64 KiB (TSO).
// Real time: the work is done on the worker's threads, not this one.
void frame_sizes(benchmark::internal::Benchmark* b) { b->Arg(64)->Arg(1514)->Arg(65536)->UseRealTime(); }
}  // namespace

int main(int argc, char** argv) {
    // Named <backend><direction>/<frame bytes>, as tools/bench/datapath_table.py reads them.
    for (Backend b : {Backend::Worker, Backend::Kernel}) {
        std::string name = b == Backend::Worker ? "Worker" : "Kernel";
        benchmark::RegisterBenchmark((name + "Tx").c_str(), Tx, b)->Apply(frame_sizes);
        benchmark::RegisterBenchmark((name + "Rx").c_str(), Rx, b)->Apply(frame_sizes);
    }
    benchmark::RegisterBenchmark("Memcpy", Memcpy)->Apply(frame_sizes);
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
    // Before any thread exists, so every thread (the worker's too) is in it;
    // the namespace and the tap go away with the process.
    if (::unshare(CLONE_NEWNET) != 0) {
        std::fprintf(stderr, "bench_datapath: unshare(CLONE_NEWNET): %s (needs root)\n", std::strerror(errno));
        return 1;
    }
    // No IPv6 chatter from the tap: every frame on it is the benchmark's.
    std::ofstream("/proc/sys/net/ipv6/conf/default/disable_ipv6") << "1";
    try {
        open_tap();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_datapath: tap %s: %s\n", kTapName, e.what());
        return 1;
    }
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
