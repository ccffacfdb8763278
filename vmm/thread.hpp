// The threads minivmm starts, with a stack sized to what they need.
//
// std::thread gives each thread glibc's default stack, RLIMIT_STACK (8 MiB
// usually). Only the pages a thread touches are resident, but on a host with
// transparent huge pages set to "always" one 2 MiB page can back a stack
// that uses 20 KiB: two such stacks doubled minivmm's memory. A stack
// smaller than 2 MiB cannot hold a huge page, and none of our threads needs
// more than a few dozen KiB (vmm/README.md, Footprint).
#pragma once
#include <cstddef>
#include <functional>

#include <pthread.h>

namespace minivmm {

class Thread {
public:
    // Room for the deepest path seen (about 30 KiB: a vCPU's exit through
    // device emulation, an exception unwound, the seccomp trap's report)
    // many times over; still far below a huge page.
    static constexpr size_t kStackBytes = 256 << 10;

    Thread() = default;
    // Starts body on a new thread; throws std::system_error as std::thread
    // does (EAGAIN when a process limit is reached).
    explicit Thread(std::function<void()> body, size_t stack_bytes = kStackBytes);
    Thread(Thread&& o) noexcept : id_(o.id_), running_(o.running_) { o.running_ = false; }
    Thread& operator=(Thread&& o) noexcept;
    Thread(const Thread&) = delete;
    Thread& operator=(const Thread&) = delete;
    // As std::thread's: a thread neither joined nor detached is a bug.
    ~Thread();

    bool joinable() const { return running_; }
    void join();

private:
    pthread_t id_{};
    bool running_ = false;
};

}  // namespace minivmm
