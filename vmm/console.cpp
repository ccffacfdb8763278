#include "vmm/console.hpp"

#include <poll.h>
#include <unistd.h>

#include <cerrno>

#include "vmm/seccomp.hpp"
#include "vmm/serial.hpp"
#include "vmm/thread_guard.hpp"

namespace minivmm {

Console::Console(Serial& serial, int stop_fd) : serial_(serial), stop_fd_(stop_fd) {
    if (::isatty(STDIN_FILENO) && ::tcgetattr(STDIN_FILENO, &saved_) == 0) {
        termios raw = saved_;
        ::cfmakeraw(&raw);
        // Keep ISIG so Ctrl-C reaches minivmm as SIGINT and stops the VM, and
        // OPOST so our own stderr lines still start at column 0.
        raw.c_lflag |= ISIG;
        raw.c_oflag |= OPOST;
        restore_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
        // A thread that a seccomp filter stops ends minivmm without
        // unwinding: the SIGSYS handler puts the terminal back itself.
        if (restore_) trap_restores_terminal(STDIN_FILENO, &saved_);
    }
    try {
        thread_ = Thread([this] {
            guarded("console", [this] {
                enter_thread(ThreadKind::Console, "console");
                reader();
            });
        });
    } catch (...) {
        // The destructor will not run: give the user their terminal back.
        if (restore_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
        throw;
    }
}

Console::~Console() {
    serial_.shutdown();
    if (thread_.joinable()) thread_.join();
    if (restore_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    trap_restores_terminal(STDIN_FILENO, nullptr);
}

void Console::reader() {
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    uint8_t buf[256];
    for (;;) {
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (fds[1].revents) return;
        if (!fds[0].revents) continue;
        ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        // End of input (a script piped in, or /dev/null) leaves the guest running.
        if (n <= 0) return;
        serial_.receive(buf, static_cast<size_t>(n));
    }
}

}  // namespace minivmm
