"""The machine model without Linux: synthetic kernels on a working KVM.

Runs wherever the KVM probe (kvm_probe.py) finds a KVM that can make and run
a VM, including a PVM one; otherwise in the emulated outer host.
"""
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time

import re

import bzimage
from test_input import MACVTAP, TMP, expect_exit, kernel_file, one_line_error, run_vmm
from vmtest import MINIVMM, REPO, Guest, check, confined, vmm_threads


def scenario_synthetic_guest(r):
    v = ["--verbose"]  # so the stop reason is printed
    # Each way a guest can end the VM with status 0, and the reason it must give.
    endings = [("ACPI S5 poweroff", "off", bzimage.POWEROFF, "guest powered off"),
               ("ACPI reset register", "rst", bzimage.ACPI_RESET, "ACPI reset register"),
               ("i8042 reset line", "kbd", bzimage.I8042_RESET, "i8042"),
               ("triple fault counts as reset,", "tf", bzimage.TRIPLE_FAULT, "triple fault")]
    for what, name, code, reason in endings:
        r.case(f"{what} exits 0",
               lambda name=name, code=code, reason=reason:
               expect_exit(["--kernel", kernel_file(name, code)] + v, 0, stderr_has=reason))
    r.case("serial output reaches stdout",
           lambda: expect_exit(["--kernel", kernel_file("hello", bzimage.serial_print("hello from COM1\n")
                                                        + bzimage.POWEROFF)], 0,
                               stdout_has="hello from COM1"))

    def unrecoverable():
        out, err = expect_exit(["--kernel", kernel_file("mmio", bzimage.JUMP_TO_MMIO_HOLE)], 1,
                               stderr_has="unrecoverable KVM exit")
        check("rip" in err and "cr3" in err, f"no register dump in: {err[:400]!r}")
    r.case("unrecoverable exit dumps registers, exits 1", unrecoverable)

    def sigterm(sig):
        g = Guest([MINIVMM, "--kernel", kernel_file("halt", bzimage.HALT_FOREVER)], f"halt-{sig}")
        try:
            time.sleep(2)
            check(g.proc.poll() is None, "VMM exited before the signal")
            g.proc.send_signal(sig)
            rc = g.wait_exit(10)
            check(rc == 0, f"exit status {rc} after signal {sig}")
            check("stopped by SIG" in g.out, f"no stop message: {g.out[-300:]!r}")
        finally:
            g.kill()
    r.case("SIGTERM stops a halted guest, exits 0", lambda: sigterm(signal.SIGTERM))
    r.case("SIGINT (Ctrl-C) stops a halted guest, exits 0", lambda: sigterm(signal.SIGINT))

    def state_lines():
        g = Guest([MINIVMM, "--cpus", "2", "--kernel", kernel_file("halt", bzimage.HALT_FOREVER)], "halt-usr1")
        try:
            time.sleep(1)
            g.proc.send_signal(signal.SIGUSR1)
            for cpu in (0, 1):
                g.expect(rf"minivmm: vCPU {cpu}: rip [0-9a-f]{{16}} rsp [0-9a-f]{{16}} IF=[01] ", 10)
            g.expect(r"vCPU exits to minivmm: \d+ port I/O", 10)
            check(g.proc.poll() is None, "VMM exited on SIGUSR1")
            g.proc.send_signal(signal.SIGTERM)
            check(g.wait_exit(10) == 0, "exit status after SIGTERM")
        finally:
            g.kill()
    r.case("SIGUSR1 prints each vCPU's state and stats, the guest runs on", state_lines)

    def two_cpus():
        expect_exit(["--cpus", "2", "--kernel", kernel_file("off2", bzimage.POWEROFF)], 0)
    r.case("2 vCPUs created and stopped cleanly", two_cpus)


def scenario_host_ports(r):
    good = kernel_file("good", bzimage.POWEROFF)

    def ports_set_up():
        # Both kinds open natively (a veth's macvtap, a raw socket on it); the guest powers off.
        rc, out, err = run_vmm(["--kernel", good, "--verbose", "--net", "raw=vy,vhost=off",
                                "--net", "macvtap=mvx,vhost=worker"], 30, ("unshare", "-n", "sh", "-c", MACVTAP))
        check(rc == 0, f"exit status {rc}: {err.strip()[:500]}")
        check("raw vy" in err and "macvtap mvx (/dev/tap" in err, f"NICs not described: {err[:800]}")
    r.case("raw= and macvtap= NICs set up (guest powers off, exit 0)", ports_set_up)


