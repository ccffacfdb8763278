#include "vhost/coalesce_timer.hpp"

#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

namespace minivmm {

namespace {
// Read through the vDSO: no system call on the ring's hot path (where the
// clock source has no vDSO reading, the ring threads' seccomp list lets
// clock_gettime(CLOCK_MONOTONIC) through).
int64_t monotonic_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

CoalesceTimer::CoalesceTimer() : timer_(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)) {}

void CoalesceTimer::set(const Coalesce& c) {
    params_.store(uint64_t(c.max_packets) << 32 | c.max_usecs, std::memory_order_relaxed);
}

Coalesce CoalesceTimer::get() const {
    uint64_t v = params_.load(std::memory_order_relaxed);
    return {uint32_t(v >> 32), uint32_t(v)};
}

bool CoalesceTimer::due(unsigned pending) {
    Coalesce c = get();
    if (pending > 0 && c.active() && pending < c.max_packets) {
        // No timer, no holding back: nothing else would end the wait.
        if (!armed_) return !arm(c.max_usecs);
        if (monotonic_ns() < deadline_ns_) return false;
    }
    // The decision made now covers every buffer the timer waited for.
    if (armed_) disarm();
    return true;
}

bool CoalesceTimer::expired() {
    uint64_t ticks = 0;
    if (::read(timer_.get(), &ticks, sizeof ticks) != sizeof ticks || ticks == 0) return false;
    armed_ = false;
    return true;
}

bool CoalesceTimer::arm(uint32_t usecs) {
    itimerspec t{};
    t.it_value.tv_sec = usecs / 1'000'000;
    t.it_value.tv_nsec = long(usecs % 1'000'000) * 1000;
    deadline_ns_ = monotonic_ns() + int64_t(usecs) * 1000;
    armed_ = timerfd_settime(timer_.get(), 0, &t, nullptr) == 0;
    return armed_;
}

void CoalesceTimer::disarm() {
    itimerspec t{};
    if (timerfd_settime(timer_.get(), 0, &t, nullptr) == 0) armed_ = false;
}

}  // namespace minivmm
