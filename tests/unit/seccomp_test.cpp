// The seccomp filters, each in a forked child (a filter cannot be taken off
// again): a call a thread kind's list lacks ends the process with status 2
// and one line naming the thread and the call; calls on the list work; log
// mode lets the call through; off installs nothing.
#include "vmm/seccomp.hpp"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace minivmm;

namespace {

struct Outcome {
    int status = -1;  // exit status, or 128 + signal
    std::string err;  // what the child wrote on stderr
    std::vector<std::string> lines() const {
        std::vector<std::string> out;
        size_t at = 0;
        while (at < err.size()) {
            size_t nl = err.find('\n', at);
            std::string l = err.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
            at = nl == std::string::npos ? err.size() : nl + 1;
            if (l.find_first_not_of(" \r\t") != std::string::npos) out.push_back(l);
        }
        return out;
    }
};

// Runs body in a forked child with stderr on a pipe; the child exits 0 if
// body returns, 3 if it throws.
Outcome in_child(const std::function<void()>& body) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) throw std::runtime_error("pipe2");
    std::fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], STDERR_FILENO);
        try {
            body();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "exception: %s\n", e.what());
            _exit(3);
        }
        _exit(0);
    }
    close(p[1]);
    Outcome o;
    char buf[512];
    ssize_t n;
    while ((n = read(p[0], buf, sizeof buf)) > 0) o.err.append(buf, static_cast<size_t>(n));
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    o.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return o;
}

std::string trap_line(const std::string& thread, const std::string& call) {
    return "minivmm: internal error: " + thread + ": system call " + call +
           " is not allowed on this thread (seccomp)";
}

// The child ended as a trapped call must end minivmm.
void expect_trapped(const Outcome& o, const std::string& thread, const std::string& call) {
    EXPECT_EQ(o.status, 2) << o.err;
    auto lines = o.lines();
    ASSERT_EQ(lines.size(), 1u) << o.err;
    EXPECT_EQ(lines[0], trap_line(thread, call));
}

void expect_clean(const Outcome& o) {
    EXPECT_EQ(o.status, 0) << o.err;
    EXPECT_EQ(o.err, "");
}

// The Seccomp: field of the calling thread's /proc status, through a file
// opened before the filter went in (no list has openat); read once.
class SeccompStatus {
public:
    SeccompStatus() : fd_(open("/proc/thread-self/status", O_RDONLY | O_CLOEXEC)) {}
    int get() const {
        char buf[4096];
        ssize_t n = read(fd_, buf, sizeof buf - 1);
        if (n <= 0) return -1;
        buf[n] = 0;
        const char* at = std::strstr(buf, "\nSeccomp:");
        return at ? std::atoi(at + 10) : -1;
    }

private:
    int fd_;
};

void must(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}

void open_socket() { must(::socket(AF_INET, SOCK_DGRAM, 0) >= 0, "socket"); }

// Made before a filter goes in: no list has pipe2, and only the vCPU's eventfd2.
// Also another thread, with SIGUSR2 blocked, for a kick to be sent to.
struct Fds {
    int pipe[2] = {-1, -1};
    int efd = -1;
    pthread_t other{};
    Fds() {
        must(::pipe(pipe) == 0, "pipe");
        efd = eventfd(0, EFD_CLOEXEC);
        must(efd >= 0, "eventfd");
        // Blocked before the thread starts, so it inherits the mask: blocked
        // inside it, a kick sent before it got that far killed the child.
        sigset_t s, old;
        sigemptyset(&s);
        sigaddset(&s, SIGUSR2);
        pthread_sigmask(SIG_BLOCK, &s, &old);
        std::thread t([] {
            for (;;) pause();  // until the child exits
        });
        pthread_sigmask(SIG_SETMASK, &old, nullptr);
        other = t.native_handle();
        t.detach();
    }
};

