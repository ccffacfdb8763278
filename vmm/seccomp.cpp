// The mechanics of seccomp-bpf: the filters compiled once with libseccomp,
// installed by each thread as it starts, and the SIGSYS handler that ends
// minivmm when one traps. The lists themselves: seccomp_policy.cpp.
#include "vmm/seccomp.hpp"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <vector>

#include "vmm/error.hpp"
#include "vmm/kvm.hpp"
#include "vmm/seccomp_policy.hpp"

namespace minivmm {

namespace {
// Set by seccomp_prepare() before any filtered thread starts, read-only after.
SeccompMode g_mode = SeccompMode::Off;
bool g_prepared = false;
std::vector<sock_filter> g_programs[kThreadKinds];
// System call names by number, looked up in advance: the SIGSYS handler may
// only make calls every list allows, and resolving a name allocates.
constexpr int kNames = 1024;
const char* g_names[kNames];
uint32_t g_arch = 0;

// The console's saved settings as the kernel takes them (TCSETS): glibc's
// tcsetattr converts them, and may make other calls first (it reads them
// back with TCGETS), which the handler could not make.
struct KernelTermios {
    uint32_t iflag, oflag, cflag, lflag;
    uint8_t line, cc[19];
};
static_assert(sizeof(KernelTermios) == 36);
std::atomic<int> g_term_fd{-1};
KernelTermios g_term{};

// The thread's name for the SIGSYS line; plain chars, readable in a handler.
thread_local char t_name[48];

const char* const kKindNames[kThreadKinds] = {"main", "vCPU", "vhost worker", "I/O", "MSI-X watcher", "console",
                                              "vCPU nudger", "control queue", "API"};

scmp_filter_ctx new_filter(SeccompMode mode) {
    uint32_t action = mode == SeccompMode::Log ? SCMP_ACT_LOG : SCMP_ACT_TRAP;
    scmp_filter_ctx ctx = seccomp_init(action);
    if (!ctx) throw InternalError("seccomp_init failed");
    // A call through another ABI (int 0x80, x32) is as forbidden as any other.
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, action);
    // enter_thread() sets no_new_privs itself, once, before installing.
    if (rc == 0) rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    if (rc < 0) {
        seccomp_release(ctx);
        throw internal_error("seccomp_attr_set", -rc);
    }
    return ctx;
}

struct Filter {
    scmp_filter_ctx ctx;
    explicit Filter(SeccompMode mode) : ctx(new_filter(mode)) {}
    ~Filter() { seccomp_release(ctx); }
    Filter(const Filter&) = delete;
    Filter& operator=(const Filter&) = delete;
};

// The BPF program, through a memory file: libseccomp 2.5 exports to an fd.
std::vector<sock_filter> compile(ThreadKind kind, SeccompMode mode) {
    Filter f(mode);
    Allowlist list(f.ctx);
    write_policy(kind, list);
    Fd mem(memfd_create("minivmm-seccomp", MFD_CLOEXEC));
    if (!mem) throw internal_error("memfd_create");
    int rc = seccomp_export_bpf(f.ctx, mem.get());
    if (rc < 0) throw internal_error(std::string("seccomp_export_bpf (") + thread_kind_name(kind) + ")", -rc);
    off_t size = lseek(mem.get(), 0, SEEK_END);
    if (size <= 0 || size % sizeof(sock_filter) || size / sizeof(sock_filter) > BPF_MAXINSNS)
        throw InternalError(std::string("seccomp: the ") + thread_kind_name(kind) + " filter has a bad size");
    std::vector<sock_filter> prog(static_cast<size_t>(size) / sizeof(sock_filter));
    if (pread(mem.get(), prog.data(), static_cast<size_t>(size), 0) != size) throw internal_error("seccomp: reading the filter");
    return prog;
}

// Appends to a fixed buffer; no allocation, for the signal handler.
struct Line {
    char buf[256];
    size_t n = 0;
    void add(const char* s) {
        while (*s && n < sizeof buf) buf[n++] = *s++;
    }
    void number(long v) {
        char d[24];
        int i = 0;
        unsigned long u = v < 0 ? 0ul - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
        do d[i++] = static_cast<char>('0' + u % 10); while ((u /= 10) && i < 23);
        if (v < 0) add("-");
        while (i > 0 && n < sizeof buf) buf[n++] = d[--i];
    }
};

void on_sigsys(int, siginfo_t* si, void*) {
    int fd = g_term_fd.load();
    if (fd >= 0) ::ioctl(fd, TCSETS, &g_term);
    Line l;
    l.add("\r\nminivmm: internal error: ");
    l.add(t_name[0] ? t_name : "unnamed thread");
    l.add(": system call ");
    int nr = si->si_syscall;
    if (si->si_arch == g_arch && nr >= 0 && nr < kNames && g_names[nr]) {
        l.add(g_names[nr]);
    } else {
        l.add("number ");
        l.number(nr);
        if (si->si_arch != g_arch) l.add(" of another ABI");
    }
    l.add(" is not allowed on this thread (seccomp)\n");
    [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, l.buf, l.n);
    _exit(2);
}
}  // namespace

