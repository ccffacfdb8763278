// The entry of every thread minivmm starts. An exception that leaves a
// thread's body reaches std::terminate: the process aborts with the user's
// terminal still in raw mode and no word of what failed. guarded() catches it
// and hands one line naming the thread and the failure to the fatal handler,
// which the Machine sets to stop the VM with exit status 2 (its destructors
// then restore the terminal). Inside it, a body's first call is
// enter_thread() (vmm/seccomp.hpp): the thread's name and seccomp filter.
#pragma once
#include <functional>
#include <string>

namespace minivmm {

using FatalHandler = std::function<void(const std::string& line)>;

// Process-wide: there is one VM per process. Without a handler (unit tests,
// tools) the line is printed and the process aborts, as terminate would.
void set_fatal_handler(FatalHandler h);

// Sets a handler for as long as it lives: declared right after what the
// handler uses, it outlives every thread declared after it.
class FatalHandlerScope {
public:
    explicit FatalHandlerScope(FatalHandler h) { set_fatal_handler(std::move(h)); }
    ~FatalHandlerScope() { set_fatal_handler(nullptr); }
    FatalHandlerScope(const FatalHandlerScope&) = delete;
    FatalHandlerScope& operator=(const FatalHandlerScope&) = delete;
};

// Runs body on the calling thread; an exception from it goes to the handler
// as "<thread>: <what>" and guarded() returns.
void guarded(const std::string& thread, const std::function<void()>& body) noexcept;

}  // namespace minivmm
