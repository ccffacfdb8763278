// One ring's interrupt coalescing, for the datapaths that raise their own
// interrupts (vhost=worker and vhost=off): the ring's thread asks due()
// after it published used buffers and before it decides on an interrupt
// (SplitQueue::need_interrupt), and polls fd() with its other fds. A
// held interrupt ends when max_packets buffers wait or the timer, armed
// at the first of them, expires. Holding back only merges the windows
// need_interrupt() looks at, so EVENT_IDX and NO_INTERRUPT still decide
// whether an interrupt goes out at all.
#pragma once
#include <atomic>
#include <cstdint>

#include "virtio/coalesce.hpp"
#include "vmm/fd.hpp"

namespace minivmm {

class CoalesceTimer {
public:
    // Makes the timerfd (before confinement: the ring threads may only set
    // it); its owner checks it was made (false: errno says why).
    CoalesceTimer();
    explicit operator bool() const { return bool(timer_); }
    int fd() const { return timer_.get(); }
    // From any thread; the ring's thread takes it at its next decision.
    void set(const Coalesce& c);
    Coalesce get() const;
    // pending: used buffers published and not yet looked at by
    // need_interrupt(). True: decide now; false: held (the timer runs).
    // A ring that stays busy loops without waiting and never reads fd():
    // so due() also ends the wait once the timer's time is up.
    bool due(unsigned pending);
    // fd() was readable. True: the timer expired, decide now.
    bool expired();
    // An interrupt is held, waiting for the timer.
    bool holding() const { return armed_; }

private:
    bool arm(uint32_t usecs);
    void disarm();

    Fd timer_;
    std::atomic<uint64_t> params_{0};  // max_packets << 32 | max_usecs: read whole by the ring's thread
    bool armed_ = false;               // the ring's thread's, or its owner's while it is stopped
    int64_t deadline_ns_ = 0;          // CLOCK_MONOTONIC, while armed_
};

}  // namespace minivmm
