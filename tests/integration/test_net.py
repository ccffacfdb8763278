"""virtio-net over tap: a guest NIC talking to a tap in a test namespace.

Each scenario creates its own network namespace; minivmm runs inside it, so
its taps, their addresses and the host-side servers exist only there.
Runs in the emulated outer host (a stock kernel needs VMX/SVM).
"""
import json
import os
import re
import signal
import subprocess
import tempfile
import time

from netns import BulkServer, Netns
from vmtest import (KERNEL_SERIES, MINIVMM, check, confined, format_breakdown, minivmm, rss_breakdown,
                    vmm_threads)

BOOT_TIMEOUT = int(os.environ.get("MINIVMM_BOOT_TIMEOUT", "240"))
BULK = 50 << 20  # the issue asks for at least 50 MB each way
GUEST, HOST = "10.0.2.15", "10.0.2.1"
NOBODY = 65534


def unprivileged():
    """minivmm's options to run as nobody in an empty jail once set up: the
    datapaths must then work with no capability and no file system."""
    return ["--user", f"{NOBODY}:{NOBODY}", "--jail", tempfile.mkdtemp(prefix="minivmm-jail-")]


def ping(g, addr, count=20):
    rc, out = g.run(f"ping -c {count} -i 0.2 -W 5 {addr}", timeout=180)
    check(rc == 0 and re.search(r"\b0% packet loss", out), f"ping {addr}: {out.strip()[-300:]}")


def iperf(g, ns, reverse, extra="", host=HOST):
    srv = ns.popen(f"iperf3 -s -1 --forceflush -B {host}")
    try:
        seen = ""
        while "listening" not in seen:  # the client must not race the server's bind
            line = srv.stdout.readline()
            check(line, f"iperf3 server did not start: {seen!r}")
            seen += line
        rc, out = g.run(f"iperf3 -c {host} -t 3 {'-R' if reverse else ''} -f m {extra}", timeout=240)
        m = re.findall(r"([\d.]+) Mbits/sec.*receiver", out)
        check(rc == 0 and m and float(m[-1]) > 0, f"iperf3 {'-R ' if reverse else ''}failed: {out.strip()[-400:]}")
        return f"{float(m[-1]):.0f} Mbit/s"
    finally:
        srv.kill()
        srv.wait()


def guest_stream_sha(g, producer):
    rc, out = g.run(f"{producer} | sha256sum", timeout=300)
    f = out.split()
    check(rc == 0 and f, f"sha256sum in guest: {out!r}")
    return f[0]


# The guest streams and checksums the transfers rather than keeping 50 MB
# in its tmpfs: filling that much guest memory is a storm of nested-paging
# exits, which is where the emulated outer host's SVM has been seen to
# triple-fault guests (README, known problems), and it tests nothing here.
def bulk_to_host(g, ns, port, size=BULK):
    # One random MiB repeated: the guest's urandom is slow under emulation,
    # and the NIC does not care what the bytes are.
    rc, out = g.run("dd if=/dev/urandom of=/tmp/mib bs=1M count=1 2>&1", timeout=120)
    check(rc == 0, f"making the data in the guest: {out!r}")
    stream = f"for i in $(seq {size >> 20}); do cat /tmp/mib; done"
    want = (guest_stream_sha(g, stream), size)
    srv = BulkServer(ns, "recv", HOST, port, size)
    try:
        rc, out = g.run(f"{stream} | nc {HOST} {port}", timeout=300)
        got = srv.result(300)
    finally:
        srv.kill()
    check(got == want, f"guest sent {want}, host received {got}")


def bulk_from_host(g, ns, port):
    srv = BulkServer(ns, "send", HOST, port, BULK)
    try:
        got = guest_stream_sha(g, f"nc {HOST} {port}")
        want = srv.result(300)
    finally:
        srv.kill()
    check(got == want[0], f"host sent {want}, guest received data with sha256 {got}")


def offloads(g):
    rc, out = g.run("ethtool -k eth0")
    for feature in ("tx-checksumming", "rx-checksumming", "tcp-segmentation-offload",
                    "tx-tcp-segmentation", "tx-tcp6-segmentation"):
        check(re.search(rf"^\s*{feature}: on", out, re.M), f"{feature} not on: {out[:800]}")


