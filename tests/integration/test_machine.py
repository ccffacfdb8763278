"""The machine model without Linux: synthetic kernels on a working KVM.

Runs wherever the KVM probe (kvm_probe.py) finds a KVM that can make and run
a VM, including a PVM one; otherwise in the emulated outer host.
"""
import os
import signal
import time

import bzimage
from test_input import MACVTAP, TMP, expect_exit, kernel_file, one_line_error, run_vmm
from vmtest import MINIVMM, Guest, check, confined, vmm_threads


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
