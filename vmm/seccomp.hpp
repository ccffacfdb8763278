// seccomp-bpf: every thread minivmm starts runs under an allowlist of system
// calls for its kind (vmm/seccomp_policy.cpp has the lists and why each call
// is there). A thread installs its own filter as its body starts, so a vCPU
// thread can do nothing a vCPU thread does not do, and a vhost worker ring
// thread only the calls of its loop. A forbidden call ends minivmm with one
// line naming the thread and the call, exit status 2, the terminal restored.
#pragma once
#include <termios.h>

#include <string>

namespace minivmm {

enum class ThreadKind { Main, Vcpu, VhostWorker, NetIo, MsixWatcher, Console, Nudger, NetCtrl, Api };
constexpr int kThreadKinds = 9;
const char* thread_kind_name(ThreadKind kind);

// on: a forbidden call traps (the line, exit 2); log: it is logged by the
// kernel's audit log and goes through; off: no filters.
enum class SeccompMode { On, Log, Off };

// Compiles every kind's filter and installs the SIGSYS handler, before the
// first thread that calls enter_thread() starts. Until it is called (unit
// tests, tools) enter_thread() only names threads. Throws InternalError.
void seccomp_prepare(SeccompMode mode);

// The start of a thread's body, inside guarded(): names the thread (for ps -L,
// top -H and the SIGSYS line; the main thread keeps its process name) and,
// unless seccomp is off or unprepared, installs its kind's filter on the
// calling thread. The filters of a thread's creator stay: a thread started
// by a vCPU thread runs under both lists. Throws InternalError.
void enter_thread(ThreadKind kind, const std::string& name);

// The terminal the SIGSYS handler puts back before it ends the process (the
// console's saved settings), or nullptr when nothing needs restoring.
void trap_restores_terminal(int fd, const termios* saved);

// How many system calls (and ioctl request numbers) a kind may make.
struct PolicySize {
    unsigned calls, ioctls;
};
PolicySize seccomp_policy_size(ThreadKind kind);

}  // namespace minivmm
