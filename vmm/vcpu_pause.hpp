// Holding every vCPU out of KVM_RUN (the control socket's pause) and letting
// them go again. A vCPU checks wanted() at the top of its loop, before each
// KVM_RUN, and parks there; the one asking kicks the vCPUs (signal plus
// immediate_exit, as for a stop) so that none stays in the guest. A parked
// vCPU leaves on resume() or on a stop: the thread that sees the stop calls
// release_for_stop(), so a paused VM still stops (quit, SIGTERM, an error).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>

namespace minivmm {

class Stop;

class VcpuPause {
public:
    // The vCPU side: whether to park, and parking until resumed or stopped.
    bool wanted() const { return wanted_; }
    void park(const Stop& stop);

    // Asks every vCPU to park and waits until `vcpus` of them have, kicking
    // them (kick_all) every few milliseconds meanwhile. False if the stop
    // came first or `limit` passed (the request stays: resume() undoes it).
    // Idempotent: pausing a paused machine returns true at once.
    bool pause(unsigned vcpus, const Stop& stop, const std::function<void()>& kick_all,
               std::chrono::milliseconds limit);
    void resume();
    // Called once stop is requested: wakes every parked vCPU to see it.
    void release_for_stop();

    bool paused() const { return wanted_; }
    unsigned parked() const;

private:
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::atomic<bool> wanted_{false};
    unsigned parked_ = 0;
};

}  // namespace minivmm
