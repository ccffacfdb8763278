// minivmm: boot a Linux bzImage under KVM.
//
// The story, top to bottom: read the options and the input files; build the
// machine (RAM with the tables, kernel and initrd in it, the NICs' host ports,
// and only then KVM, the devices and vCPUs); say if this KVM cannot run a
// stock kernel at speed; run it until the guest powers off or resets.
// Anything the user can fix ends here as one line on stderr and exit status
// 1; a failure of ours or the host's (a KVM ioctl) as one line and status 2.
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include "vmm/bzimage.hpp"
#include "vmm/cli.hpp"
#include "vmm/ctl.hpp"
#include "vmm/error.hpp"
#include "vmm/kvm.hpp"
#include "vmm/machine.hpp"
#include "vmm/migration_handshake.hpp"
#include "vmm/migration_uri.hpp"
#include "vmm/seccomp.hpp"
#include "vmm/state_records.hpp"

#ifndef MINIVMM_VERSION
#define MINIVMM_VERSION "0.1"
#endif

namespace {
void print_seccomp(minivmm::SeccompMode mode) {
    using namespace minivmm;
    if (mode == SeccompMode::Off) {
        std::fprintf(stderr, "minivmm: seccomp off: no system call filters\n");
        return;
    }
    std::fprintf(stderr, "minivmm: seccomp %s, system calls (ioctl requests) per thread:",
                 mode == SeccompMode::On ? "on" : "log");
    for (int k = 0; k < kThreadKinds; k++) {
        auto kind = static_cast<ThreadKind>(k);
        PolicySize n = seccomp_policy_size(kind);
        std::fprintf(stderr, "%s %s %u (%u)", k ? "," : "", thread_kind_name(kind), n.calls, n.ioctls);
    }
    std::fputc('\n', stderr);
}
// glibc raises its mmap threshold to the size of any mmapped block freed,
// so after the kernel image's copy goes the initrd and the rest land in the
// heap, which stays megabytes long once they are freed (trimmed, not
// shrunk). With transparent huge pages "always", one page touched again in
// such a hole, or khugepaged, makes 2 MiB of it resident. A fixed threshold
// keeps large buffers in mappings of their own that go when freed.
void keep_heap_small() {
    mallopt(M_MMAP_THRESHOLD, 128 << 10);  // glibc's initial value, now never raised
}

// Much of the code that runs does so only while the machine is built:
// option parsing, the kernel's decompression (a whole decompressor, linked
// in) and ELF loading, the tables, and what they use of glibc. Its pages,
// and the neighbours the kernel maps around each page faulted in, would
// stay resident for the VM's lifetime. Executable segments are never
// written (no object here is both writable and executable), so dropping
// their pages loses nothing: the code the running VM uses comes back on
// first use from the page cache. The vDSO is the kernel's and stays.
int drop_code_pages(dl_phdr_info* info, size_t, void*) {
    if (std::strstr(info->dlpi_name, "linux-vdso")) return 0;
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X) || (ph.p_flags & PF_W)) continue;
        uintptr_t lo = (info->dlpi_addr + ph.p_vaddr) & ~(page - 1);
        uintptr_t hi = (info->dlpi_addr + ph.p_vaddr + ph.p_memsz + page - 1) & ~(page - 1);
        [[maybe_unused]] int rc = madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
    }
    return 0;
}
void drop_setup_code() { dl_iterate_phdr(drop_code_pages, nullptr); }

// How long --incoming waits for more of the stream: the source is silent
// only while it pauses the guest (at most 10 s) and collects its last pages.
constexpr int kIncomingStallMs = 60'000;

// A saved guest's stream (--restore's file, --incoming's connection) is
// opened before the machine (and any --jail), and its shape checked against
// the options before anything is built: a wrong --mem is one line, not a
// half-built machine.
minivmm::state::RecordReader start_reading(int fd, const std::string& what, const minivmm::Options& opts,
                                           int stall_ms = -1) {
    using namespace minivmm;
    state::RecordReader r(fd, what, stall_ms);
    r.header();
    state::Record first = r.read();
    if (first.kind != state::Kind::Config) throw state::Error(what + ": does not start with the machine's shape");
    std::string why = state::MachineShape::load(first.body, what).mismatch(Machine::shape(opts));
    if (!why.empty()) throw UserError(what + ": " + why);
    return r;
}

// --incoming: one connection from the migrating minivmm, taken before the
// machine is built (and so before any --jail and --user).
minivmm::Fd take_incoming(const std::string& text) {
    using namespace minivmm;
    MigrationUri uri = parse_migration_uri(text);
    Fd listener = listen_migration(uri);
    std::fprintf(stderr, "minivmm: waiting for a migrating guest on %s\n", text.c_str());
    Fd c = accept_migration(std::move(listener), uri);
    std::fprintf(stderr, "minivmm: migration: receiving the guest\n");
    return c;
}
}  // namespace

