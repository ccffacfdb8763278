"""Drive a guest through its serial console, as a person at the terminal would.

Guest starts minivmm (or QEMU) with the console on pipes, echoes everything it
prints to a log, and lets a test wait for text and run shell commands in the
guest's busybox shell. Nothing here decides pass or fail; the tests do.
"""
import os
import re
import resource
import signal
import subprocess
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Each kernel series (MINIVMM_KERNEL: 6.1, the default, or 6.12) has its own images.
KERNEL_SERIES = os.environ.get("MINIVMM_KERNEL", "6.1")
IMAGES = os.environ.get("MINIVMM_IMAGES", os.path.join(
    REPO, "build", "images" if KERNEL_SERIES == "6.1" else "images-" + KERNEL_SERIES))
MINIVMM = os.path.join(REPO, "minivmm")
KERNEL = os.path.join(IMAGES, "vmlinuz")
INITRD = os.path.join(IMAGES, "guest-initrd.gz")
INIT_MARKER = "MINIVMM-GUEST-INIT-OK"
PROMPT = "guest# "


class TestFailure(Exception):
    pass


class BootFailure(TestFailure):
    """The guest never reached its init: the harness may run the scenario again in
    a fresh VM, up to harness.ATTEMPTS attempts in all."""


class GuestPanic(TestFailure):
    """The guest kernel panicked: nothing it was doing will finish, so waits end at once."""

    def __init__(self, message, double_fault):
        super().__init__(message)
        self.double_fault = double_fault

    def cpu_fault(self):
        # A double fault (an event delivered on a user stack at kernel entry)
        # is how the emulated outer host's nested SVM has been seen to break
        # guests, QEMU's as well as ours (README, known problems); other
        # panics may be ours.
        return self.double_fault


class GuestHang(TestFailure):
    """The VMM runs but the guest no longer answers its console: later waits on it fail at once."""


PANIC = "Kernel panic - not syncing"
# Printed when the outer host can no longer run guests; tests/rig/outer-run.sh
# looks for it.
OUTER_WEDGED = "MINIVMM-OUTER-WEDGED"


def check(cond, what):
    if not cond:
        raise TestFailure(what)


