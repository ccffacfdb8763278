"""The rows of make bench's table and how each one is brought up.

Every row has a "guest" end, where the clients (iperf3, sockperf) run, and a
host end, a network namespace created here where the servers run; nothing
is configured in the namespace we were started in. All VMs get the same
kernel, initramfs, memory and vCPUs.
"""
import os
import signal
import subprocess
import threading
import time

from netns import Netns
from vmtest import INITRD, KERNEL, Guest, minivmm

import metrics

GUEST_IP, HOST_IP = "10.0.2.15", "10.0.2.1"
MEM_MIB, CPUS = 512, 1
TAP = "mvbench0"
APPEND = f"console=ttyS0 quiet guest.ip=eth0:{GUEST_IP}/24"
BOOT_TIMEOUT = 180  # 10-30 s is usual in the emulated host; a hung boot (its flake) must not eat the run


class VmEnd:
    """A guest whose NIC is a tap in the host namespace, served by a VMM.
    queues > 1: a multi-queue tap; streams: parallel iperf3 streams."""

    def __init__(self, name, argv_fn, queues=1, streams=1):
        self.name, self.argv_fn, self.queues, self.streams = name, argv_fn, queues, streams
        self.ns = self.guest = None

    def start(self, log_name):
        """Boots the guest; returns seconds from VMM start to the guest's init."""
        self.ns = Netns("mvbench")
        # An existing tap, configured first: every VMM attaches to it alike.
        mq = " multi_queue" if self.queues > 1 else ""
        self.ns.sh(f"ip tuntap add dev {TAP} mode tap{mq} && ip addr add {HOST_IP}/24 dev {TAP} "
                   f"&& ip link set {TAP} up")
        self.guest = self.argv_fn(self.ns, log_name)
        boot = self.guest.boot(BOOT_TIMEOUT)
        rc, out = self.guest.run(f"ping -c 2 -W 5 {HOST_IP}", timeout=60)
        if rc:
            raise RuntimeError(f"guest cannot reach the host: {out.strip()[-200:]}")
        return boot

    def run(self, cmd, timeout):
        """Runs cmd in the guest; returns (status, output, host CPU seconds of
        the VMM and its kernel vhost threads meanwhile)."""
        before = metrics.vmm_cpu_seconds(self.guest.proc.pid)
        rc, out = self.guest.run(cmd, timeout=timeout)
        return rc, out, metrics.vmm_cpu_seconds(self.guest.proc.pid) - before

    def footprint(self):
        """MiB resident in the VMM process outside the guest's RAM, now."""
        return metrics.rss_outside_guest_mib(self.guest.proc.pid, MEM_MIB)

    def stop(self):
        """Stops the VMM; returns its max RSS in MiB (getrusage of the VMM process itself)."""
        p = self.guest.proc
        os.kill(p.pid, signal.SIGTERM)  # both VMMs stop cleanly on SIGTERM; not Popen's, which may reap
        deadline = time.monotonic() + 20
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                _, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.2)
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        self.guest.kill()
        return ru.ru_maxrss / 1024

    def close(self):
        if self.guest and self.guest.proc.poll() is None:
            self.guest.kill()
        if self.ns:
            self.ns.close()


class NativeEnd:
    """No VM: the guest end is a second namespace, joined to the host's by a veth pair."""

    def __init__(self, name):
        self.name = name
        self.streams = 1
        self.ns = self.peer = None

    def start(self, log_name):
        self.ns, self.peer = Netns("mvbench"), Netns("mvbench-g")
        self.ns.sh(f"ip link add mvb-h type veth peer name mvb-g netns {self.peer.name} "
                   f"&& ip addr add {HOST_IP}/24 dev mvb-h && ip link set mvb-h up")
        self.peer.sh(f"ip addr add {GUEST_IP}/24 dev mvb-g && ip link set mvb-g up")
        return None  # no boot

    def run(self, cmd, timeout):
        """Runs cmd in the guest namespace; the CPU is the client process's own
        (user + system), the native counterpart of a VMM's."""
        p = subprocess.Popen(self.peer.prefix() + ["sh", "-c", "exec " + cmd], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        try:
            out = p.stdout.read()
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        return p.returncode, out, ru.ru_utime + ru.ru_stime

    def footprint(self):
        return None  # no VMM

    def stop(self):
        return None  # no VMM, no RSS

    def close(self):
        for ns in (self.ns, self.peer):
            if ns:
                ns.close()


def qemu(vhost):
    def argv(ns, log_name):
        return Guest(ns.prefix() + [
            "qemu-system-x86_64", "-enable-kvm", "-cpu", "host", "-m", str(MEM_MIB), "-smp", str(CPUS),
            "-nographic", "-nodefaults", "-no-reboot", "-serial", "stdio", "-kernel", KERNEL, "-initrd", INITRD,
            "-append", APPEND, "-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no,vhost={vhost}",
            "-device", "virtio-net-pci,netdev=n0"], log_name)
    return argv


def mini(vhost, cpus=CPUS, queues=1, extra=()):
    def argv(ns, log_name):
        return minivmm("--mem", f"{MEM_MIB}M", "--cpus", str(cpus), "--cmdline", APPEND,
                       "--net", f"{TAP},vhost={vhost},queues={queues}", *extra, wrap=ns.prefix(),
                       log_name=log_name)
    return argv


# In the table's order; each value makes a fresh end for one measurement.
ROWS = {
    "native": lambda: NativeEnd("native"),
    "qemu vhost=off": lambda: VmEnd("qemu vhost=off", qemu("off")),
    "qemu vhost=on": lambda: VmEnd("qemu vhost=on", qemu("on")),
    "minivmm vhost=off": lambda: VmEnd("minivmm vhost=off", mini("off")),
    "minivmm vhost=worker": lambda: VmEnd("minivmm vhost=worker", mini("worker")),
    "minivmm vhost=kernel": lambda: VmEnd("minivmm vhost=kernel", mini("kernel")),
    # What the filters cost: the rows above have them (the default), these not.
    "minivmm vhost=worker --seccomp=off": lambda: VmEnd("worker nofilter", mini("worker", extra=["--seccomp=off"])),
    "minivmm vhost=kernel --seccomp=off": lambda: VmEnd("kernel nofilter", mini("kernel", extra=["--seccomp=off"])),
    # Multiqueue scaling: 2 vCPUs and 4 TCP streams each way, 1 then 2 queue pairs.
    "minivmm vhost=kernel queues=1 (2 vCPUs)": lambda: VmEnd("kernel q1", mini("kernel", 2, 1), 1, 4),
    "minivmm vhost=kernel queues=2 (2 vCPUs)": lambda: VmEnd("kernel q2", mini("kernel", 2, 2), 2, 4),
    "minivmm vhost=worker queues=1 (2 vCPUs)": lambda: VmEnd("worker q1", mini("worker", 2, 1), 1, 4),
    "minivmm vhost=worker queues=2 (2 vCPUs)": lambda: VmEnd("worker q2", mini("worker", 2, 2), 2, 4),
}
