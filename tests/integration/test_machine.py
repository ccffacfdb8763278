"""The machine model without Linux: synthetic kernels and bad user input.

Runs on any host with /dev/kvm (including a PVM one); no outer host needed.
"""
import os
import signal
import subprocess
import tempfile
import time

import bzimage
from vmtest import MINIVMM, Guest, check

TMP = tempfile.mkdtemp(prefix="minivmm-machine-")


def kernel_file(name, code=None, data=None):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(data if data is not None else bzimage.make_bzimage(code))
    return path


def run_vmm(args, timeout=60, wrap=()):
    p = subprocess.run(list(wrap) + [MINIVMM] + args, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def expect_exit(args, want_rc, stdout_has=None, stderr_has=None, timeout=60):
    rc, out, err = run_vmm(args, timeout)
    check(rc == want_rc, f"exit status {rc}, wanted {want_rc}; stderr: {err.strip()[:500]}")
    if stdout_has:
        check(stdout_has in out, f"stdout lacks {stdout_has!r}: {out[:300]!r}")
    if stderr_has:
        check(stderr_has in err, f"stderr lacks {stderr_has!r}: {err[:500]!r}")
    return out, err


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


def one_line_error(args, keyword, wrap=()):
    rc, out, err = run_vmm(args, 30, wrap)
    check(rc != 0, f"exit status 0 for bad input {args}")
    check(rc < 128, f"killed by signal {rc - 128} (a crash) for {args}")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    check(len(lines) == 1, f"wanted one line on stderr, got {len(lines)}: {err!r}")
    check(lines[0].startswith("minivmm: "), f"line does not start with 'minivmm: ': {lines[0]!r}")
    check(keyword.lower() in lines[0].lower(), f"line does not mention {keyword!r}: {lines[0]!r}")


def scenario_bad_input(r):
    good = kernel_file("good", bzimage.POWEROFF)
    r.case("missing kernel", lambda: one_line_error(["--kernel", "/nonexistent/bzImage"], "No such file"))
    r.case("no --kernel", lambda: one_line_error([], "--kernel"))
    r.case("kernel is a directory", lambda: one_line_error(["--kernel", TMP], "not a regular file"))
    r.case("kernel is not a bzImage", lambda: one_line_error(
        ["--kernel", kernel_file("text", data=b"#!/bin/sh\necho hi\n" * 200)], "not a usable bzImage"))
    r.case("kernel is empty", lambda: one_line_error(["--kernel", kernel_file("empty", data=b"")], "too small"))
    r.case("kernel too old (protocol 2.06)", lambda: one_line_error(
        ["--kernel", kernel_file("old", data=bzimage.make_bzimage(bzimage.POWEROFF, version=0x0206))],
        "older than 2.12"))
    r.case("32-bit-only kernel", lambda: one_line_error(
        ["--kernel", kernel_file("k32", data=bzimage.make_bzimage(bzimage.POWEROFF, xloadflags=0))], "64-bit"))
    def unreadable():
        path = kernel_file("secret", bzimage.POWEROFF)
        os.chmod(path, 0)
        os.chmod(TMP, 0o755)
        # As root the mode is ignored, so drop to nobody. Input files are read
        # before /dev/kvm is opened, so the error must name the kernel.
        one_line_error(["--kernel", path], "cannot open kernel",
                       wrap=("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"))
    r.case("unreadable kernel", unreadable)
    r.case("missing initrd", lambda: one_line_error(["--kernel", good, "--initrd", "/nonexistent/initrd"],
                                                    "initrd"))
    big = os.path.join(TMP, "big-initrd")
    with open(big, "wb") as f:
        f.truncate(200 << 20)  # sparse: costs no disk
    r.case("initrd that does not fit", lambda: one_line_error(
        ["--kernel", good, "--initrd", big, "--mem", "128M"], "does not fit"))
    r.case("memory too small", lambda: one_line_error(["--kernel", good, "--mem", "16M"], "too small"))
    r.case("memory too large", lambda: one_line_error(["--kernel", good, "--mem", "64T"], "more than"))
    r.case("bad memory size", lambda: one_line_error(["--kernel", good, "--mem", "lots"], "bad size"))
    r.case("zero cpus", lambda: one_line_error(["--kernel", good, "--cpus", "0"], "--cpus"))
    r.case("too many cpus", lambda: one_line_error(["--kernel", good, "--cpus", "9999"], "--cpus"))
    r.case("unknown option", lambda: one_line_error(["--kernel", good, "--frobnicate"], "unknown option"))
    r.case("option without value", lambda: one_line_error(["--kernel"], "needs a value"))
    r.case("bad --net option", lambda: one_line_error(["--kernel", good, "--net", "tap0,speed=9"], "unknown option"))
    r.case("bad MAC", lambda: one_line_error(["--kernel", good, "--net", "tap0,mac=zz"], "MAC"))
    # Taps only in a private network namespace (unshare -n), never this host's.
    netns = ("unshare", "-n", "sh", "-c", 'ip tuntap add dev mqt0 mode tap && exec "$0" "$@"')
    r.case("too many queue pairs", lambda: one_line_error(
        ["--kernel", good, "--net", "mqt1,vhost=off,queues=17"], "queue pairs", wrap=netns))
    r.case("queues=2 on a tap made without multi_queue", lambda: one_line_error(
        ["--kernel", good, "--net", "mqt0,vhost=off,queues=2"], "multi_queue", wrap=netns))
    r.case("raw= on a missing interface", lambda: one_line_error(
        ["--kernel", good, "--net", "raw=nosuch0,vhost=off"], "no such interface", wrap=netns))
    r.case("raw= with queues=2", lambda: one_line_error(
        ["--kernel", good, "--net", "raw=lo,vhost=off,queues=2"], "one queue pair", wrap=netns))
    r.case("macvtap= on a missing interface", lambda: one_line_error(
        ["--kernel", good, "--net", "macvtap=nosuch0,vhost=off"], "no such interface", wrap=netns))
    r.case("macvtap= on an interface that is not a macvtap", lambda: one_line_error(
        ["--kernel", good, "--net", "macvtap=lo,vhost=off"], "not a macvtap", wrap=netns))
    # A macvtap on a veth, in the private namespace; MVT_HELD: another process holds its /dev/tapN.
    macvtap = ('ip link add vx type veth peer name vy && ip link set vx up && '
               'ip link add link vx name mvx type macvtap mode bridge && ip link set mvx up || exit 99; '
               '[ -z "$MVT_HELD" ] && exec "$0" "$@"; '
               # The holder ends with the case: interface indexes are per namespace,
               # and the next case's macvtap may get this one's /dev/tapN name.
               'sleep 30 >/dev/null 2>&1 3<>/dev/tap$(ip -o link show mvx | cut -d: -f1) & h=$!; sleep 0.3; '
               '"$0" "$@"; rc=$?; kill $h; wait $h 2>/dev/null; exit $rc')
    r.case("macvtap= whose device another process holds", lambda: one_line_error(
        ["--kernel", good, "--net", "macvtap=mvx,vhost=off"], "in use",
        wrap=("env", "MVT_HELD=1", "unshare", "-n", "sh", "-c", macvtap)))

    def ports_set_up():
        # Both kinds open natively (a veth's macvtap, a raw socket on it); the guest powers off.
        rc, out, err = run_vmm(["--kernel", good, "--verbose", "--net", "raw=vy,vhost=off",
                                "--net", "macvtap=mvx,vhost=worker"], 30, ("unshare", "-n", "sh", "-c", macvtap))
        check(rc == 0, f"exit status {rc}: {err.strip()[:500]}")
        check("raw vy" in err and "macvtap mvx (/dev/tap" in err, f"NICs not described: {err[:800]}")
    r.case("raw= and macvtap= NICs set up (guest powers off, exit 0)", ports_set_up)

    def kvm_missing():
        # A private mount namespace with an empty /dev: the host's is untouched.
        one_line_error(["--kernel", good], "/dev/kvm",
                       wrap=("unshare", "-m", "sh", "-c", 'mount -t tmpfs none /dev && exec "$0" "$@"'))
    r.case("/dev/kvm missing", kvm_missing)

    def kvm_denied():
        # /dev/kvm is root-only here; nobody may read the kernel but not open KVM.
        os.chmod(good, 0o644)
        os.chmod(TMP, 0o755)
        st = os.stat("/dev/kvm")
        check(st.st_mode & 0o006 == 0, "/dev/kvm is world-accessible here; cannot test EACCES")
        one_line_error(["--kernel", good], "permission denied",
                       wrap=("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"))
    r.case("/dev/kvm not permitted", kvm_denied)
