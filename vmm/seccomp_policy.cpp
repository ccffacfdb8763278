// What each kind of minivmm thread may ask the kernel, and why. Anything
// else ends minivmm (--seccomp=on), is logged (log), or is allowed (off).
//
// A thread installs its list as its body starts (enter_thread), after the
// machine is set up: opening files, devices and sockets, KVM's setup ioctls
// and mapping guest RAM all happen before, and no list has them. Lists are
// per thread and stack: a thread a vCPU thread starts (the vhost worker's
// ring threads) runs under the vCPU list and its own.
//
// Found by reading every thread's code and confirmed under strace -f: the
// unit tests, synthetic guests, and Linux guests with each vhost backend.
#include <errno.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <time.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "vhost/vhost_abi.hpp"
#include "vmm/kvm.hpp"
#include "vmm/kvm_state_abi.hpp"
#include "vmm/seccomp_policy.hpp"

namespace minivmm {

namespace {
using namespace vhost_abi;

// Every thread, whatever it does.
void every_thread(Allowlist& l) {
    l.allow(SCMP_SYS(write));          // one-line errors on stderr, eventfd signals, the console's output
    l.allow(SCMP_SYS(futex));          // mutexes, condition variables, joining a thread
    l.allow(SCMP_SYS(exit));           // a thread's end
    l.allow(SCMP_SYS(exit_group));     // the process's end, and _exit(2) after a trap
    l.allow(SCMP_SYS(rt_sigreturn));   // back from a signal handler (the vCPU kick)
    l.allow(SCMP_SYS(rt_sigprocmask)); // glibc blocks signals around pthread_kill and as a thread ends
    l.allow(SCMP_SYS(restart_syscall));  // a wait resumed after SIGSTOP/SIGCONT or a debugger
    // malloc: a thread's first allocation makes its arena, which grows and
    // shrinks; a thread's stack is released as it ends (madvise). Never
    // executable memory: no thread loads or writes code.
    l.allow(SCMP_SYS(mmap), {arg_masked(2, PROT_EXEC, 0)});
    l.allow(SCMP_SYS(mprotect), {arg_masked(2, PROT_EXEC, 0)});
    l.allow(SCMP_SYS(munmap));
    l.allow(SCMP_SYS(madvise));
    l.allow(SCMP_SYS(brk));
    // No thread opens a file once it runs, but glibc does on its own: the
    // first time a thread's arena shrinks, it reads
    // /proc/sys/vm/overcommit_memory. A trap there would end minivmm on a
    // free() (a guest's burst of receive buffers, a long control-socket
    // line). Refused instead, glibc shrinks with madvise, which is allowed.
    l.fail(SCMP_SYS(openat), EACCES);
    l.fail(SCMP_SYS(open), EACCES);
    // The SIGSYS handler puts the console's terminal settings back before it
    // ends minivmm (TCSETS on stdin, the console's terminal).
    l.allow(SCMP_SYS(ioctl), {arg_eq(0, STDIN_FILENO), arg_masked(1, 0xffffffffu, TCSETS)});
}

// Waiting on eventfds (stop, kicks, wake-ups) and the host ends of NICs.
void waits(Allowlist& l) {
    l.allow(SCMP_SYS(poll));
    l.allow(SCMP_SYS(read));  // draining an eventfd; a frame, a signalfd, or the console's input
}

// Notification coalescing (vhost/coalesce_timer.hpp): a ring's thread arms
// its timerfd at the first interrupt it holds back and disarms it when it
// sends one. The timerfd is made before confinement (its expiry is read
// and polled like an eventfd).
void coalescing(Allowlist& l) {
    l.allow(SCMP_SYS(timerfd_settime));
    // The held interrupt's deadline: the vDSO answers without a call, except
    // on hosts whose clock source has no vDSO reading.
    l.allow(SCMP_SYS(clock_gettime), {arg_eq(0, CLOCK_MONOTONIC)});
}

// Kicking a vCPU out of KVM_RUN: pthread_kill sends SIGUSR2 to a thread of
// this process, and nothing else.
void kicks(Allowlist& l) {
    l.allow(SCMP_SYS(getpid));
    l.allow(SCMP_SYS(tgkill), {arg_eq(0, static_cast<uint64_t>(::getpid())), arg_eq(2, SIGUSR2)});
}

// The device ioctls of a virtio-net reset: KVM's kick and call plumbing
// undone, vhost-net rings stopped, the tap's offloads cleared. On a vCPU
// when the driver resets, and on the main thread as the machine is taken down.
void device_reset(Allowlist& l) {
    l.allow_ioctl(KVM_IOEVENTFD);
    l.allow_ioctl(KVM_IRQFD);
    l.allow_ioctl(kKvmSetGsiRouting);
    l.allow_ioctl(VHOST_NET_SET_BACKEND);
    l.allow_ioctl(VHOST_GET_VRING_BASE);
    l.allow_ioctl(TUNSETOFFLOAD);
}

void main_thread(Allowlist& l) {
    waits(l);                          // the stop eventfd and the signalfd of SIGINT/TERM/HUP/USR1
    l.allow(SCMP_SYS(signalfd4));      // made as the wait starts
    l.allow(SCMP_SYS(close));          // the signalfd; every fd as the machine is taken down
    kicks(l);                          // SIGUSR1's vCPU state lines, and stopping the vCPUs
    l.allow(SCMP_SYS(clock_nanosleep));  // usleep between kicks of a vCPU that has not noticed the stop
    device_reset(l);                   // each NIC is reset as it is destroyed
    // A tap's RSS steering program is detached as its NIC goes: an existing
    // tap outlives minivmm and must not keep steering by a dead guest's table.
    l.allow_ioctl(TUNSETSTEERINGEBPF);
}

// vhost=worker, one thread per ring: the loop of net_datapath's send and
// receive and nothing else. Its frames go to and from the tap or raw
// socket with read/readv/writev; write signals the call and error eventfds.
void vhost_worker_thread(Allowlist& l) {
    waits(l);  // the kick and stop eventfds, the tap for frames, the coalescing timer's expiry
    l.allow(SCMP_SYS(readv));
    l.allow(SCMP_SYS(writev));
    coalescing(l);
}

void device_emulation(Allowlist& l);

void vcpu_thread(Allowlist& l) {
    l.allow_ioctl(KVM_RUN);
    // SIGUSR1's state line and the register dump of an unrecoverable exit.
    l.allow_ioctl(KVM_GET_REGS);
    l.allow_ioctl(KVM_GET_SREGS);
    l.allow_ioctl(KVM_GET_VCPU_EVENTS);
    l.allow_ioctl(KVM_GET_LAPIC);
    // --verbose's boot phase times (first instruction, console byte, init
    // marker): the vDSO answers without a call, except on hosts whose clock
    // source has no vDSO reading (seen in emulated hosts).
    l.allow(SCMP_SYS(clock_gettime), {arg_eq(0, CLOCK_MONOTONIC)});
    device_emulation(l);
}

// A NIC's control queue past one kick's budget, a batch at a time: what a
// command does on a vCPU (VQ_PAIRS_SET starts and stops pairs: vhost and tap
// ioctls, worker ring threads), without KVM_RUN or the registers.
void net_ctrl_thread(Allowlist& l) {
    device_emulation(l);
    l.allow(SCMP_SYS(clock_nanosleep));  // stepping aside while a reset or config read waits for the queue
}

// What a vCPU thread does for the devices on its exits.
void device_emulation(Allowlist& l) {
    // Device emulation on exits: the UART's interrupt line, MSI-X messages
    // (config changes, a pending vector unmasked), the ioeventfds, irqfds and
    // MSI routes that follow the guest's BARs, MSI-X table and DRIVER_OK.
    l.allow_ioctl(KVM_IRQ_LINE);
    l.allow_ioctl(KVM_SIGNAL_MSI);
    device_reset(l);  // KVM_IOEVENTFD, KVM_IRQFD, SET_GSI_ROUTING and the reset's vhost and tap calls
    // vhost=kernel on DRIVER_OK: features, memory table and rings to vhost-net.
    l.allow_ioctl(VHOST_GET_FEATURES);
    l.allow_ioctl(VHOST_SET_FEATURES);
    l.allow_ioctl(VHOST_SET_MEM_TABLE);
    l.allow_ioctl(VHOST_SET_VRING_NUM);
    l.allow_ioctl(VHOST_SET_VRING_BASE);
    l.allow_ioctl(VHOST_SET_VRING_ADDR);
    l.allow_ioctl(VHOST_SET_VRING_KICK);
    l.allow_ioctl(VHOST_SET_VRING_CALL);
    l.allow_ioctl(VHOST_SET_VRING_ERR);
    l.allow_ioctl(TUNSETQUEUE);            // the control queue attaches and detaches tap queues
    l.allow(SCMP_SYS(eventfd2));           // a queue's kick, call and error eventfds, at DRIVER_OK
    l.allow(SCMP_SYS(close));              // ... closed at reset
    // vhost=worker: DRIVER_OK and the control queue start ring threads, a
    // reset stops them. Threads of this process only: the flags of
    // pthread_create, no new process and no new namespace.
    constexpr uint64_t kThread = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD;
    constexpr uint64_t kNever = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
                                CLONE_NEWPID | CLONE_NEWNET | CLONE_VFORK | CLONE_PARENT;
    l.allow(SCMP_SYS(clone), {arg_masked(0, kThread | kNever, kThread)});
    // clone3 passes its flags in memory, out of a filter's sight: it fails
    // as on an older kernel, and glibc falls back to clone.
    l.fail(SCMP_SYS(clone3), ENOSYS);
    // What the new thread does under this list before its own is in place:
    // glibc's thread start, then enter_thread().
    l.allow(SCMP_SYS(rseq));
    l.allow(SCMP_SYS(set_robust_list));
    l.allow(SCMP_SYS(prctl), {arg_eq(0, PR_SET_NAME)});
    l.allow(SCMP_SYS(prctl), {arg_eq(0, PR_SET_NO_NEW_PRIVS)});
    l.allow(SCMP_SYS(seccomp), {arg_eq(0, SECCOMP_SET_MODE_FILTER), arg_eq(1, 0)});
    // A ring thread's own calls: its filter only narrows this one, so what
    // it does must pass here too. (read also drains a stopped ring's stop
    // eventfd on this thread.)
    vhost_worker_thread(l);
}

// vhost=off: a queue pair's frames both ways, and the interrupts it injects.
void net_io_thread(Allowlist& l) {
    waits(l);  // the pair's wake-up eventfd, the tap and the coalescing timers' expiry
    l.allow(SCMP_SYS(readv));
    l.allow(SCMP_SYS(writev));
    l.allow_ioctl(KVM_SIGNAL_MSI);
    coalescing(l);
}

// Errors from vhost rings, and calls that came while their vector was masked
// (made pending, or sent if unmasked meanwhile).
void msix_watcher_thread(Allowlist& l) {
    waits(l);
    l.allow_ioctl(KVM_SIGNAL_MSI);
}

// stdin to the UART, which raises its interrupt line.
void console_thread(Allowlist& l) {
    waits(l);
    l.allow_ioctl(KVM_IRQ_LINE);
}

// A kick to every vCPU every 20 ms on nested hosts (Machine::nudge_vcpus).
void nudger_thread(Allowlist& l) {
    l.allow(SCMP_SYS(poll));  // the stop eventfd, with a 20 ms timeout
    kicks(l);
}

// The control socket (--api-sock, vmm/api_socket.hpp): clients accepted on
// the listening socket made before confinement, their lines read and their
// replies sent; pause kicks the vCPUs. Never a new socket or file: the path
// it removes as the VM stops is reached through a directory fd opened then.
void api_thread(Allowlist& l) {
    waits(l);                            // the stop eventfd and the clients (poll, read)
    l.allow(SCMP_SYS(accept4));
    l.allow(SCMP_SYS(recvmsg));          // requests, and the files passed with them (snapshot)
    l.allow(SCMP_SYS(sendto));           // replies, with MSG_NOSIGNAL: a client gone is no SIGPIPE
    l.allow(SCMP_SYS(close));            // a client done or idle too long
    kicks(l);                            // pause: every vCPU out of KVM_RUN
    l.allow(SCMP_SYS(clock_gettime));    // idle limits and uptime, where the vDSO falls back to it
    // Removing the socket: checked to still be ours (by inode), then unlinked.
    l.allow(SCMP_SYS(newfstatat));
    l.allow(SCMP_SYS(unlinkat), {arg_eq(2, 0)});  // a file, never AT_REMOVEDIR
    // A snapshot or migration reads KVM's state here, every vCPU parked
    // (vcpu_state.hpp, vm_state.hpp). Reads only, in the order they are made:
    // the vCPUs', then the VM's. What it needs to know beforehand (the MSR
    // list, the XSAVE size) is found as each vCPU is made. Restoring writes
    // state in Machine's constructor, before any thread or filter exists, so
    // no list has a KVM SET of saved state.
    l.allow_ioctl(KVM_GET_MP_STATE);
    l.allow_ioctl(KVM_GET_REGS);
    l.allow_ioctl(KVM_GET_SREGS);
    l.allow_ioctl(kKvmGetXsave2);    // where KVM has KVM_CAP_XSAVE2
    l.allow_ioctl(kKvmGetXsave);     // where it has only KVM_CAP_XSAVE
    l.allow_ioctl(KVM_GET_FPU);      // where it has neither
    l.allow_ioctl(KVM_GET_XCRS);
    l.allow_ioctl(KVM_GET_DEBUGREGS);
    l.allow_ioctl(KVM_GET_LAPIC);
    l.allow_ioctl(kKvmGetMsrs);
    l.allow_ioctl(KVM_GET_VCPU_EVENTS);
    l.allow_ioctl(KVM_GET_IRQCHIP);  // PIC master, PIC slave, IOAPIC
    l.allow_ioctl(KVM_GET_PIT2);
    l.allow_ioctl(KVM_GET_CLOCK);
    // Quiescing the NICs for a snapshot or a migration's switch-over, and
    // resuming them after (or after a failed migration): the same vhost,
    // tap, KVM eventfd calls and ring threads as a reset and a DRIVER_OK on
    // a vCPU.
    device_emulation(l);
    l.allow(SCMP_SYS(fdatasync));  // a snapshot is on disk before the reply says so
    // Migration: KVM's dirty log on every memory slot, turned on and off by
    // setting the slot again with its flag; the vhost log given to the NICs'
    // backends; the source's tap queues let go at the switch-over and taken
    // back if the migration fails (TUNSETQUEUE is in device_emulation).
    l.allow_ioctl(KVM_SET_USER_MEMORY_REGION);
    l.allow_ioctl(KVM_GET_DIRTY_LOG);
    l.allow_ioctl(VHOST_SET_LOG_BASE);
}
}  // namespace

void write_policy(ThreadKind kind, Allowlist& l) {
    every_thread(l);
    switch (kind) {
        case ThreadKind::Main: return main_thread(l);
        case ThreadKind::Vcpu: return vcpu_thread(l);
        case ThreadKind::VhostWorker: return vhost_worker_thread(l);
        case ThreadKind::NetIo: return net_io_thread(l);
        case ThreadKind::MsixWatcher: return msix_watcher_thread(l);
        case ThreadKind::Console: return console_thread(l);
        case ThreadKind::Nudger: return nudger_thread(l);
        case ThreadKind::NetCtrl: return net_ctrl_thread(l);
        case ThreadKind::Api: return api_thread(l);
    }
}

}  // namespace minivmm
