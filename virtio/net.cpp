#include "virtio/net.hpp"

#include <linux/if_tun.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <climits>
#include <cstring>

#include "vmm/error.hpp"
#include "vmm/guest_memory.hpp"
#include "vmm/io_bus.hpp"

namespace minivmm {

namespace {
// The largest frame a tap hands over: a 64 KiB GSO super-frame plus link
// header, after our virtio-net header.
constexpr size_t kMaxFrame = net::kHeaderLen + 65536 + 256;
// Frames moved per lock hold before the RX thread sends an interrupt and
// lets a reset in: bounds both interrupt latency and reset latency.
constexpr int kRxBatch = 64;
}  // namespace

void QueueStats::print(std::FILE* f, const char* name) const {
    std::fprintf(f, "  %s: %llu packets, %llu bytes, %llu notifications, %llu interrupts, %llu errors\n", name,
                 (unsigned long long)packets, (unsigned long long)bytes, (unsigned long long)notifications,
                 (unsigned long long)interrupts, (unsigned long long)errors);
}

VirtioNet::VirtioNet(const GuestMemory& mem, std::unique_ptr<Tap> tap, const Mac& mac)
    : mem_(mem), tap_(std::move(tap)), mac_(mac), rx_frame_(kMaxFrame) {
    // With VERSION_1 the header always has num_buffers: 12 bytes both ways.
    tap_->set_vnet_header_size(net::kHeaderLen);
    tap_->set_offload(0);
    wake_fd_ = Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_fd_) throw sys_error("eventfd");
    rx_thread_ = std::thread([this] { rx_loop(); });
}

VirtioNet::~VirtioNet() {
    quit_ = true;
    wake();
    rx_thread_.join();
}

uint64_t VirtioNet::features() const {
    using namespace net;
    return virtio::kFVersion1 | virtio::kFIndirectDesc | virtio::kFEventIdx | kCsum | kGuestCsum | kMac |
           kGuestTso4 | kGuestTso6 | kGuestEcn | kHostTso4 | kHostTso6 | kHostEcn | kMrgRxbuf | kStatus;
}

void VirtioNet::config_read(uint64_t off, uint8_t* data, uint32_t size) {
    // mac[6], status (link up), max_virtqueue_pairs (one pair).
    uint8_t cfg[10] = {};
    std::memcpy(cfg, mac_.data(), 6);
    le_store(cfg + 6, 2, 1);
    le_store(cfg + 8, 2, 1);
    for (uint32_t i = 0; i < size; i++) data[i] = off + i < sizeof cfg ? cfg[off + i] : 0;
}

void VirtioNet::wake() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_.get(), &one, sizeof one);
}

void VirtioNet::activate(uint64_t features, const std::vector<QueueConfig>& queues, VirtioTransport& t) {
    std::lock_guard g(dp_);
    features_ = features;
    transport_ = &t;
    active_ = true;
    for (uint16_t i = 0; i < 2; i++) {
        const QueueConfig& q = queues[i];
        if (!q.enabled) continue;  // a queue the driver does not use stays off
        queues_[i].emplace(mem_, q.size, q.desc, q.driver, q.device);
        queues_[i]->set_event_idx(features & virtio::kFEventIdx);
        if (!queues_[i]->valid()) return broken("queue " + std::to_string(i) + ": bad size or ring address");
    }
    // The tap may now hand us frames with partial checksums or GSO, as the
    // guest agreed to take them.
    unsigned off = 0;
    if (features & net::kGuestCsum) {
        off |= TUN_F_CSUM;
        if (features & net::kGuestTso4) off |= TUN_F_TSO4;
        if (features & net::kGuestTso6) off |= TUN_F_TSO6;
        if (features & net::kGuestEcn) off |= TUN_F_TSO_ECN;
    }
    tap_->set_offload(off);
    wake();
}

void VirtioNet::reset() {
    std::lock_guard g(dp_);
    active_ = false;
    transport_ = nullptr;
    features_ = 0;
    queues_[0].reset();
    queues_[1].reset();
    rx_len_ = 0;  // a frame held for buffers that will never come: dropped
    tap_->set_offload(0);
}

void VirtioNet::broken(const std::string& why) {
    // Called with dp_ held. The device stops until the driver resets it.
    active_ = false;
    if (transport_) transport_->mark_broken(why);
}

void VirtioNet::interrupt(uint16_t q) {
    if (queues_[q]->need_interrupt() && transport_->signal_queue(q)) stats_[q].interrupts++;
}

void VirtioNet::notify(uint16_t q) {
    stats_[q].notifications++;
    if (q == net::kRxQueue) {
        wake();  // buffers for a frame that waits, or the first ones
        return;
    }
    std::lock_guard g(dp_);
    if (active_ && queues_[net::kTxQueue]) tx_all();
}