USO_REFUSED = "refuses UDP segmentation offload"


def uso_not_offered(g):
    """A 6.1 outer host's tap refuses TUN_F_USO4/6: minivmm says so once and
    does not offer USO, so the guest cannot turn it on."""
    n = g.out.count(USO_REFUSED)
    check(n == 1, f"the refusal was said {n} times: {[ln for ln in g.out.splitlines() if USO_REFUSED in ln]}")
    rc, out = g.run("ethtool -k eth0")
    check(re.search(r"^\s*tx-udp-segmentation: off \[fixed\]", out, re.M), f"ethtool -k: {out[:1500]}")


def reload_driver(g, times):
    for i in range(times):
        rc, out = g.run("ip link set eth0 down && rmmod virtio_net && insmod /lib/modules/virtio_net.ko && "
                        f"sleep 1 && ip addr add {GUEST}/24 dev eth0 && ip link set eth0 up")
        check(rc == 0, f"driver reload {i + 1}: {out!r}")
        ping(g, HOST, 5)


STATS = r"((?:rx|tx)\d+|ctrl): (\d+) packets, (\d+) bytes, (\d+) notifications, (\d+) interrupts, (\d+) errors"


def sigusr1_stats(g):
    """Asks minivmm for its counters; returns ({queue: [numbers]}, MMIO exits)."""
    mark = len(g.out)
    g.proc.send_signal(signal.SIGUSR1)
    m = g.expect(r"vCPU exits to minivmm: (\d+) port I/O, (\d+) MMIO", 30, mark)
    queues = {q: [int(x) for x in rest] for q, *rest in re.findall(STATS, g.out[mark:m.end()])}
    return queues, int(m.group(2))


def kicks_bypass_minivmm(g, vhost):
    before, mmio0 = sigusr1_stats(g)
    rc, out = g.run(f"ping -c 300 -i 0.01 -q {HOST}", timeout=180)
    check(rc == 0, f"ping flood: {out!r}")
    after, mmio1 = sigusr1_stats(g)
    # 300 echo requests 10 ms apart mean about 300 TX kicks: through minivmm
    # only with vhost=off (fewer if one comes while its thread still sends
    # the last: that kick is suppressed, as the device asks).
    if vhost == "off":
        check(mmio1 - mmio0 >= 150, f"vhost=off: only {mmio1 - mmio0} MMIO exits for 300 sends")
    else:
        check(mmio1 - mmio0 < 30, f"vhost={vhost}: {mmio1 - mmio0} MMIO exits for 300 sends (kicks exit)")
    if vhost != "kernel":  # the kernel's counters are not visible to minivmm
        check(after["tx0"][0] - before["tx0"][0] >= 300, f"tx packets {before['tx0']} -> {after['tx0']}")
        check(after["rx0"][4] == 0 and after["tx0"][4] == 0, f"errors counted: {after}")
    return f"{mmio1 - mmio0} MMIO exits for 300 pings"


def guest_rx_clean(g):
    """The guest's driver counted no bad received frame: every frame the
    device published was whole (a frame whose buffers it found only in part
    is dropped as a length error, and TCP hides the loss as retransmits)."""
    rc, out = g.run("cat /proc/net/dev")
    m = re.search(r"eth0:\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", out)
    check(rc == 0 and m, f"no eth0 in /proc/net/dev: {out!r}")
    packets, errs, drop, fifo, frame = (int(x) for x in m.groups()[1:])
    check(packets > 0, "no frame received")
    check(errs == drop == fifo == frame == 0,
          f"guest dropped received frames: errs {errs} drop {drop} fifo {fifo} frame/length {frame} of {packets}")
    return f"{packets} frames, none dropped"