// A stop signal (INT, TERM, HUP) pending: the user or the system asked
// this minivmm to stop while a migrating guest arrived.
static void refuse_if_stopped() {
    sigset_t pending;
    if (::sigpending(&pending) < 0) return;
    for (int sig : {SIGINT, SIGTERM, SIGHUP})
        if (sigismember(&pending, sig))
            throw minivmm::UserError(std::string("asked to stop (") + sigabbrev_np(sig) +
                                     ") while the migrating guest arrived: not started here");
}

int main(int argc, char** argv) {
    using namespace minivmm;
    // A reader that goes away (a migration's destination, the pipe a
    // snapshot was passed) is a write's EPIPE, not a signal that ends
    // minivmm with its guest: sockets are written with MSG_NOSIGNAL, but a
    // pipe has no such flag. Nothing is exec'd, so no child inherits this.
    ::signal(SIGPIPE, SIG_IGN);
    // The control socket's client: no VM, no KVM.
    if (argc >= 2 && std::string(argv[1]) == "ctl") return run_ctl(argc - 2, argv + 2);
    keep_heap_small();
    Fd incoming;  // the migration's connection, for the refusal if anything fails
    try {
        Options opts = parse_cli(argc, argv);
        if (opts.help) {
            std::fputs(usage(), stdout);
            return 0;
        }
        if (opts.version) {
            std::printf("minivmm %s\n", MINIVMM_VERSION);
            return 0;
        }
        // Input files first: a typo in a path should be reported as such even
        // on a host where KVM would fail too.
        Fd snapshot;
        std::optional<state::RecordReader> restore;
        std::unique_ptr<BootFiles> files;
        if (opts.restore) {
            snapshot = Fd(::open(opts.restore->c_str(), O_RDONLY | O_CLOEXEC));
            if (!snapshot) throw sys_error("--restore " + *opts.restore);
            restore.emplace(start_reading(snapshot.get(), "--restore " + *opts.restore, opts));
        } else if (opts.incoming) {
            incoming = take_incoming(*opts.incoming);
            // A source that stops sending is given up on, not waited for:
            // it resumes its guest when its own writes stall.
            restore.emplace(start_reading(incoming.get(), "migration on " + *opts.incoming, opts, kIncomingStallMs));
        } else {
            files = std::make_unique<BootFiles>(read_boot_files(opts.kernel, opts.initrd, opts.boot));
        }
        // Before the machine: its device threads start as it is built, and
        // each installs its filter as it starts (vmm/seccomp_policy.cpp).
        seccomp_prepare(opts.seccomp);
        if (opts.verbose) print_seccomp(opts.seccomp);
        // Read now: a jailed machine has no /proc/cpuinfo.
        bool no_hw_virt = Kvm::host_lacks_hw_virt();
        Machine machine(opts, files.get(), restore ? &*restore : nullptr);
        snapshot = Fd();
        if (incoming) {
            // Signals are held while the machine stands (vmm/machine.cpp):
            // one that came while the guest was arriving means "stop", and
            // acted on only after go it would stop a guest the source has
            // given up. Refused now, the source runs it on.
            refuse_if_stopped();
            // Everything is loaded, and no vCPU has run: the guest starts
            // here only on the source's go (vmm/migration_handshake.hpp).
            migration::answer(incoming.get(), "ready");
            migration::await_go(incoming.get(), "migration on " + *opts.incoming);
            incoming = Fd();
            std::fprintf(stderr, "minivmm: the migrated guest runs here\n");
        }
        // Loaded into guest RAM: the files' own copies would only hold memory
        // for as long as the guest runs.
        files.reset();
        malloc_trim(0);  // and give their pages back, wherever malloc put them
        drop_setup_code();
        // After the machine is built, so bad input still gets exactly one line.
        if (no_hw_virt)
            std::fprintf(stderr,
                         "minivmm: warning: this CPU has no VMX/SVM, so /dev/kvm is PVM or similar: a stock "
                         "kernel will run very slowly; use a PVM-enabled guest kernel (CONFIG_PVM_GUEST)\n");
        return machine.run();
    } catch (const UserError& e) {
        if (incoming) migration::answer(incoming.get(), "refused", e.what());
        std::fprintf(stderr, "minivmm: %s\n", e.what());
        return 1;
    } catch (const InternalError& e) {
        if (incoming) migration::answer(incoming.get(), "refused", std::string("internal error: ") + e.what());
        std::fprintf(stderr, "minivmm: internal error: %s\n", e.what());
        return 2;
    } catch (const std::system_error& e) {
        // A thread that cannot start says only EAGAIN at the process limit:
        // with --user, every thread counts against that user's RLIMIT_NPROC.
        bool limit = e.code() == std::errc::resource_unavailable_try_again;
        std::fprintf(stderr, "minivmm: internal error: %s%s\n", e.what(),
                     limit ? " (starting a thread: the user's process limit, RLIMIT_NPROC, reached?)" : "");
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "minivmm: internal error: %s\n", e.what());
        return 2;
    }
}