// A write and a read through the pipe, and a poll: what every kind that waits does.
void pipe_round_trip(const Fds& f) {
    char c = 'x';
    must(write(f.pipe[1], &c, 1) == 1, "write");
    pollfd pf{f.pipe[0], POLLIN, 0};
    must(poll(&pf, 1, 1000) == 1, "poll");
    must(read(f.pipe[0], &c, 1) == 1, "read");
}

// An ioctl the list allows reaches the kernel: on an eventfd it is ENOTTY.
void allowed_ioctl(const Fds& f, unsigned long req) {
    must(ioctl(f.efd, req, 0) < 0 && errno == ENOTTY, "ioctl reached no KVM fd");
}

struct Kind {
    ThreadKind kind;
    const char* name;
};
const Kind kKinds[] = {
    {ThreadKind::Main, "main"},
    {ThreadKind::Vcpu, "vCPU 0"},
    {ThreadKind::VhostWorker, "vhost-net0-rx0"},
    {ThreadKind::NetIo, "net0-io0"},
    {ThreadKind::MsixWatcher, "MSI-X watcher"},
    {ThreadKind::Console, "console"},
    {ThreadKind::Nudger, "vCPU nudger"},
    {ThreadKind::NetCtrl, "net0-ctrl"},
    {ThreadKind::Api, "API"},
};

}  // namespace

// No kind opens a socket once it runs: each traps, naming itself and socket.
TEST(Seccomp, EveryKindTrapsSocketWithOneLine) {
    for (const Kind& k : kKinds) {
        SCOPED_TRACE(k.name);
        expect_trapped(in_child([&] {
                           seccomp_prepare(SeccompMode::On);
                           enter_thread(k.kind, k.name);
                           open_socket();
                       }),
                       k.name, "socket");
    }
}

// glibc opens /proc/sys/vm/overcommit_memory the first time a thread's
// arena shrinks: under every kind's list that open fails instead of ending
// minivmm, and an arena grows and shrinks on a thread of every kind.
TEST(Seccomp, EveryKindRefusesOpenAndShrinksItsArena) {
    for (const Kind& k : kKinds) {
        SCOPED_TRACE(k.name);
        expect_clean(in_child([&] {
            seccomp_prepare(SeccompMode::On);
            std::thread t([&] {
                enter_thread(k.kind, k.name);
                errno = 0;
                int fd = open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
                must(fd < 0 && errno == EACCES, "open refused with EACCES");
                // Many small blocks, then one past the consolidation
                // threshold: freeing them all trims the top of the arena.
                std::vector<std::unique_ptr<char[]>> small;
                for (int i = 0; i < 60000; i++) small.emplace_back(new char[32]);
                auto big = std::make_unique<char[]>(70 << 10);
                small.clear();
                big.reset();
            });
            t.join();
        }));
    }
}

TEST(Seccomp, WorkerTrapsExecve) {
    expect_trapped(in_child([] {
                       seccomp_prepare(SeccompMode::On);
                       enter_thread(ThreadKind::VhostWorker, "vhost-net0-tx0");
                       char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
                       execve("/bin/true", argv, environ);
                   }),
                   "vhost-net0-tx0", "execve");
}

