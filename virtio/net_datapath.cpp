#include "virtio/net_datapath.hpp"

#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "vmm/guest_memory.hpp"
#include "vmm/io_bus.hpp"

namespace minivmm {

void QueueStats::print(std::FILE* f, const char* name) const {
    std::fprintf(f, "  %s: %llu packets, %llu bytes, %llu notifications, %llu interrupts, %llu errors\n", name,
                 (unsigned long long)packets, (unsigned long long)bytes, (unsigned long long)notifications,
                 (unsigned long long)interrupts, (unsigned long long)errors);
}

Work net_tx(SplitQueue& q, const MemView& mem, int fd, QueueStats& st, unsigned budget, std::string& why,
            bool fd_header) {
    std::vector<iovec> iov;
    for (unsigned i = 0; i < budget; i++) {
        Chain c;
        auto r = q.pop(c, why);
        if (r == SplitQueue::Pop::Broken) return Work::Broken;
        if (r == SplitQueue::Pop::Empty) return Work::Idle;
        // A send buffer is read-only for the device and starts with the header.
        bool ok = !c.writable_bytes && c.readable_bytes >= net::kHeaderLen && c.readable_bytes <= net::kMaxFrame &&
                  c.segs.size() <= IOV_MAX;
        if (ok) {
            iov.clear();
            uint64_t skip = fd_header ? 0 : net::kHeaderLen;  // the header may span segments
            for (const Segment& s : c.segs) {
                uint64_t drop = std::min<uint64_t>(skip, s.len);
                skip -= drop;
                if (s.len > drop) iov.push_back({mem.ptr(s.gpa, s.len) + drop, s.len - drop});
            }
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

NetRx::One NetRx::deliver(SplitQueue& q, const MemView& mem, bool mergeable, QueueStats& st, std::string& why,
                          const WriteLog& log) {
    // Enough buffers for the whole frame, or none taken: a frame is never
    // truncated. Without mergeable buffers one chain must hold it all.
    std::vector<Chain> chains;
    uint64_t room = 0;
    while (room < len_) {
        Chain c;
        auto r = q.pop(c, why);
        if (r == SplitQueue::Pop::Broken) return One::Broken;
        if (r == SplitQueue::Pop::Empty) {
            q.unpop(static_cast<uint16_t>(chains.size()));
            return One::NoBuffers;
        }
        if (c.readable_bytes) {
            why = "receive buffer with device-readable parts";
            return One::Broken;
        }
        room += c.writable_bytes;
        chains.push_back(std::move(c));
        if (!mergeable) break;
    }
    if (room < len_) {
        // Only without mergeable buffers: the driver posted a buffer too small
        // for a frame it agreed to take. Drop the frame, keep the buffer.
        q.unpop(1);
        st.errors++;
        return One::Dropped;
    }
    le_store(&frame_[10], 2, chains.size());  // num_buffers
    size_t done = 0;
    for (const Chain& c : chains) {
        uint32_t written = 0;
        for (const Segment& s : c.segs) {
            if (done == len_) break;
            size_t n = std::min<size_t>(s.len, len_ - done);
            std::memcpy(mem.ptr(s.gpa, s.len), &frame_[done], n);
            if (log) log(s.gpa, n);
            done += n;
            written += static_cast<uint32_t>(n);
        }
        q.push_used(c.head, written);
    }
    st.packets++;
    st.bytes += len_ - net::kHeaderLen;
    return One::Delivered;
}

Work NetRx::run(SplitQueue& q, const MemView& mem, int fd, bool mergeable, QueueStats& st, unsigned budget,
                std::string& why, const WriteLog& log, bool fd_header) {
    size_t hdr = fd_header ? 0 : net::kHeaderLen;  // what we put in front ourselves
    for (unsigned i = 0; i < budget; i++) {
        if (!len_) {
            ssize_t got = ::read(fd, frame_.data() + hdr, frame_.size() - hdr);
            if (got <= 0 || static_cast<size_t>(got) + hdr < net::kHeaderLen) return Work::Idle;  // EAGAIN: no more now
            if (hdr) std::memset(frame_.data(), 0, hdr);  // no checksum to finish, no GSO
            len_ = static_cast<size_t>(got) + hdr;
        }
        One r = deliver(q, mem, mergeable, st, why, log);
        if (r == One::Broken) return Work::Broken;
        if (r == One::NoBuffers) return Work::NeedBuffers;
        len_ = 0;
    }
    return Work::More;
}

}  // namespace minivmm