class Guest:
    def __init__(self, argv, log_name, verbose=True):
        self.argv = argv
        self.out = ""
        self.hung = ""  # why the guest is taken to have stopped responding, once it has
        self.panic_at = -1  # where the guest's kernel panic message starts, once it has
        self.lock = threading.Condition()
        self.verbose = verbose
        self.started = time.monotonic()
        # In the outer host, MINIVMM_RESULTS is shared back to the real machine.
        logdir = os.path.join(os.environ.get("MINIVMM_RESULTS") or os.environ.get("TMPDIR", "/tmp"),
                              "minivmm-tests")
        os.makedirs(logdir, exist_ok=True)
        self.log_path = os.path.join(logdir, log_name + ".log")
        if os.path.exists(self.log_path):  # keep a retried attempt's log
            os.replace(self.log_path, self.log_path + ".previous")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, bufsize=0)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.seq = 0

    def _read(self):
        while True:
            chunk = self.proc.stdout.read(4096)
            if not chunk:
                break
            text = chunk.decode("utf-8", "replace")
            self.log.write(text)
            self.log.flush()
            with self.lock:
                self.out += text
                if self.panic_at < 0 and PANIC in self.out[-(len(text) + len(PANIC)):]:
                    self.panic_at = self.out.find(PANIC)
                self.lock.notify_all()
        with self.lock:
            self.lock.notify_all()

    def expect(self, pattern, timeout, start=0):
        """Wait until regex pattern appears in the output after offset start."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        with self.lock:
            while True:
                m = rx.search(self.out, start)
                if m:
                    return m
                if self.panic_at >= 0:
                    raise self._panic(f"was waiting for {pattern!r}")
                if self.hung:
                    raise GuestHang(f"did not wait for {pattern!r}: the guest stopped responding earlier "
                                    f"({self.hung})")
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    tail = self.out[-600:]
                    break
                self.lock.wait(min(left, 1.0))
        if self.proc.poll() is not None:
            raise TestFailure(f"did not see {pattern!r}: VMM exited with status {self.proc.returncode} "
                              f"(log {self.log_path}); last output:\n{tail}")
        self._dump_threads()
        # Is it the command or the whole guest? Ctrl-C at the shell tells: a
        # guest that still answers failed this case only (a stalled transfer
        # is a device bug, never retried). One that does not answer is hung:
        # every later wait on it fails at once, and the harness may retry the
        # scenario, as for the emulated host's CPU faults.
        with self.lock:
            mark = len(self.out)
        self.send("\x03\n")
        deadline = time.monotonic() + 30
        with self.lock:
            while PROMPT not in self.out[mark:] and time.monotonic() < deadline:
                self.lock.wait(1.0)
            answered = PROMPT in self.out[mark:]
        what = f"did not see {pattern!r}: not within {timeout}s (log {self.log_path})"
        if answered:
            raise TestFailure(f"{what}; the guest still answers (Ctrl-C brought its prompt back); "
                              f"last output:\n{tail}")
        self.hung = f"nothing for {pattern!r} within {timeout}s, no prompt after Ctrl-C"
        raise GuestHang(f"{what}; the guest no longer answers its console (not even Ctrl-C); "
                        f"last output:\n{tail}")

    def _dump_threads(self):
        """For a hung guest: where each VMM thread is, into the log. A vCPU
        thread's kernel stack says whether it is in the guest (KVM_RUN) or
        waiting; a userspace backtrace would need symbols and ptrace, which a
        thread stuck in the outer kernel does not answer."""
        self._sample_vcpus()
        task = f"/proc/{self.proc.pid}/task"
        try:
            for tid in sorted(os.listdir(task)):
                def read(name):
                    try:
                        with open(f"{task}/{tid}/{name}") as f:
                            return f.read()
                    except OSError as e:
                        return f"({e.strerror})"
                stat = read("stat").split()
                stack = " < ".join(ln.split()[-1] for ln in read("stack").splitlines()[:8])
                self.log.write(f"\n[vmtest] thread {tid} {read('comm').strip()} state {stat[2] if len(stat) > 14 else '?'} "
                               f"utime {stat[13] if len(stat) > 14 else '?'} kernel stack: {stack}")
            self.log.write("\n")
            self.log.flush()
        except Exception as e:  # diagnostics only
            self.log.write(f"\n[vmtest] thread dump failed: {e}\n")

    def _sample_vcpus(self, samples=5):
        """SIGUSR1 makes minivmm print stats and each vCPU's RIP and interrupt
        state; a few samples tell a guest spinning in one place from one
        waiting on an interrupt. RIPs are given relative to where the guest's
        init said the kernel text lies."""
        with self.lock:
            mark = len(self.out)
        for _ in range(samples):
            os.kill(self.proc.pid, signal.SIGUSR1)
            time.sleep(0.3)
        with self.lock:
            lines = re.findall(r"minivmm: vCPU \d+: rip ([0-9a-f]{16})", self.out[mark:])
            text = re.search(r"kernel _text at ([0-9a-f]{16})", self.out)
        names = symbolize([int(x, 16) for x in lines], int(text.group(1), 16) if text else None)
        self.log.write("\n[vmtest] vCPU RIPs: " + ", ".join(names) + "\n")
        self.log.flush()

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def boot(self, timeout=600):
        """Wait for the init marker and the shell prompt; returns seconds taken."""
        try:
            m = self.expect(INIT_MARKER, timeout)
        except TestFailure as e:
            raise BootFailure(str(e)) from None
        took = time.monotonic() - self.started
        self.expect(re.escape(PROMPT), 60, m.end())
        return took

    def run(self, cmd, timeout=120):
        """Run a shell command in the guest; returns (status, output)."""
        self.seq += 1
        start, end = f"__MVS{self.seq}__", f"__MVE{self.seq}__"
        with self.lock:
            mark = len(self.out)
        # The markers are assembled by the shell (echo A""B), so the echo of
        # the typed command line, however the terminal wraps it, never matches.
        q = lambda t: t[:4] + '""' + t[4:]
        self.send(f"echo {q(start)}; {cmd}; echo {q(end)} $?\n")
        m0 = self.expect(r"(?m)^" + re.escape(start) + r"\r?$", timeout, mark)
        m = self.expect(r"(?m)^" + re.escape(end) + r" (\d+)", timeout, m0.end())
        body = self.out[m0.end():m.start()].replace("\r", "")
        return int(m.group(1)), body.lstrip("\n")

    def _panic(self, doing):
        # The oops report (its first line names the exception) comes a few
        # KiB before "Kernel panic": two register dumps and a trace.
        p = self.panic_at
        oops = self.out[max(0, p - 8000):p + 200]
        return GuestPanic(f"guest kernel panicked; {doing} (log {self.log_path}):\n{self.out[max(0, p - 1500):p + 120]}",
                          "PANIC: double fault" in oops)

    def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            with self.lock:
                if self.panic_at >= 0:  # a panicked guest exits only if told to (panic=N)
                    raise self._panic("was waiting for the VMM to exit")
            time.sleep(0.2)
        try:
            rc = self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise TestFailure(f"VMM still running {timeout}s after it should have exited "
                              f"(log {self.log_path})")
        self.reader.join(5)
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                # SIGKILL waits for every thread to leave the kernel; a vCPU
                # that the emulated outer host never lets out of guest mode
                # does not (README, known problems). Nothing more can run
                # well in this outer host: say so, and outer-run.sh retries
                # the whole run in a fresh one.
                self._dump_threads()
                print(f"{OUTER_WEDGED}: minivmm (pid {self.proc.pid}) survived SIGKILL for 30 s, a vCPU stuck in "
                      f"the outer kernel (log {self.log_path})", flush=True)
                os._exit(3)
        self.log.close()


# Task flags (/proc/PID/task/TID/stat) of threads the kernel runs inside a
# process: a kernel thread, or a user worker (KVM's NX huge page recovery;
# vhost-net's workers on newer kernels). They are not minivmm's to filter.
PF_USER_WORKER, PF_KTHREAD = 0x4000, 0x200000


def vmm_thread_status(pid):
    """minivmm's own threads: [(name, {field: value} of its status)], the
    kernel's threads in the process left out."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/stat") as f:
                stat = f.read()
            with open(f"{base}/comm") as f:
                name = f.read().strip()
            with open(f"{base}/status") as f:
                status = f.read()
        except OSError:  # it ended meanwhile
            continue
        flags = int(stat[stat.rfind(")") + 2:].split()[6])  # field 9; the name may hold spaces
        if flags & (PF_KTHREAD | PF_USER_WORKER):
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        out.append((name, {k: " ".join(v.split()) for k, v in fields.items()}))
    return sorted(out, key=lambda t: t[0])