TEST(Seccomp, EachKindItsOwnCalls) {
    // Every kind: a filter in place, and the calls of its loop going through.
    auto body = [](ThreadKind kind, const Fds& f) {
        switch (kind) {
            case ThreadKind::Main: {
                pipe_round_trip(f);
                usleep(1);
                sigset_t s;
                sigemptyset(&s);
                sigaddset(&s, SIGINT);
                int sfd = signalfd(-1, &s, SFD_CLOEXEC);
                must(sfd >= 0 && close(sfd) == 0, "signalfd");
                allowed_ioctl(f, KVM_IRQFD);  // a NIC's reset at teardown
                return;
            }
            case ThreadKind::NetCtrl:
                pipe_round_trip(f);
                usleep(1);
                [[fallthrough]];
            case ThreadKind::Vcpu: {
                if (kind == ThreadKind::Vcpu) allowed_ioctl(f, KVM_RUN);
                allowed_ioctl(f, KVM_SIGNAL_MSI);
                allowed_ioctl(f, TUNSETQUEUE);
                int e = eventfd(0, EFD_CLOEXEC);  // a queue's kick eventfd at DRIVER_OK
                must(e >= 0 && close(e) == 0, "eventfd");
                return;
            }
            case ThreadKind::VhostWorker:
            case ThreadKind::NetIo: {
                char a[4] = "abc", b[4] = {};
                iovec out{a, 3}, in{b, 3};
                must(writev(f.pipe[1], &out, 1) == 3, "writev");
                must(readv(f.pipe[0], &in, 1) == 3, "readv");
                pipe_round_trip(f);
                if (kind == ThreadKind::NetIo) allowed_ioctl(f, KVM_SIGNAL_MSI);
                return;
            }
            case ThreadKind::MsixWatcher:
                pipe_round_trip(f);
                allowed_ioctl(f, KVM_SIGNAL_MSI);
                return;
            case ThreadKind::Console:
                pipe_round_trip(f);
                allowed_ioctl(f, KVM_IRQ_LINE);
                return;
            case ThreadKind::Api:  // its socket calls: api_socket_test.cpp
                pipe_round_trip(f);
                must(pthread_kill(f.other, SIGUSR2) == 0, "pthread_kill");  // pause's kick
                return;
            case ThreadKind::Nudger: {
                pollfd none{-1, 0, 0};
                must(poll(&none, 1, 1) == 0, "poll");
                // A kick to another thread (which holds it pending, blocked).
                must(pthread_kill(f.other, SIGUSR2) == 0, "pthread_kill");
                return;
            }
        }
    };
    for (const Kind& k : kKinds) {
        SCOPED_TRACE(k.name);
        expect_clean(in_child([&] {
            Fds f;
            SeccompStatus status;
            seccomp_prepare(SeccompMode::On);
            enter_thread(k.kind, k.name);
            // (The nudger may not read: that it has a filter, the trap test shows.)
            must(k.kind == ThreadKind::Nudger || status.get() == 2, "no filter");
            body(k.kind, f);
        }));
    }
}

// Argument filters: the call is allowed, this use of it is not.
TEST(Seccomp, ArgumentsMatter) {
    // A vCPU makes KVM's run-time ioctls only: creating a VM is setup.
    expect_trapped(in_child([] {
                       Fds f;
                       seccomp_prepare(SeccompMode::On);
                       enter_thread(ThreadKind::Vcpu, "vCPU 1");
                       ioctl(f.efd, KVM_CREATE_VM, 0);
                   }),
                   "vCPU 1", "ioctl");
    // The nudger kicks threads of its own process with SIGUSR2, nothing else.
    expect_trapped(in_child([] {
                       pid_t parent = getppid();
                       seccomp_prepare(SeccompMode::On);
                       enter_thread(ThreadKind::Nudger, "vCPU nudger");
                       syscall(SYS_tgkill, parent, parent, 0);
                   }),
                   "vCPU nudger", "tgkill");
    // No thread maps executable memory.
    expect_trapped(in_child([] {
                       seccomp_prepare(SeccompMode::On);
                       enter_thread(ThreadKind::VhostWorker, "vhost-net0-rx0");
                       mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                   }),
                   "vhost-net0-rx0", "mmap");
    // A vCPU starts threads, not processes: fork() is clone without CLONE_THREAD.
    expect_trapped(in_child([] {
                       seccomp_prepare(SeccompMode::On);
                       enter_thread(ThreadKind::Vcpu, "vCPU 0");
                       syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
                   }),
                   "vCPU 0", "clone");
}

