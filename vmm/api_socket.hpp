// The control socket (--api-sock PATH): a unix stream socket made as the
// machine is built, before confinement (its path is resolved on the host,
// outside any --jail), and served by the API thread until the VM stops.
// Several clients may be connected at once; each is served a line at a time
// as its bytes arrive (poll), so a client that connects and says nothing
// holds only its slot, and only until it has been idle kIdleLimitMs.
#pragma once
#include <sys/types.h>

#include <string>

#include "vmm/fd.hpp"

namespace minivmm {

class ApiTarget;

class ApiSocket {
public:
    static constexpr unsigned kMaxClients = 8;
    static constexpr int kIdleLimitMs = 60'000;
    // Replies waiting for one client: past this, its further lines wait
    // unread until it takes them (one read can hold thousands of requests).
    static constexpr size_t kMaxPendingReplies = 1 << 20;

    // Creates and listens on path, owner-only (mode 0600). A stale socket
    // there (nothing listening) is replaced; anything else is refused with a
    // UserError: another file, or a socket someone serves.
    explicit ApiSocket(const std::string& path);
    ~ApiSocket();
    ApiSocket(const ApiSocket&) = delete;
    ApiSocket& operator=(const ApiSocket&) = delete;

    // Serves clients until stop_fd is readable, then removes the socket.
    // On the API thread, under its filter (vmm/seccomp_policy.cpp).
    void serve(int stop_fd, ApiTarget& target);
    // Removes the path, once, if it is still this socket: through the
    // directory opened at creation, so it works from inside a jail.
    void remove();
    const std::string& path() const { return path_; }

private:
    std::string path_, base_;
    Fd dir_, listen_;
    dev_t dev_ = 0;
    ino_t ino_ = 0;
    bool removed_ = false;
};

}  // namespace minivmm