def vmm_threads(pid):
    """minivmm's own threads: [(name, the Seccomp: mode of its status)]."""
    return [(name, int(f.get("Seccomp", -1))) for name, f in vmm_thread_status(pid)]


def confined(pid, uid=0, gid=0):
    """Checks that every minivmm thread runs as uid/gid with no capability,
    no supplementary group (when not root) and no_new_privs set."""
    threads = vmm_thread_status(pid)
    check(threads, "no minivmm thread found")
    for name, f in threads:
        want = {"Uid": f"{uid} {uid} {uid} {uid}", "Gid": f"{gid} {gid} {gid} {gid}", "CapEff": "0" * 16,
                "CapPrm": "0" * 16, "CapBnd": "0" * 16, "NoNewPrivs": "1"}
        if uid:
            want["Groups"] = ""
        bad = {k: f.get(k) for k, v in want.items() if f.get(k) != v}
        check(not bad, f"thread {name!r}: {bad} (want {want})")
    return f"{len(threads)} threads as {uid}:{gid}, no capabilities"


def smaps(pid):
    """minivmm's mappings from /proc/PID/smaps: [dict(start, end, perms,
    path, Size, Rss, ...)], sizes in KiB."""
    maps, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
            if m:
                cur = {"start": int(m.group(1), 16), "end": int(m.group(2), 16), "perms": m.group(3),
                       "path": m.group(4).strip()}
                maps.append(cur)
                continue
            m = re.match(r"^(\w+):\s+(\d+) kB", line)
            if m and cur is not None:
                cur[m.group(1)] = int(m.group(2))
    return maps