def scenario_seccomp(r):
    halt = kernel_file("halt", bzimage.HALT_FOREVER)

    def every_thread(mode, want):
        # Two vCPUs, the console, and a NIC of each kind of thread: raw with
        # vhost=off (its I/O thread), macvtap with vhost=worker; each NIC has
        # its MSI-X watcher. (Worker ring threads start only at DRIVER_OK,
        # which a synthetic guest never sets: test_net checks them.)
        g = Guest(["unshare", "-n", "sh", "-c", MACVTAP, MINIVMM, "--cpus", "2", "--kernel", halt,
                   "--net", "raw=vy,vhost=off", "--net", "macvtap=mvx,vhost=worker", "--seccomp=" + mode],
                  f"seccomp-{mode}")
        try:
            time.sleep(2)
            check(g.proc.poll() is None, f"VMM exited with {g.proc.returncode}: {g.out[-500:]!r}")
            threads = vmm_threads(g.proc.pid)
            names = [n for n, _ in threads]
            for need in ("minivmm", "vCPU 0", "vCPU 1", "console", "MSI-X watcher", "net0-io0"):
                check(need in names, f"no thread {need!r} among {names}")
            check(names.count("MSI-X watcher") == 2, f"not one MSI-X watcher per NIC: {names}")
            other = [(n, s) for n, s in threads if s != want]
            check(not other, f"threads whose Seccomp: is not {want}: {other}")
            g.proc.send_signal(signal.SIGTERM)
            rc = g.wait_exit(10)
            check(rc == 0, f"exit status {rc} after SIGTERM: {g.out[-500:]!r}")
            return f"{len(threads)} threads: {', '.join(names)}"
        finally:
            g.kill()
    r.case("every thread runs under a filter (Seccomp: 2) while a guest runs", lambda: every_thread("on", 2))
    r.case("--seccomp=off: no thread has one (Seccomp: 0)", lambda: every_thread("off", 0))


def scenario_privileges(r):
    halt = kernel_file("halt", bzimage.HALT_FOREVER)
    jail = os.path.join(TMP, "jail")
    os.makedirs(jail, exist_ok=True)

    def running(args, name, then):
        # A NIC of each host kind, opened as root before the switch.
        g = Guest(["unshare", "-n", "sh", "-c", MACVTAP, MINIVMM, "--cpus", "2", "--kernel", halt,
                   "--net", "raw=vy,vhost=off", "--net", "macvtap=mvx,vhost=worker"] + args, name)
        try:
            time.sleep(2)
            check(g.proc.poll() is None, f"VMM exited with {g.proc.returncode}: {g.out[-500:]!r}")
            said = then(g.proc.pid)
            g.proc.send_signal(signal.SIGTERM)
            rc = g.wait_exit(10)
            check(rc == 0, f"exit status {rc} after SIGTERM: {g.out[-500:]!r}")
            return said
        finally:
            g.kill()

    r.case("as root: no thread keeps a capability; no_new_privs",
           lambda: running([], "privs-root", lambda pid: confined(pid)))

    def switched(pid):
        said = confined(pid, 65534, 65534)
        # By inode: the link's text depends on where the reader's own root is
        # (the outer host's test runs see the machine's files under /host).
        root = os.readlink(f"/proc/{pid}/root")
        check(os.path.samestat(os.stat(f"/proc/{pid}/root"), os.stat(jail)),
              f"root is {root!r}, not the jail {jail!r}")
        return said + ", root " + root
    r.case("--user 65534:65534 --jail DIR: every thread switched, DIR is its root",
           lambda: running(["--user", "65534:65534", "--jail", jail], "privs-user", switched))


def scenario_kvm_permission(r):
    good = kernel_file("good", bzimage.POWEROFF)

    def kvm_denied():
        # /dev/kvm is root-only here; nobody may read the kernel but not open KVM.
        os.chmod(good, 0o644)
        os.chmod(TMP, 0o755)
        st = os.stat("/dev/kvm")
        check(st.st_mode & 0o006 == 0, "/dev/kvm is world-accessible here; cannot test EACCES")
        one_line_error(["--kernel", good], "/dev/kvm: permission denied",
                       wrap=("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"), hide_kvm=False)
    r.case("/dev/kvm not permitted", kvm_denied)