// As on DRIVER_OK with vhost=worker: a vCPU thread starts a ring thread,
// which installs its own list under the vCPU's and serves its loop; a
// forbidden call there names the ring thread.
TEST(Seccomp, VcpuStartsAWorkerRingThread) {
    // glibc sets up its thread signals with the process's first thread,
    // which minivmm's main thread starts long before a vCPU runs.
    auto first_thread = [] { std::thread([] {}).join(); };
    expect_clean(in_child([&] {
        Fds f;
        first_thread();
        seccomp_prepare(SeccompMode::On);
        enter_thread(ThreadKind::Vcpu, "vCPU 0");
        std::thread t([&] {
            enter_thread(ThreadKind::VhostWorker, "vhost-net0-rx0");  // throws if refused: exit 3
            pipe_round_trip(f);
        });
        t.join();
    }));
    expect_trapped(in_child([&] {
                       first_thread();
                       seccomp_prepare(SeccompMode::On);
                       enter_thread(ThreadKind::Vcpu, "vCPU 0");
                       std::thread t([] {
                           enter_thread(ThreadKind::VhostWorker, "vhost-net0-tx1");
                           // The vCPU's list has eventfd2; the ring thread's does not.
                           eventfd(0, 0);
                       });
                       t.join();
                   }),
                   "vhost-net0-tx1", "eventfd2");
}

TEST(Seccomp, LogModeLetsTheCallThrough) {
    expect_clean(in_child([] {
        SeccompStatus status;
        seccomp_prepare(SeccompMode::Log);
        enter_thread(ThreadKind::VhostWorker, "vhost-net0-rx0");
        must(status.get() == 2, "no filter");
        open_socket();
    }));
}

TEST(Seccomp, OffInstallsNothing) {
    expect_clean(in_child([] {
        SeccompStatus status;
        seccomp_prepare(SeccompMode::Off);
        enter_thread(ThreadKind::VhostWorker, "vhost-net0-rx0");
        must(status.get() == 0, "a filter");
        open_socket();
    }));
}

// The SIGSYS handler puts a raw console terminal back as it was.
TEST(Seccomp, TrapRestoresTheTerminal) {
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    ASSERT_GE(master, 0);
    ASSERT_EQ(grantpt(master), 0);
    ASSERT_EQ(unlockpt(master), 0);
    std::string slave = ptsname(master);
    int s = open(slave.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    ASSERT_GE(s, 0);
    termios before{};
    ASSERT_EQ(tcgetattr(s, &before), 0);
    ASSERT_TRUE(before.c_lflag & ICANON);
    expect_trapped(in_child([&] {
                       dup2(s, STDIN_FILENO);
                       termios saved{}, raw{};
                       tcgetattr(STDIN_FILENO, &saved);
                       raw = saved;
                       cfmakeraw(&raw);
                       tcsetattr(STDIN_FILENO, TCSANOW, &raw);
                       trap_restores_terminal(STDIN_FILENO, &saved);
                       seccomp_prepare(SeccompMode::On);
                       enter_thread(ThreadKind::Console, "console");
                       open_socket();
                   }),
                   "console", "socket");
    termios after{};
    ASSERT_EQ(tcgetattr(s, &after), 0);
    EXPECT_EQ(after.c_lflag, before.c_lflag);
    EXPECT_EQ(after.c_iflag, before.c_iflag);
    EXPECT_EQ(after.c_oflag, before.c_oflag);
    close(s);
    close(master);
}

// The worker ring thread's list is the tightest: a subset of the vCPU's (it
// runs under both), smaller than any other.
TEST(Seccomp, ListSizes) {
    for (const Kind& k : kKinds) {
        PolicySize n = seccomp_policy_size(k.kind);
        RecordProperty(thread_kind_name(k.kind), std::to_string(n.calls) + " calls, " + std::to_string(n.ioctls) +
                                                    " ioctl requests");
        EXPECT_GT(n.calls, 10u);
    }
    PolicySize worker = seccomp_policy_size(ThreadKind::VhostWorker);
    EXPECT_LT(worker.calls, seccomp_policy_size(ThreadKind::Vcpu).calls);
    EXPECT_LT(worker.calls, seccomp_policy_size(ThreadKind::Main).calls);
    EXPECT_EQ(worker.ioctls, 0u);
}
