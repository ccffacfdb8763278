// Moving frames between a tap and virtio-net queues: the one implementation
// shared by minivmm's own datapath (vhost=off) and the in-process vhost
// worker. Each call does a bounded amount of work and says why it stopped.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include <sys/uio.h>

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
//
// Buffers are taken from the ring ahead of need, as many as the largest
// frame could fill, so the fd writes each frame straight into the guest's
// buffers (one copy, as vhost-net makes). Those not filled stay taken for
// the next frame; release() gives them back before the ring changes hands.
class NetRx {
public:
    NetRx() : frame_(net::kMaxFrame) {}
    Work run(SplitQueue& q, const MemView& mem, int fd, bool mergeable, QueueStats& st, unsigned budget,
             std::string& why, const WriteLog& log = {}, bool fd_header = true);
    // Before the ring's position is read (a vhost backend stops): the
    // buffers taken ahead go back, to be taken again from the ring.
    void release(SplitQueue& q);
    // A reset: the held frame has nowhere to go, the taken buffers no ring.
    void drop();

private:
    enum class One { Delivered, NoBuffers, Dropped, Broken };
    bool take(SplitQueue& q, size_t need, bool mergeable, std::string& why);
    bool aim(const MemView& mem, size_t hdr);
    One deliver(SplitQueue& q, const MemView& mem, bool mergeable, QueueStats& st, std::string& why,
                const WriteLog& log);
    size_t chains_for(size_t len) const;
    void forget_spares();
    static size_t framed(ssize_t got, size_t hdr, uint8_t* h);
    void complete(SplitQueue& q, const MemView& mem, size_t n, size_t len, uint8_t* frame, bool copy,
                  QueueStats& st, const WriteLog& log);
    std::deque<Chain> spare_;  // taken from the ring, oldest first, none filled yet
    uint64_t spare_room_ = 0;
    std::vector<iovec> iov_;
    std::vector<uint8_t> frame_;  // a frame read before there was room for it
    size_t len_ = 0;
};

}  // namespace minivmm
