// Moving frames between a tap and virtio-net queues: the one implementation
// shared by minivmm's own datapath (vhost=off) and the in-process vhost
// worker. Each call does a bounded amount of work and says why it stopped.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "virtio/virtqueue.hpp"

namespace minivmm {

namespace net {
// Feature bits (5.1.3).
constexpr uint64_t kCsum = 1ull << 0, kGuestCsum = 1ull << 1, kMac = 1ull << 5, kGuestTso4 = 1ull << 7,
                   kGuestTso6 = 1ull << 8, kGuestEcn = 1ull << 9, kHostTso4 = 1ull << 11, kHostTso6 = 1ull << 12,
                   kHostEcn = 1ull << 13, kMrgRxbuf = 1ull << 15, kStatus = 1ull << 16, kCtrlVq = 1ull << 17,
                   kCtrlRx = 1ull << 18, kMq = 1ull << 22, kCtrlMacAddr = 1ull << 23;
constexpr uint32_t kHeaderLen = 12;  // struct virtio_net_hdr_v1, num_buffers included
constexpr uint16_t kRxQueue = 0, kTxQueue = 1;
// The largest frame a tap hands over: a 64 KiB GSO super-frame plus link
// header, after the virtio-net header.
constexpr size_t kMaxFrame = kHeaderLen + 65536 + 256;
}  // namespace net

// Counters a user reads with --stats or SIGUSR1; updated by the datapath.
struct QueueStats {
    std::atomic<uint64_t> packets{0}, bytes{0}, notifications{0}, interrupts{0}, errors{0};
    void print(std::FILE* f, const char* name) const;
};

using WriteLog = std::function<void(uint64_t gpa, uint64_t len)>;

enum class Work {
    Idle,        // nothing left: the queue (TX) or the tap (RX) is empty
    More,        // the budget ran out with work left
    NeedBuffers, // RX: a frame waits for the driver to post buffers
    Broken,      // the driver broke the ring's rules; `why` says how
};

// Sends up to budget frames from the TX queue to the port's fd. Frames the
// port refuses (a bad header) are the guest's error: dropped and counted.
// fd_header: the fd takes the virtio-net header in front of each frame (a
// tap); otherwise it is stripped here (a raw socket).
Work net_tx(SplitQueue& q, const MemView& mem, int fd, QueueStats& st, unsigned budget, std::string& why,
            bool fd_header = true);

// Receives frames from the port's fd into the RX queue. Keeps a frame that
// found too few buffers until the next call, so nothing is lost or truncated.
// fd_header: frames arrive with a virtio-net header; otherwise one saying
// "nothing to do" (no checksum or GSO) is put in front here.
class NetRx {
public:
    NetRx() : frame_(net::kMaxFrame) {}
    Work run(SplitQueue& q, const MemView& mem, int fd, bool mergeable, QueueStats& st, unsigned budget,
             std::string& why, const WriteLog& log = {}, bool fd_header = true);
    void drop() { len_ = 0; }  // a reset: the frame has nowhere to go

private:
    enum class One { Delivered, NoBuffers, Dropped, Broken };
    One deliver(SplitQueue& q, const MemView& mem, bool mergeable, QueueStats& st, std::string& why,
                const WriteLog& log);
    std::vector<uint8_t> frame_;
    size_t len_ = 0;
};

}  // namespace minivmm