void VirtioNet::tx_all() {
    SplitQueue& q = *queues_[net::kTxQueue];
    QueueStats& st = stats_[net::kTxQueue];
    std::vector<iovec> iov;
    for (;;) {
        Chain c;
        std::string why;
        auto r = q.pop(c, why);
        if (r == SplitQueue::Pop::Broken) return broken("tx: " + why);
        if (r == SplitQueue::Pop::Empty) {
            if (q.enable_notify()) continue;  // more arrived while we looked
            break;
        }
        // A send buffer is read-only for the device and starts with the header.
        bool ok = !c.writable_bytes && c.readable_bytes >= net::kHeaderLen && c.readable_bytes <= kMaxFrame &&
                  c.segs.size() <= IOV_MAX;
        if (ok) {
            iov.clear();
            for (const Segment& s : c.segs) iov.push_back({mem_.ptr(s.gpa, s.len), s.len});
            ssize_t n = ::writev(tap_->fd(), iov.data(), static_cast<int>(iov.size()));
            // The tap drops rather than blocks when its queue is full; a bad
            // header (GSO the kernel refuses) is the guest's error: counted.
            ok = n == static_cast<ssize_t>(c.readable_bytes);
        }
        if (ok) {
            st.packets++;
            st.bytes += c.readable_bytes - net::kHeaderLen;
        } else {
            st.errors++;
        }
        q.push_used(c.head, 0);
    }
    interrupt(net::kTxQueue);
}

VirtioNet::Rx VirtioNet::rx_one() {
    SplitQueue& q = *queues_[net::kRxQueue];
    bool mergeable = features_ & net::kMrgRxbuf;
    // Enough buffers for the whole frame, or none taken: a frame is never
    // truncated. Without mergeable buffers one chain must hold it all.
    std::vector<Chain> chains;
    uint64_t room = 0;
    while (room < rx_len_) {
        Chain c;
        std::string why;
        auto r = q.pop(c, why);
        if (r == SplitQueue::Pop::Broken) return broken("rx: " + why), Rx::Broken;
        if (r == SplitQueue::Pop::Empty) {
            q.unpop(static_cast<uint16_t>(chains.size()));
            return Rx::NoBuffers;
        }
        if (c.readable_bytes) return broken("rx: buffer with device-readable parts"), Rx::Broken;
        room += c.writable_bytes;
        chains.push_back(std::move(c));
        if (!mergeable) break;
    }
    if (room < rx_len_) {
        // Only without mergeable buffers: the driver posted a buffer too small
        // for a frame it agreed to take. Drop the frame, keep the buffer.
        q.unpop(1);
        stats_[net::kRxQueue].errors++;
        return Rx::Dropped;
    }
    le_store(&rx_frame_[10], 2, chains.size());  // num_buffers
    size_t done = 0;
    for (const Chain& c : chains) {
        uint32_t written = 0;
        for (const Segment& s : c.segs) {
            if (done == rx_len_) break;
            size_t n = std::min<size_t>(s.len, rx_len_ - done);
            std::memcpy(mem_.ptr(s.gpa, s.len), &rx_frame_[done], n);
            done += n;
            written += static_cast<uint32_t>(n);
        }
        q.push_used(c.head, written);
    }
    stats_[net::kRxQueue].packets++;
    stats_[net::kRxQueue].bytes += rx_len_ - net::kHeaderLen;
    return Rx::Delivered;
}

void VirtioNet::rx_loop() {
    bool want_frames = false;  // poll the tap: active, with no frame waiting for buffers
    while (!quit_) {
        pollfd fds[2] = {{wake_fd_.get(), POLLIN, 0}, {tap_->fd(), short(want_frames ? POLLIN : 0), 0}};
        if (poll(fds, 2, -1) < 0) continue;
        uint64_t n;
        if (fds[0].revents) [[maybe_unused]] ssize_t r = ::read(wake_fd_.get(), &n, sizeof n);
        std::lock_guard g(dp_);
        want_frames = false;
        if (!active_ || !queues_[net::kRxQueue]) continue;
        SplitQueue& q = *queues_[net::kRxQueue];
        for (int i = 0; i < kRxBatch; i++) {
            if (!rx_len_) {
                ssize_t got = ::read(tap_->fd(), rx_frame_.data(), rx_frame_.size());
                if (got < static_cast<ssize_t>(net::kHeaderLen)) {
                    want_frames = true;  // EAGAIN: nothing more for now
                    break;
                }
                rx_len_ = static_cast<size_t>(got);
            }
            Rx r = rx_one();
            if (r == Rx::Broken) break;
            if (r == Rx::NoBuffers) {
                // Ask for a kick, unless buffers arrived meanwhile.
                if (q.enable_notify()) {
                    i--;
                    continue;
                }
                break;
            }
            rx_len_ = 0;
            if (i == kRxBatch - 1) want_frames = true;
        }
        if (active_) interrupt(net::kRxQueue);
        if (active_ && !rx_len_) q.disable_notify();
    }
}

void VirtioNet::print_stats(std::FILE* f, const std::string& label) const {
    std::fprintf(f, "minivmm: %s (tap %s):\n", label.c_str(), tap_->name().c_str());
    stats_[net::kRxQueue].print(f, "rx");
    stats_[net::kTxQueue].print(f, "tx");
}

}  // namespace minivmm