def filtered_under_traffic(g, vhost):
    """Every minivmm thread, the datapath's included, has its seccomp filter
    (Seccomp: 2) while the guest pings in the background; the pings all come
    back, so nothing on the path was refused."""
    g.run(f"{{ ping -q -c 150 -i 0.02 {HOST} >/tmp/bgping 2>&1 & }}")
    time.sleep(1)
    threads = vmm_threads(g.proc.pid)
    rc, out = g.run("wait; cat /tmp/bgping", timeout=120)
    check(rc == 0 and re.search(r"\b0% packet loss", out), f"background ping: {out.strip()[-300:]!r}")
    names = [n for n, _ in threads]
    # The datapath's own threads; the kernel's vhost-net workers are not minivmm's.
    want = {"worker": ["vhost-net0-rx0", "vhost-net0-tx0"], "off": ["net0-io0"], "kernel": []}[vhost]
    for need in want + ["minivmm", "vCPU 0", "console", "MSI-X watcher"]:
        check(need in names, f"no thread {need!r} among {names}")
    other = [(n, s) for n, s in threads if s != 2]
    check(not other, f"threads without a filter (Seccomp: is not 2): {other}")
    return confined(g.proc.pid, NOBODY, NOBODY) + ": " + ", ".join(names)


def footprint(g, bound_mib=8):
    """A generous bound, so that growth is caught (the boot files kept: 15
    MiB; a thread stack backed by a transparent huge page: 2 MiB each); about
    3 MiB is usual after the transfers on every datapath (vmm/README.md,
    Footprint). The figure itself is make bench's to report. A failure shows
    what the memory is, mapping by mapping."""
    parts = rss_breakdown(g.proc.pid, 512)
    mib = sum(kib for _, kib in parts) / 1024
    print(f"  minivmm resident outside guest RAM: {mib:.1f} MiB", flush=True)
    check(mib < bound_mib, f"{mib:.1f} MiB resident outside guest RAM (bound {bound_mib} MiB), "
                           f"the largest parts:\n{format_breakdown(parts)}")
    return f"{mib:.1f} MiB"


def api_stats(sock, vhost):
    """The control socket's stats after the transfers: per-queue counters,
    non-zero where minivmm serves the queue (vhost-net's are not visible)."""
    p = subprocess.run([MINIVMM, "ctl", sock, "stats"], capture_output=True, timeout=60)
    check(p.returncode == 0, f"ctl stats: exit {p.returncode}: {p.stdout[-300:]!r} {p.stderr[-300:]!r}")
    nic = json.loads(p.stdout)["nics"][0]
    queues = {q["name"]: q for q in nic["queues"]}
    check(nic["datapath"] == vhost and set(queues) == {"rx0", "tx0", "ctrl"}, f"stats: {nic}")
    served = ["ctrl"] if vhost == "kernel" else ["rx0", "tx0", "ctrl"]
    for name in served:
        check(queues[name]["visible"] and queues[name]["packets"] > 0, f"{name}: {queues[name]}")
    return ", ".join(f"{n} {queues[n]['packets']} packets" for n in served)


def one_nic(r, vhost):
    ns = Netns(f"mvtest-{vhost}")
    tap = f"mvt{vhost}"
    # The control socket's directory is nobody's: minivmm, as nobody, removes it at exit.
    api_dir = tempfile.mkdtemp(prefix="minivmm-api-")
    os.chown(api_dir, NOBODY, NOBODY)
    sock = os.path.join(api_dir, "api.sock")
    g = minivmm("--mem", "512M", "--cmdline", f"quiet guest.ip=eth0:{GUEST}/24", "--api-sock", sock,
                "--net", f"{tap},vhost={vhost}", *unprivileged(), wrap=ns.prefix(), log_name=f"net-{vhost}")
    try:
        r.case("boots with a NIC; missing tap is created and announced", lambda: (
            g.boot(BOOT_TIMEOUT), check(f"created tap {tap}" in g.out, "no 'created tap' line")))
        r.case("host side configured in the test namespace",
               lambda: ns.sh(f"ip addr add {HOST}/24 dev {tap} && ip link set {tap} up"))
        r.case("guest pings host, 0% loss", lambda: ping(g, HOST))
        r.case("checksum and TSO offloads on in guest ethtool", lambda: offloads(g))
        if KERNEL_SERIES == "6.1":
            r.case("USO not offered: the 6.1 tap refuses it, said once on stderr", lambda: uso_not_offered(g))
        r.case("iperf3 guest to host", lambda: iperf(g, ns, False))
        r.case("iperf3 host to guest", lambda: iperf(g, ns, True))
        r.case("every minivmm thread runs under its seccomp filter, as nobody, while traffic flows",
               lambda: filtered_under_traffic(g, vhost))
        r.case("50 MB guest to host, sha256 matches", lambda: bulk_to_host(g, ns, 5301))
        r.case("50 MB host to guest, sha256 matches", lambda: bulk_from_host(g, ns, 5302))
        r.case("guest's driver dropped no received frame", lambda: guest_rx_clean(g))
        r.case("control socket's stats: per-queue counters after the transfers", lambda: api_stats(sock, vhost))
        r.case("minivmm's memory outside guest RAM under 8 MiB after the transfers", lambda: footprint(g))
        r.case("three driver reloads, traffic after each", lambda: reload_driver(g, 3))
        r.case("kicks exit to minivmm only with vhost=off (--stats counters)", lambda: kicks_bypass_minivmm(g, vhost))
        r.case("guest poweroff exits 0", lambda: (g.send("poweroff -f\n"), check(g.wait_exit(120) == 0, "exit")))
    finally:
        g.kill()
        ns.close()


