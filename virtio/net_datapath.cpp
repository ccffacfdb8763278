#include "virtio/net_datapath.hpp"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "vmm/guest_memory.hpp"
#include "vmm/bytes.hpp"

namespace minivmm {

namespace {
// Adds iovecs for the segments' bytes past the first `skip` (a header may
// span segments) until `room` reaches `want`; false if that needs more
// than IOV_MAX of them.
bool add_iov(std::vector<iovec>& iov, const MemView& mem, const std::vector<Segment>& segs, size_t& skip,
             size_t& room, size_t want) {
    for (const Segment& s : segs) {
        if (room >= want) return true;
        size_t d = std::min<size_t>(skip, s.len);
        skip -= d;
        if (s.len == d) continue;
        if (iov.size() == IOV_MAX) return false;
        iov.push_back({mem.ptr(s.gpa, s.len) + d, s.len - d});
        room += s.len - d;
    }
    return true;
}
}  // namespace

Work net_tx(SplitQueue& q, const MemView& mem, int fd, QueueStats& st, unsigned budget, std::string& why,
            bool fd_header) {
    std::vector<iovec> iov;
    for (unsigned i = 0; i < budget; i++) {
        Chain c;
        auto r = q.pop(c, why);
        if (r == SplitQueue::Pop::Broken) return Work::Broken;
        if (r == SplitQueue::Pop::Empty) return Work::Idle;
        // A send buffer is read-only for the device and starts with the
        // header, with a frame after it: a header alone is nothing to send
        // (a write of nothing sends nothing, and a tap refuses it).
        bool ok = !c.writable_bytes && c.readable_bytes > net::kHeaderLen && c.readable_bytes <= net::kMaxFrame &&
                  c.segs.size() <= IOV_MAX;
        if (ok) {
            iov.clear();
            size_t skip = fd_header ? 0 : net::kHeaderLen, room = 0;
            add_iov(iov, mem, c.segs, skip, room, SIZE_MAX);  // fits: at most IOV_MAX segments
            // The port drops rather than blocks when its queue is full; a bad
            // header (GSO the kernel refuses) is the guest's error: counted.
            size_t want = c.readable_bytes - (fd_header ? 0 : net::kHeaderLen);
            ok = ::writev(fd, iov.data(), static_cast<int>(iov.size())) == static_cast<ssize_t>(want);
        }
        if (ok) {
            st.packets++;
            st.bytes += c.readable_bytes - net::kHeaderLen;
        } else {
            st.errors++;
        }
        q.push_used(c.head, 0);
    }
    return Work::More;
}

void NetRx::release(SplitQueue& q) {
    q.unpop(static_cast<uint16_t>(spare_.size()));
    forget_spares();
}

void NetRx::drop() {
    pending_len_ = 0;
    pending_.reset();  // a reset: the next driver may never need it
    forget_spares();
}

void NetRx::forget_spares() {
    spare_.clear();
    spare_room_ = 0;
}

// Takes chains until the spare ones can hold `need` bytes or the ring is
// empty. Without mergeable buffers a frame must fit one chain: one is taken.
bool NetRx::take(SplitQueue& q, size_t need, bool mergeable, std::string& why) {
    while (spare_room_ < need && (mergeable || spare_.empty())) {
        Chain c;
        auto r = q.pop(c, why);
        if (r == SplitQueue::Pop::Broken) return false;
        if (r == SplitQueue::Pop::Empty) break;
        if (c.readable_bytes) {
            why = "receive buffer with device-readable parts";
            return false;
        }
        spare_room_ += c.writable_bytes;
        spare_.push_back(std::move(c));
    }
    return true;
}

// Points iov_ at the spare buffers, past the hdr bytes of a header we write
// ourselves. Only with room for the largest frame: the fd would cut a
// longer one short. The header's own writes need it in one segment.
bool NetRx::prepare_direct_read(const MemView& mem, size_t hdr) {
    if (spare_room_ < net::kMaxFrame || spare_.front().segs.front().len < net::kHeaderLen) return false;
    iov_.clear();
    size_t skip = hdr, room = 0, want = net::kMaxFrame - hdr;
    for (const Chain& c : spare_)
        if (!add_iov(iov_, mem, c.segs, skip, room, want)) return false;
    return room >= want;
}

// How many spare chains a frame of len bytes fills (they hold it all).
size_t NetRx::chains_for(size_t len) const {
    size_t n = 0;
    for (uint64_t room = 0; room < len;) room += spare_[n++].writable_bytes;
    return n;
}

// Hands the first n spare chains, which hold a frame of len bytes, to the
// driver. The frame starts at `frame`: in our bounce buffer, copied into
// the chains here (copy), or already in them, put there by the fd. Either
// way its header learns how many buffers it spans.
void NetRx::publish_frame(SplitQueue& q, const MemView& mem, size_t n, size_t len, uint8_t* frame, bool copy,
                          QueueStats& st, const WriteLog& log) {
    le_store(frame + 10, 2, n);  // num_buffers
    size_t done = 0;
    for (size_t k = 0; k < n; k++) {
        const Chain& c = spare_[k];
        uint32_t written = 0;
        for (const Segment& s : c.segs) {
            if (done == len) break;
            size_t m = std::min<size_t>(s.len, len - done);
            if (copy) std::memcpy(mem.ptr(s.gpa, s.len), frame + done, m);
            if (log) log(s.gpa, m);
            done += m;
            written += static_cast<uint32_t>(m);
        }
        q.add_used(c.head, written);
        spare_room_ -= c.writable_bytes;
    }
    q.publish_used();  // all of the frame's buffers at once
    spare_.erase(spare_.begin(), spare_.begin() + static_cast<std::ptrdiff_t>(n));
    st.packets++;
    st.bytes += len - net::kHeaderLen;
}

// The pending frame, copied into buffers: enough for all of it, or it
// waits. A frame is never truncated.
NetRx::Delivery NetRx::deliver_pending(SplitQueue& q, const MemView& mem, const RxOptions& opt, QueueStats& st,
                                       std::string& why) {
    if (!take(q, pending_len_, opt.mergeable, why)) return Delivery::Broken;
    if (spare_room_ < pending_len_) {
        if (opt.mergeable || spare_.empty()) return Delivery::NoBuffers;
        // The driver posted a buffer too small for a frame it agreed to take
        // (no mergeable buffers): the frame is dropped, the buffer kept.
        st.errors++;
        return Delivery::Dropped;
    }
    publish_frame(q, mem, chains_for(pending_len_), pending_len_, pending_.get(), true, st, opt.log);
    return Delivery::Delivered;
}

// A read of got bytes after the hdr bytes at h that we put in front
// ourselves: the frame's length, header included, or 0 when the fd had
// none (EAGAIN) or too little for a header.
size_t NetRx::length_with_header(ssize_t got, size_t hdr, uint8_t* h) {
    if (got <= 0 || static_cast<size_t>(got) + hdr < net::kHeaderLen) return 0;
    if (hdr) std::memset(h, 0, hdr);  // no checksum to finish, no GSO
    return static_cast<size_t>(got) + hdr;
}

Work NetRx::run(SplitQueue& q, const MemView& mem, int fd, const RxOptions& opt, QueueStats& st, std::string& why) {
    size_t hdr = opt.fd_header ? 0 : net::kHeaderLen;  // what we put in front ourselves
    for (unsigned i = 0; i < opt.budget; i++) {
        if (!pending_len_) {
            if (!take(q, net::kMaxFrame, opt.mergeable, why)) return Work::Broken;
            if (prepare_direct_read(mem, hdr)) {
                // One segment: prepare_direct_read() checked.
                uint8_t* h = mem.ptr(spare_.front().segs.front().gpa, net::kHeaderLen);
                size_t len = length_with_header(::readv(fd, iov_.data(), static_cast<int>(iov_.size())), hdr, h);
                if (!len) return Work::Idle;
                publish_frame(q, mem, chains_for(len), len, h, false, st, opt.log);
                continue;
            }
            // Too few buffers for the largest frame: read it here, deliver
            // it when it fits.
            if (!pending_) pending_ = std::make_unique_for_overwrite<uint8_t[]>(net::kMaxFrame);
            pending_len_ = length_with_header(::read(fd, pending_.get() + hdr, net::kMaxFrame - hdr), hdr,
                                              pending_.get());
            if (!pending_len_) return Work::Idle;
        }
        Delivery r = deliver_pending(q, mem, opt, st, why);
        if (r == Delivery::Broken) return Work::Broken;
        if (r == Delivery::NoBuffers) return Work::NeedBuffers;
        pending_len_ = 0;
    }
    return Work::More;
}

}  // namespace minivmm
