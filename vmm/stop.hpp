// How any thread asks the VM to stop, and with which exit status.
#pragma once
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>

namespace minivmm {

class Stop {
public:
    Stop() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}
    ~Stop() { ::close(fd_); }
    Stop(const Stop&) = delete;
    Stop& operator=(const Stop&) = delete;

    // The first request wins: a poweroff followed by a vCPU noticing the stop
    // must still exit 0 with the poweroff's reason.
    // True if this request is the one that counts.
    bool request(int status, const std::string& why) {
        {
            std::lock_guard<std::mutex> g(mu_);
            if (requested_) return false;
            status_ = status;
            why_ = why;
            requested_ = true;
        }
        uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(fd_, &one, sizeof one);
        return true;
    }
    bool requested() const { return requested_; }
    int fd() const { return fd_; }  // readable once stop is requested
    int status() const { return status_; }
    std::string why() const {
        std::lock_guard<std::mutex> g(mu_);
        return why_;
    }

private:
    int fd_;
    mutable std::mutex mu_;
    std::atomic<bool> requested_{false};
    int status_ = 0;
    std::string why_;
};

}  // namespace minivmm