def scenario_one_nic_kernel(r):
    one_nic(r, "kernel")


def scenario_one_nic_worker(r):
    one_nic(r, "worker")


def scenario_one_nic_off(r):
    one_nic(r, "off")


def scenario_two_nics(r):
    ns = Netns("mvtest-net2")
    g = None
    try:
        # One tap made beforehand (attach), one left to minivmm (create).
        ns.sh("ip tuntap add dev mvtap1 mode tap && ip addr add 10.0.3.1/24 dev mvtap1 && ip link set mvtap1 up")
        g = minivmm("--mem", "512M", "--cmdline", f"quiet guest.ip=eth0:{GUEST}/24 guest.ip=eth1:10.0.3.15/24",
                    "--net", "mvtap0", "--net", "mvtap1,vhost=worker",
                    wrap=ns.prefix(), log_name="net-two")
        def boots():
            g.boot(BOOT_TIMEOUT)
            # No vhost= on the first: the kernel's when /dev/vhost-net opens, said on stderr.
            check("net0: using vhost=kernel" in g.out, "no notice of the default vhost backend")
        r.case("boots with two NICs (default vhost said on stderr)", boots)
        r.case("host side of the created tap configured",
               lambda: ns.sh(f"ip addr add {HOST}/24 dev mvtap0 && ip link set mvtap0 up"))
        r.case("first NIC pings its tap", lambda: ping(g, HOST, 10))
        r.case("second NIC pings its tap", lambda: ping(g, "10.0.3.1", 10))

        def macs():
            rc, out = g.run("cat /sys/class/net/eth0/address /sys/class/net/eth1/address")
            check(out.split() == ["52:54:00:12:34:56", "52:54:00:12:34:57"], f"MACs {out.split()}")
        r.case("default MACs are stable and distinct", macs)
    finally:
        if g:
            g.kill()
        ns.close()


def guest_queue_packets(g):
    """Packets per queue pair as the guest's driver counts them (ethtool -S)."""
    rc, out = g.run("ethtool -S eth0")
    check(rc == 0, f"ethtool -S: {out!r}")
    pairs = {}
    for q, n in re.findall(r"[rt]x_queue_(\d+)_packets: (\d+)", out):
        pairs[int(q)] = pairs.get(int(q), 0) + int(n)
    return pairs


def channels(g):
    rc, out = g.run("ethtool -l eth0")
    m = re.findall(r"Combined:\s+(\d+)", out)
    check(rc == 0 and len(m) == 2, f"ethtool -l: {out!r}")
    return int(m[0]), int(m[1])  # maximum, current


def thread_names(pid):
    names = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            names.append(f.read().strip())
    return names


def kernel_vhost_threads(pid):
    """vhost-net's kernel workers for this VMM are named vhost-<owner pid>."""
    n = 0
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/comm") as f:
                n += f.read().strip() == f"vhost-{pid}"
        except OSError:
            pass
    return n


