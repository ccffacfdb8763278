#include "vmm/vcpu_pause.hpp"

#include "vmm/stop.hpp"

namespace minivmm {

void VcpuPause::park(const Stop& stop) {
    std::unique_lock g(mu_);
    parked_++;
    cv_.notify_all();
    // Both conditions are re-read under the lock: resume() and
    // release_for_stop() notify under it, after the change they announce.
    cv_.wait(g, [&] { return !wanted_ || stop.requested(); });
    parked_--;
}

bool VcpuPause::pause(unsigned vcpus, const Stop& stop, const std::function<void()>& kick_all,
                      std::chrono::milliseconds limit) {
    {
        std::lock_guard g(mu_);
        // Set before any kick: a vCPU about to enter KVM_RUN either sees it at
        // its loop top or is kicked out (immediate_exit) right after.
        wanted_ = true;
    }
    auto until = std::chrono::steady_clock::now() + limit;
    std::unique_lock g(mu_);
    while (parked_ < vcpus) {
        if (stop.requested() || std::chrono::steady_clock::now() >= until) return false;
        g.unlock();
        kick_all();
        g.lock();
        // Kicked again after a while: a vCPU busy on an exit (a device reset)
        // parks when it is done, one that was not yet running when kicked
        // parks at its loop top.
        cv_.wait_for(g, std::chrono::milliseconds(5), [&] { return parked_ >= vcpus || stop.requested(); });
    }
    return true;
}

void VcpuPause::resume() {
    std::lock_guard g(mu_);
    wanted_ = false;
    cv_.notify_all();
}

void VcpuPause::release_for_stop() {
    std::lock_guard g(mu_);
    cv_.notify_all();
}

unsigned VcpuPause::parked() const {
    std::lock_guard g(mu_);
    return parked_;
}

}  // namespace minivmm