# A guest that writes "x" to COM1 over and over, a short delay loop between:
# its output stops while its vCPU is paused and goes on after resume.
SERIAL_LOOP = (lambda body: body + b"\xe9" + struct.pack("<i", -(len(body) + 5)))(
    bzimage.out_dx_al(0x3F8, ord("x")) + b"\xb9" + struct.pack("<I", 1000) + b"\xe2\xfe")  # mov ecx,1000; loop $


def ctl(sock, *args, timeout=60):
    p = subprocess.run([MINIVMM, "ctl", sock] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def ctl_ok(sock, *args):
    rc, out, err = ctl(sock, *args)
    check(rc == 0, f"ctl {' '.join(args)}: exit {rc}: {out.strip()} {err.strip()}")
    reply = json.loads(out)
    check(reply.get("ok") is True, f"ctl {' '.join(args)}: {reply}")
    return reply


def wait_for_socket(g, sock, timeout=30):
    deadline = time.monotonic() + timeout
    while not os.path.exists(sock):
        check(g.proc.poll() is None, f"VMM exited with {g.proc.returncode}: {g.out[-500:]!r}")
        check(time.monotonic() < deadline, f"no socket at {sock} after {timeout}s")
        time.sleep(0.05)


def raw_exchange(sock, data):
    """Sends bytes on one connection; returns the reply lines, one per request line."""
    want = data.count(b"\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(sock)
        s.sendall(data)
        buf = b""
        while buf.count(b"\n") < want:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return [json.loads(line) for line in buf.decode().splitlines()]


def xs(g):
    with g.lock:
        return g.out.count("x")


def quit_and_check(g, sock):
    check(ctl_ok(sock, "quit")["state"] == "stopping", "quit's reply")
    rc = g.wait_exit(20)
    check(rc == 0, f"exit status {rc} after quit: {g.out[-500:]!r}")
    check(not os.path.exists(sock), f"{sock} left behind after quit")


def scenario_control_socket(r):
    loop = kernel_file("serial-loop", SERIAL_LOOP)
    halt = kernel_file("halt", bzimage.HALT_FOREVER)

    def serve(name, args, sock_dir=None, wrap=()):
        d = sock_dir or tempfile.mkdtemp(prefix="api-", dir=TMP)
        sock = os.path.join(d, "api.sock")
        g = Guest(list(wrap) + [MINIVMM, "--api-sock", sock] + args, name)
        wait_for_socket(g, sock)
        return g, sock

    def pause_resume_quit():
        # seccomp on (the default): a call the API thread's list lacks ends the test.
        g, sock = serve("api-main", ["--mem", "256M", "--kernel", loop])
        try:
            mode = stat.S_IMODE(os.lstat(sock).st_mode)
            check(stat.S_ISSOCK(os.lstat(sock).st_mode) and mode == 0o600, f"socket mode {mode:o}, not 600")
            st = ctl_ok(sock, "status")
            check(st["state"] == "running" and st["vcpus"] == 1 and st["memory_mib"] == 256 and st["nics"] == [],
                  f"status: {st}")
            deadline = time.monotonic() + 30
            while xs(g) < 100:
                check(time.monotonic() < deadline, f"the guest wrote {xs(g)} bytes in 30 s")
                time.sleep(0.05)
            check(ctl_ok(sock, "pause")["state"] == "paused", "pause's reply")
            check(ctl_ok(sock, "pause")["state"] == "paused", "a second pause's reply")
            check(ctl_ok(sock, "status")["state"] == "paused", "status after pause")
            time.sleep(0.5)  # what was written before the pause reaches our reader
            held = xs(g)
            time.sleep(1.5)
            check(xs(g) == held, f"the guest wrote {xs(g) - held} bytes while paused")
            check(ctl_ok(sock, "resume")["state"] == "running", "resume's reply")
            deadline = time.monotonic() + 30
            while xs(g) <= held:
                check(time.monotonic() < deadline, "no output in 30 s after resume")
                time.sleep(0.05)
            check(ctl_ok(sock, "status")["state"] == "running", "status after resume")
            quit_and_check(g, sock)
            return f"{held} bytes of output before the pause, none during it, more after resume"
        finally:
            g.kill()
    r.case("control socket: mode 0600, status, pause holds the guest, resume, quit exits 0 and removes it",
           pause_resume_quit)

    def garbage():
        g, sock = serve("api-garbage", ["--kernel", halt])
        try:
            bad = [b"not json", b"[1,2]", b"{\"cmd\":5}", b"{\"cmd\":\"snapshot\"}", b"{\"cmd\":\"migrate\"}",
                   b"{\"cmd\":\"status\",\"x\":1}", b"{\"cmd\":\"stats\",\"nic\":7}", b"\xff\xfe",
                   b"{\"cmd\":\"status\"}" + b" " * 70000]
            replies = raw_exchange(sock, b"\n".join(bad) + b"\n{\"cmd\":\"status\"}\n")
            check(len(replies) == len(bad) + 1, f"{len(replies)} replies to {len(bad) + 1} lines")
            for line, rep in zip(bad, replies):
                check(rep.get("ok") is False and rep.get("error"), f"{line[:40]!r}: {rep}")
            check(replies[-1].get("ok") is True and replies[-1]["state"] == "running",
                  f"status after the garbage: {replies[-1]}")
            # A client that connects and says nothing holds nobody up.
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
                silent.connect(sock)
                check(ctl_ok(sock, "status")["state"] == "running", "status beside a silent client")
            rc, out, err = ctl(sock, "snapshot")
            check(rc == 1 and json.loads(out)["ok"] is False, f"ctl snapshot: exit {rc}, {out!r}")
            quit_and_check(g, sock)
            return f"{len(bad)} bad lines answered with errors"
        finally:
            g.kill()
    r.case("control socket: bad lines get error replies, the VM answers on", garbage)

    def refusals():
        rc, out, err = ctl(os.path.join(TMP, "no-such.sock"), "status")
        lines = err.strip().splitlines()
        check(rc == 1 and out == "" and len(lines) == 1 and "no such socket" in lines[0],
              f"ctl on a missing socket: exit {rc}, {err!r}")
        taken = kernel_file("not-a-socket", b"")
        one_line_error(["--kernel", halt, "--api-sock", taken], "exists and is not a socket")
        check(os.path.exists(taken), "the refused path was removed")
    r.case("control socket: ctl on a missing socket and --api-sock on a file: one line, exit 1", refusals)

    def paused_quit():
        g, sock = serve("api-paused-quit", ["--cpus", "2", "--kernel", halt])
        try:
            check(ctl_ok(sock, "pause")["state"] == "paused", "pause's reply")
            st = ctl_ok(sock, "status")
            check(st["state"] == "paused" and st["vcpus"] == 2, f"status: {st}")
            quit_and_check(g, sock)
        finally:
            g.kill()
    r.case("control socket: quit while both vCPUs are paused exits 0", paused_quit)

    def confined_socket():
        jail = os.path.join(TMP, "jail")
        os.makedirs(jail, exist_ok=True)
        # The socket's directory is the user's: it removes the socket as it ends.
        d = tempfile.mkdtemp(prefix="api-user-", dir=TMP)
        os.chown(d, 65534, 65534)
        os.chmod(TMP, 0o755)
        g, sock = serve("api-confined", ["--cpus", "2", "--kernel", halt, "--user", "65534:65534", "--jail", jail],
                        sock_dir=d)
        try:
            check(ctl_ok(sock, "status")["state"] == "running", "status")
            check(ctl_ok(sock, "pause")["state"] == "paused", "pause")
            check(ctl_ok(sock, "resume")["state"] == "running", "resume")
            quit_and_check(g, sock)
        finally:
            g.kill()
    r.case("control socket: --user 65534:65534 --jail DIR, the path made before and removed after", confined_socket)


# The unit tests of the vCPU and VM state that need a real KVM
# (tests/unit/kvm_state_test.cpp): the plain unit run reports them skipped;
# here, where KVM runs VMs, MINIVMM_TEST_KVM=1 makes them run, and each
# must pass.
KVM_STATE_TESTS = ["RoundTripIntoAFreshVm", "RefusedStateIsAStateError", "APausedVcpuHasFinishedItsInstruction",
                   "SavedOnTheApiThreadRestoredBeforeFilters"]


def scenario_kvm_state(r):
    out = ""

    def run():
        nonlocal out
        p = subprocess.run([os.path.join(REPO, "build", "unit-tests"),
                            "--gtest_filter=" + ":".join("KvmState." + t for t in KVM_STATE_TESTS)],
                           env=dict(os.environ, MINIVMM_TEST_KVM="1"), capture_output=True, text=True, timeout=600)
        out = p.stdout + p.stderr
        check(f"{len(KVM_STATE_TESTS)} tests" in out, f"gtest did not run the {len(KVM_STATE_TESTS)} tests:\n{out[-1500:]}")
        check("SKIPPED" not in out, f"a KVM state test was skipped:\n{out[-1500:]}")
    r.case("KVM state unit tests run against /dev/kvm", run)
    for t in KVM_STATE_TESTS:
        def one(t=t):
            ok = re.search(rf"^\[       OK \] KvmState\.{t} ", out, re.M)
            i = out.find(f"[ RUN      ] KvmState.{t}")
            check(ok, f"failed:\n{out[i:i + 1500] if i >= 0 else out[-800:]}")
        r.case(f"KVM state: {t}", one)


def scenario_snapshot(r):
    """The whole machine saved and continued: the serial loop's vCPU goes on
    printing after a snapshot (in the same process, and restored in a new
    one), and a snapshot that is damaged or does not fit is refused."""
    loop = kernel_file("serial-loop", SERIAL_LOOP)
    d = tempfile.mkdtemp(prefix="snap-", dir=TMP)
    snap = os.path.join(d, "vm.snap")

    def wait_xs(g, more_than, what):
        deadline = time.monotonic() + 30
        while xs(g) <= more_than:
            check(g.proc.poll() is None, f"{what}: minivmm exited {g.proc.returncode}: {g.out[-400:]!r}")
            check(time.monotonic() < deadline, f"{what}: no output in 30 s")
            time.sleep(0.05)

    def save_and_restore():
        sock = os.path.join(d, "api.sock")
        g = Guest([MINIVMM, "--api-sock", sock, "--mem", "256M", "--cpus", "2", "--kernel", loop], "snap-source")
        try:
            wait_for_socket(g, sock)
            wait_xs(g, 100, "before the snapshot")
            rep = ctl_ok(sock, "snapshot", snap)  # resumes after
            check(rep["state"] == "running" and rep["ram_pages"] > 0 and rep["bytes"] == os.path.getsize(snap),
                  f"snapshot's reply: {rep}")
            check(stat.S_IMODE(os.stat(snap).st_mode) == 0o600, "the snapshot is not owner-only")
            wait_xs(g, xs(g), "after a snapshot that resumes")
            rep = ctl_ok(sock, "snapshot", snap, "then=stop")
            check(rep["state"] == "stopping", f"snapshot then=stop: {rep}")
            rc = g.wait_exit(20)
            check(rc == 0, f"exit status {rc} after snapshot then=stop: {g.out[-400:]!r}")
        finally:
            g.kill()
        sock2 = os.path.join(d, "api2.sock")
        g2 = Guest([MINIVMM, "--api-sock", sock2, "--mem", "256M", "--cpus", "2", "--restore", snap], "snap-restored")
        try:
            wait_for_socket(g2, sock2)
            wait_xs(g2, 100, "after --restore")
            st = ctl_ok(sock2, "status")
            check(st["state"] == "running" and st["vcpus"] == 2, f"status after restore: {st}")
            quit_and_check(g2, sock2)
            return f"{os.path.getsize(snap)} bytes of snapshot; the loop printed {xs(g2)} bytes after --restore"
        finally:
            g2.kill()
    r.case("snapshot: the guest runs on after it; then=stop exits 0; --restore continues it in a new process",
           save_and_restore)

    def refusals():
        check(os.path.exists(snap), "no snapshot from the case before")
        good = open(snap, "rb").read()
        base = ["--mem", "256M", "--cpus", "2"]
        one_line_error(base + ["--restore", os.path.join(d, "none.snap")], "No such file")
        one_line_error(base + ["--restore", snap, "--kernel", loop], "drop it")
        one_line_error(["--mem", "512M", "--cpus", "2", "--restore", snap], "256 MiB of RAM, this one 512 MiB")
        one_line_error(["--mem", "256M", "--restore", snap], "2 vCPU(s), this one 1")
        one_line_error(base + ["--net", "tap-snap", "--restore", snap], "NIC")
        bad = os.path.join(d, "bad.snap")
        for what, data, keyword in (("not a snapshot", b"hello, world\n" * 10, "not minivmm saved state"),
                                    ("truncated", good[:len(good) // 2], "truncated"),
                                    ("a byte flipped", good[:len(good) // 3] + bytes([good[len(good) // 3] ^ 1]) +
                                     good[len(good) // 3 + 1:], "corrupted")):
            with open(bad, "wb") as f:
                f.write(data)
            one_line_error(base + ["--restore", bad], keyword, hide_kvm=False)
        return "missing, mismatched (RAM, vCPUs, NICs), foreign, truncated and corrupted snapshots refused"
    r.case("snapshot: missing, mismatched, truncated and corrupted snapshots: one line, exit 1", refusals)