def _thread_stack_pointers(pid):
    """{stack pointer: thread name} of minivmm's threads, from each one's
    /proc/PID/task/TID/syscall (a thread blocked in a call shows its sp)."""
    sps = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                fields = f.read().split()
        except OSError:
            continue
        if len(fields) >= 8:
            sps[int(fields[-2], 16)] = name
    return sps


ARENA_ALIGN = 64 << 20  # glibc's per-thread malloc heaps sit at multiples of HEAP_MAX_SIZE


def rss_breakdown(pid, guest_mib):
    """What minivmm's resident memory outside guest RAM (the mappings of
    guest_mib or more) is made of: [(what, Rss KiB)], largest first. Files
    are named with their part (text, read-only data, data: relocated and
    writable); anonymous memory as the heap, a thread's stack (named by the
    thread whose stack pointer is in it, when it is blocked in a call), a
    malloc arena, or by its size; marked when transparent huge pages back
    it."""
    sps = _thread_stack_pointers(pid)
    parts = {}
    below = None
    for m in smaps(pid):
        guarded, below = below is not None and below["end"] == m["start"] and below["perms"] == "---p", m
        rss = m.get("Rss", 0)
        if m.get("Size", 0) >= guest_mib * 1024 or not rss:
            continue
        path, perms = m["path"], m["perms"]
        if path.startswith("/"):
            kind = "text" if "x" in perms else "data" if "w" in perms else "read-only"
            what = f"{os.path.basename(path)} {kind}"
        elif path:
            what = path  # [heap], [stack], [vdso], ...
        else:
            owner = [n for sp, n in sps.items() if m["start"] <= sp < m["end"]]
            if owner:
                what = f"stack of {owner[0]}"
            elif guarded and m["start"] % ARENA_ALIGN:  # glibc's guard page below: a thread's stack
                what = "stack of a thread not in a system call"
            elif m["start"] % ARENA_ALIGN == 0:
                what = "malloc arena"
            else:
                what = f"anonymous {m['Size']} KiB mapping"
            if m.get("AnonHugePages"):  # the first suspect when a part is 2 MiB
                what += " (transparent huge pages)"
        parts[what] = parts.get(what, 0) + rss
    return sorted(parts.items(), key=lambda t: -t[1])


def format_breakdown(parts, top=12):
    """One line per part, the largest `top` first, in KiB."""
    lines = [f"{kib:6d} KiB  {what}" for what, kib in parts[:top]]
    rest = sum(kib for _, kib in parts[top:])
    if rest:
        lines.append(f"{rest:6d} KiB  {len(parts) - top} more")
    return "\n".join(lines)


def rss_outside_guest_mib(pid, guest_mib):
    """Resident memory of minivmm outside the guest's RAM (the mappings of
    guest_mib or more), from /proc/PID/smaps: what the VMM itself costs."""
    return sum(kib for _, kib in rss_breakdown(pid, guest_mib)) / 1024


def symbolize(rips, text_at):
    """Kernel addresses as offsets from _text, which KASLR does not change:
    look them up in any boot's /proc/kallsyms (Debian's System.map is a stub)."""
    if text_at is None:
        return [f"{r:#x}" for r in rips]
    return [f"_text+{r - text_at:#x}" if r >= text_at else f"{r:#x}" for r in rips]


def minivmm(*args, kernel=KERNEL, initrd=INITRD, log_name="guest", wrap=()):
    """wrap: a command prefix, such as ["ip", "netns", "exec", NS] (which execs)."""
    argv = list(wrap) + [MINIVMM, "--kernel", kernel]
    if initrd:
        argv += ["--initrd", initrd]
    return Guest(argv + list(args), log_name)


def children_max_rss_kib():
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
