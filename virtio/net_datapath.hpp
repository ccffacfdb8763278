// Moving frames between a tap and virtio-net queues: the one implementation
// shared by minivmm's own datapath (vhost=off) and the in-process vhost
// worker. Each call does a bounded amount of work and says why it stopped.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <sys/uio.h>

#include "virtio/net_features.hpp"
#include "virtio/queue_stats.hpp"
#include "virtio/virtqueue.hpp"

namespace minivmm {

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

// How NetRx::run receives: what the driver negotiated, what the fd carries.
struct RxOptions {
    bool mergeable = false;  // VIRTIO_NET_F_MRG_RXBUF: a frame may span several chains
    // Frames arrive with a virtio-net header; otherwise one saying "nothing
    // to do" (no checksum or GSO) is put in front here.
    bool fd_header = true;
    unsigned budget = 64;  // frames per call
    WriteLog log;          // told of every guest byte written (dirty logging), if set
};

// Receives frames from the port's fd into the RX queue. Keeps a frame that
// found too few buffers until the next call, so nothing is lost or truncated.
//
// Buffers are taken from the ring ahead of need, as many as the largest
// frame could fill, so the fd writes each frame straight into the guest's
// buffers (one copy, as vhost-net makes). Those not filled stay taken for
// the next frame; release() gives them back before the ring changes hands.
class NetRx {
public:
    Work run(SplitQueue& q, const MemView& mem, int fd, const RxOptions& opt, QueueStats& st, std::string& why);
    // Before the ring's position is read (a vhost backend stops): the
    // buffers taken ahead go back, to be taken again from the ring.
    void release(SplitQueue& q);
    // A reset: the pending frame has nowhere to go, the taken buffers no ring.
    void drop();

private:
    enum class Delivery { Delivered, NoBuffers, Dropped, Broken };
    bool take(SplitQueue& q, size_t need, bool mergeable, std::string& why);
    bool prepare_direct_read(const MemView& mem, size_t hdr);
    Delivery deliver_pending(SplitQueue& q, const MemView& mem, const RxOptions& opt, QueueStats& st,
                             std::string& why);
    size_t chains_for(size_t len) const;
    void forget_spares();
    static size_t length_with_header(ssize_t got, size_t hdr, uint8_t* h);
    void publish_frame(SplitQueue& q, const MemView& mem, size_t n, size_t len, uint8_t* frame, bool copy,
                       QueueStats& st, const WriteLog& log);
    std::deque<Chain> spare_;  // taken from the ring, oldest first, none filled yet
    uint64_t spare_room_ = 0;
    std::vector<iovec> iov_;
    // A frame read before there was room for it. Made at the first such
    // frame, and left unwritten: its pages are resident only once a frame
    // is read into them (most rings never need it; a TX ring's NetRx never).
    std::unique_ptr<uint8_t[]> pending_;
    size_t pending_len_ = 0;
};

}  // namespace minivmm