const char* thread_kind_name(ThreadKind kind) { return kKindNames[static_cast<int>(kind)]; }

scmp_arg_cmp arg_eq(unsigned n, uint64_t value) { return scmp_arg_cmp{n, SCMP_CMP_EQ, value, 0}; }

scmp_arg_cmp arg_masked(unsigned n, uint64_t mask, uint64_t value) {
    return scmp_arg_cmp{n, SCMP_CMP_MASKED_EQ, mask, value};
}

void Allowlist::add(uint32_t action, int nr, std::initializer_list<scmp_arg_cmp> args) {
    int rc = seccomp_rule_add_array(ctx_, action, nr, static_cast<unsigned>(args.size()), args.begin());
    if (rc < 0) {
        char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
        std::string what = std::string("seccomp: a rule for ") + (name ? name : std::to_string(nr).c_str());
        free(name);
        throw internal_error(what, -rc);
    }
}

void Allowlist::allow(int nr) { allow(nr, {}); }

void Allowlist::allow(int nr, std::initializer_list<scmp_arg_cmp> args) {
    add(SCMP_ACT_ALLOW, nr, args);
    calls_.insert(nr);
}

void Allowlist::allow_ioctl(unsigned long request) {
    allow(SCMP_SYS(ioctl), {arg_masked(1, 0xffffffffu, request & 0xffffffffu)});
    ioctls_++;
}

void Allowlist::fail(int nr, int err) { add(SCMP_ACT_ERRNO(static_cast<uint32_t>(err)), nr, {}); }

void seccomp_prepare(SeccompMode mode) {
    g_mode = mode;
    if (mode == SeccompMode::Off) return;
    g_arch = seccomp_arch_native();
    for (int nr = 0; nr < kNames; nr++) g_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
    for (int k = 0; k < kThreadKinds; k++) g_programs[k] = compile(static_cast<ThreadKind>(k), mode);
    struct sigaction sa {};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, nullptr) < 0) throw internal_error("sigaction(SIGSYS)");
    g_prepared = true;
}

void enter_thread(ThreadKind kind, const std::string& name) {
    std::strncpy(t_name, name.c_str(), sizeof t_name - 1);
    // The main thread's name is the process's, as ps and pgrep show it.
    if (kind != ThreadKind::Main) {
        char comm[16] = {};
        std::strncpy(comm, name.c_str(), sizeof comm - 1);
        prctl(PR_SET_NAME, comm, 0, 0, 0);
    }
    if (!g_prepared) return;
    // Without no_new_privs only a thread with CAP_SYS_ADMIN may install one.
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) throw internal_error(name + ": prctl(PR_SET_NO_NEW_PRIVS)");
    const auto& p = g_programs[static_cast<int>(kind)];
    sock_fprog prog{static_cast<unsigned short>(p.size()), const_cast<sock_filter*>(p.data())};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
        throw internal_error(name + ": installing its seccomp filter");
}

void trap_restores_terminal(int fd, const termios* saved) {
    if (!saved) {
        g_term_fd = -1;
        return;
    }
    KernelTermios k{saved->c_iflag, saved->c_oflag, saved->c_cflag, saved->c_lflag, saved->c_line, {}};
    static_assert(sizeof saved->c_cc >= sizeof k.cc);  // the same indices (VINTR, VMIN...) on Linux
    std::memcpy(k.cc, saved->c_cc, sizeof k.cc);
    g_term = k;
    g_term_fd = fd;
}

PolicySize seccomp_policy_size(ThreadKind kind) {
    Filter f(SeccompMode::On);
    Allowlist list(f.ctx);
    write_policy(kind, list);
    return {list.calls(), list.ioctls()};
}

}  // namespace minivmm
