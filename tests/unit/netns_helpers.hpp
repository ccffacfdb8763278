// Shared by the unit tests that need a tap: a private network namespace per
// test, and eventfd helpers.
#pragma once
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <thread>

#include "vmm/kvm.hpp"

namespace minivmm::testing {

// Runs body in a new thread in a fresh network namespace; unshare() changes
// only the calling thread, so the rest of the test program is untouched.
// Without the privilege for that (not root) the test fails: make test runs
// as root, and a skip would hide the missing coverage.
inline void in_netns(const std::function<void()>& body) {
    int unshare_err = 0;
    std::thread t([&] {
        if (::unshare(CLONE_NEWNET) != 0) {
            unshare_err = errno;
            return;
        }
        // No IPv6 chatter (router solicitations, MLD) from the tap when it
        // comes up: every frame on it is the test's own.
        int f = ::open("/proc/sys/net/ipv6/conf/default/disable_ipv6", O_WRONLY | O_CLOEXEC);
        if (f >= 0) {
            [[maybe_unused]] ssize_t n = ::write(f, "1", 1);
            ::close(f);
        }
        try {
            body();
        } catch (const std::exception& e) {
            ADD_FAILURE() << "exception: " << e.what();
        }
    });
    t.join();
    if (unshare_err)
        ADD_FAILURE() << "unshare(CLONE_NEWNET) for a private network namespace (needs root): "
                      << std::strerror(unshare_err);
}

inline Fd make_eventfd() { return Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)); }

// Waits up to ms for the eventfd to be signalled, and consumes the signal.
inline bool wait_event(int fd, int ms) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms) <= 0) return false;
    uint64_t v;
    return ::read(fd, &v, sizeof v) == sizeof v && v > 0;
}

}  // namespace minivmm::testing