def multiqueue(r, vhost):
    ns = Netns(f"mvtest-mq-{vhost}")
    tap = f"mvq{vhost}"
    g = minivmm("--mem", "512M", "--cpus", "2", "--cmdline", f"quiet guest.ip=eth0:{GUEST}/24",
                "--net", f"{tap},vhost={vhost},queues=2", *unprivileged(), wrap=ns.prefix(),
                log_name=f"net-mq-{vhost}")
    try:
        r.case("boots with 2 vCPUs and a 2-pair NIC; tap created multi_queue", lambda: (
            g.boot(BOOT_TIMEOUT), check(f"created tap {tap} (multi_queue)" in g.out, "no 'created tap' line")))
        r.case("host side configured in the test namespace",
               lambda: ns.sh(f"ip addr add {HOST}/24 dev {tap} && ip link set {tap} up"))

        def queues():
            rc, out = g.run("ls /sys/class/net/eth0/queues")
            check(out.split() == ["rx-0", "rx-1", "tx-0", "tx-1"], f"guest queues: {out.split()}")
            check(channels(g) == (2, 2), f"ethtool -l: maximum, current = {channels(g)}")
        r.case("guest has rx-0 rx-1 tx-0 tx-1 and 2 combined channels in use", queues)

        def threads():
            names = thread_names(g.proc.pid)
            if vhost == "kernel":
                check(kernel_vhost_threads(g.proc.pid) == 2, "not one vhost-net kernel worker per queue pair")
                return
            want = ({f"vhost-net0-{d}{k}" for d in ("rx", "tx") for k in (0, 1)} if vhost == "worker"
                    else {"net0-io0", "net0-io1"})
            check(want <= set(names), f"thread names {sorted(names)} lack {sorted(want - set(names))}")
        r.case("a named thread per queue it serves", threads)
        r.case("guest pings host, 0% loss", lambda: ping(g, HOST))

        def both_pairs_carry_traffic():
            before = guest_queue_packets(g)
            iperf(g, ns, True, "-P 4")
            # Sends from each vCPU: the driver maps CPU k to TX queue k (XPS).
            for cpu in (0, 1):
                rc, out = g.run(f"taskset -c {cpu} ping -c 20 -i 0.05 -q {HOST}", timeout=120)
                check(rc == 0, f"ping on CPU {cpu}: {out!r}")
            iperf(g, ns, False, "-P 4")
            after = guest_queue_packets(g)
            used = [after.get(k, 0) - before.get(k, 0) for k in (0, 1)]
            check(all(n > 0 for n in used), f"packets per queue pair (guest's counters): {used}")
            if vhost != "kernel":  # minivmm's own counters, where it keeps them
                q, _ = sigusr1_stats(g)
                check(all(q[f"rx{k}"][0] + q[f"tx{k}"][0] > 0 for k in (0, 1)), f"minivmm's counters: {q}")
                check(all(v[4] == 0 for n, v in q.items() if n != "ctrl"), f"errors counted: {q}")
            return f"pairs moved {used[0]} and {used[1]} packets"
        r.case("iperf3 -P 4 both ways uses both queue pairs", both_pairs_carry_traffic)

        def change_channels():
            rc, out = g.run("ethtool -L eth0 combined 1")
            check(rc == 0 and channels(g) == (2, 1), f"ethtool -L combined 1: {out!r}")
            before = guest_queue_packets(g)
            ping(g, HOST, 10)
            iperf(g, ns, True, "-P 4")
            after = guest_queue_packets(g)
            check(after.get(1, 0) == before.get(1, 0), f"pair 1 moved packets while not in use: {before} -> {after}")
            rc, out = g.run("ethtool -L eth0 combined 2")
            check(rc == 0 and channels(g) == (2, 2), f"ethtool -L combined 2: {out!r}")
            ping(g, HOST, 10)
            iperf(g, ns, False, "-P 4")
        r.case("ethtool -L 1 then 2, traffic continues (only pair 0 used at 1)", change_channels)

        def reload_mq():
            reload_driver(g, 2)
            check(channels(g) == (2, 2), f"after reload: {channels(g)}")
            iperf(g, ns, True, "-P 4")
        r.case("two driver reloads with multiqueue, traffic after each", reload_mq)
        r.case("guest poweroff exits 0", lambda: (g.send("poweroff -f\n"), check(g.wait_exit(120) == 0, "exit")))
    finally:
        g.kill()
        ns.close()


def scenario_mq_kernel(r):
    multiqueue(r, "kernel")


def scenario_mq_worker(r):
    multiqueue(r, "worker")


def scenario_mq_off(r):
    multiqueue(r, "off")
