"""A Linux guest with a NIC saved and continued across processes and
datapaths: booted with vhost=kernel, snapshot (then=stop), restored with
vhost=worker: the guest's shell, its files, its uptime and its network
carry on, and the restored guest announces itself (a gratuitous ARP from
its MAC on the tap: VIRTIO_NET_F_GUEST_ANNOUNCE). (A guest saved on
worker and restored on off does not get its received frames yet:
tests/README.md.)

Runs in the emulated outer host with the net suites. The tap is made by
the test (persistent, in the test's namespace), so its host side keeps its
address while no minivmm holds it.
"""
import json
import os
import re
import signal
import subprocess
import tempfile
import time

from arp_watch import Watch
from netns import Netns
from test_net import BOOT_TIMEOUT, GUEST, HOST, bulk_from_host, bulk_to_host, ping, unprivileged
from vmtest import MINIVMM, Guest, check, minivmm

MEM = "512M"


def ctl(sock, *args):
    p = subprocess.run([MINIVMM, "ctl", sock] + list(args), capture_output=True, timeout=600)
    check(p.returncode == 0, f"ctl {' '.join(args)}: exit {p.returncode}: {p.stdout[-400:]!r} {p.stderr[-400:]!r}")
    reply = json.loads(p.stdout)
    check(reply.get("ok") is True, f"ctl {' '.join(args)}: {reply}")
    return reply


def uptime(g):
    rc, out = g.run("cat /proc/uptime")
    check(rc == 0 and re.match(r"[\d.]+ ", out), f"uptime: {out!r}")
    return float(out.split()[0])


def socket_dir():
    # nobody's directory: minivmm, as nobody, removes its socket at exit.
    d = tempfile.mkdtemp(prefix="minivmm-snap-")
    os.chown(d, 65534, 65534)
    return d


def wait_socket(g, sock):
    import time
    deadline = time.monotonic() + 60
    while not os.path.exists(sock):
        check(g.proc.poll() is None, f"minivmm exited {g.proc.returncode}: {g.out[-500:]!r}")
        check(time.monotonic() < deadline, f"no control socket at {sock}")
        time.sleep(0.1)


def scenario_snapshot_across_datapaths(r):
    ns = Netns("mvtest-snap")
    tap = "mvtsnap"
    work = tempfile.mkdtemp(prefix="minivmm-snapfiles-")
    snap = os.path.join(work, "vm.snap")
    state = {}
    g = None
    try:
        ns.sh(f"ip tuntap add dev {tap} mode tap multi_queue && ip addr add {HOST}/24 dev {tap} && "
              f"ip link set {tap} up")
        d = socket_dir()
        sock = os.path.join(d, "api.sock")
        g = minivmm("--mem", MEM, "--cmdline", f"quiet guest.ip=eth0:{GUEST}/24", "--api-sock", sock,
                    "--net", f"{tap},vhost=kernel", *unprivileged(), wrap=ns.prefix(), log_name="snap-kernel")

        def first():
            g.boot(BOOT_TIMEOUT)
            ping(g, HOST, 5)
            rc, out = g.run("echo kept-$((6*7)) > /root/marker && cat /root/marker")
            check(rc == 0 and "kept-42" in out, f"marker: {out!r}")
            state["uptime"] = uptime(g)
            rc, out = g.run("cat /sys/class/net/eth0/address")
            check(rc == 0 and re.fullmatch(r"[0-9a-f:]{17}", out.strip()), f"the guest's MAC: {out!r}")
            state["mac"] = out.strip()
            rep = ctl(sock, "snapshot", snap, "then=stop")
            rc = g.wait_exit(60)
            check(rc == 0, f"exit status {rc} after snapshot then=stop: {g.out[-300:]!r}")
            return f"{rep['bytes'] >> 20} MiB written ({rep['ram_pages']} pages, {rep['zero_pages']} zero), " \
                   f"paused {rep['paused_ms']} ms"
        r.case("vhost=kernel: boots, pings, snapshot then=stop exits 0", first)

        def restored(vhost, save_after):
            nonlocal g
            d2 = socket_dir()
            sock2 = os.path.join(d2, "api.sock")
            watch = Watch(ns, tap, GUEST)
            try:
                t0 = time.monotonic()
                g = Guest(ns.prefix() + [MINIVMM, "--restore", snap, "--mem", MEM, "--api-sock", sock2,
                                         "--net", f"{tap},vhost={vhost}"] + unprivileged(), f"snap-{vhost}")
                wait_socket(g, sock2)
                announced = watch.announced(60)
            finally:
                watch.kill()
            check(announced and announced[0] == state["mac"] and announced[1] > t0,
                  f"no gratuitous ARP from the restored guest ({state['mac']}, {GUEST}): {announced}")
            rc, out = g.run("cat /root/marker", timeout=120)
            check(rc == 0 and "kept-42" in out, f"the guest's file after restore: {out!r}")
            up = uptime(g)
            check(up >= state["uptime"], f"uptime went back: {up} after {state['uptime']}")
            state["uptime"] = up
            try:
                ping(g, HOST, 10)
            finally:
                os.kill(g.proc.pid, signal.SIGUSR1)  # counters into the log, for a failure's reader
            st = ctl(sock2, "status")
            check(st["nics"][0]["datapath"] == vhost, f"status: {st}")
            # 10 MB out: a nested guest sends about 0.5 MB/s on any datapath.
            bulk_to_host(g, ns, 5311, 10 << 20)
            bulk_from_host(g, ns, 5312)
            if save_after:
                ctl(sock2, "snapshot", snap, "then=stop")
                check(g.wait_exit(60) == 0, "exit after the second snapshot")
            else:
                g.send("poweroff -f\n")
                check(g.wait_exit(120) == 0, "exit after poweroff")
            return (f"announced {announced[1] - t0:.1f} s after the restore began; uptime {up:.0f} s, "
                    f"ping 0% loss, 10 MB out and 50 MB in with matching sha256")
        # Saved again on worker, then continued on off: each datapath has
        # taken a saved NIC.
        r.case("restored with vhost=worker: announces itself; shell, file, uptime, ping, 10 MB out, 50 MB in; "
               "snapshot then=stop exits 0",
               lambda: restored("worker", True))
        r.case("restored with vhost=off: announces itself; shell, file, uptime, ping, 10 MB out, 50 MB in; "
               "poweroff exits 0",
               lambda: restored("off", False))
    finally:
        if g:
            g.kill()
        ns.close()
