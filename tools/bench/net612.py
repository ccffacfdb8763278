"""make bench's net612 part (MINIVMM_BENCH_PARTS=net612): what a 6.12 guest
on a 6.12 outer host can ask of the NIC that a 6.1 one cannot, each beside
QEMU 7.2 (Debian 12's, vhost=off) in the same run. tools/bench.sh starts a
6.12 outer host of its own for it (MINIVMM_KERNEL=6.12).

1. Notification coalescing: minivmm vhost=worker with it off, and with the
   guest's `ethtool -C eth0 rx-frames 16 rx-usecs 500 tx-frames 16
   tx-usecs 500`. iperf3 TCP both ways (Mbit/s), and per MB (10^6 bytes) of
   the two transfers: the VM's KVM exits (KVM's debugfs counter for the VM,
   in the outer host) and the guest's NIC interrupts (its virtio input and
   output vectors in /proc/interrupts). TCP bulk keeps the guest polling,
   so also the guest's receive interrupts per MB of a paced UDP stream from
   the host (1400-byte datagrams, a 100 us sleep after each: the regime
   coalescing changes, as test_net612 checks). QEMU 7.2 offers no coalescing.
2. USO: UDP streams of 1400-byte datagrams sent with UDP_SEGMENT
   (build/udp_gso, up to 64 per send), guest->host and host->guest, with
   minivmm vhost=worker taking USO both ways and with it refused on both
   sides (the guest's `ethtool -K eth0 tx-udp-segmentation off`, and the
   tap's the same, so the host segments before the tap); QEMU 7.2 offers
   no USO, so its senders segment in software too. Rate: bytes received
   over the time from the first datagram to the last, at the receiver.

Interleaved rounds (rounds.py) as the VM table's. Writes net612-*.md/.csv
to $MINIVMM_RESULTS (or build/bench).
"""
import glob
import os
import re
import subprocess
import time

import configs
import metrics
import report
import rounds
from vmtest import REPO

COAL = "rx-frames 16 rx-usecs 500 tx-frames 16 tx-usecs 500"
UDP_GSO = os.path.join(REPO, "build", "udp_gso")
SEG, FETCH_PORT, UDP_PORT = 1400, 5410, 5411

COAL_METRICS = [
    ("g2h_mbps", "TCP guest->host, Mbit/s", 0),
    ("h2g_mbps", "TCP host->guest, Mbit/s", 0),
    ("exits_per_mb", "KVM exits per MB", 1),
    ("irqs_per_mb", "guest NIC interrupts per MB", 1),
    ("paced_irqs_per_mb", "guest rx interrupts per MB, paced UDP host->guest", 0),
]
PACED = 3200  # datagrams of 1400 bytes, some 4.6 MB
PACED_SEND = ("python3 -c \"import socket, time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              "d=b'x'*1400\n"
              f"for i in range({PACED}):\n s.sendto(d, ('{configs.GUEST_IP}', 5412))\n time.sleep(0.0001)\"")
USO_METRICS = [
    ("g2h_mbps", "UDP 1400 B guest->host, Mbit/s", 0),
    ("h2g_mbps", "UDP 1400 B host->guest, Mbit/s", 0),
]


def kvm_exits(pid):
    """The VM's exits so far: KVM's debugfs keeps one directory per VM,
    <pid>-<fd>, with its vCPUs' counters summed. None where it cannot be read."""
    if not os.path.isdir("/sys/kernel/debug/kvm"):
        subprocess.run(["mount", "-t", "debugfs", "debugfs", "/sys/kernel/debug"], stderr=subprocess.DEVNULL)
    total, found = 0, False
    for path in glob.glob(f"/sys/kernel/debug/kvm/{pid}-*/exits"):
        with open(path) as f:
            total += int(f.read())
        found = True
    return total if found else None


def nic_interrupts(end, which="input|output"):
    rc, out = end.guest.run(f"grep -E 'virtio[0-9]+-({which})' /proc/interrupts")
    if rc or not out.strip():
        raise RuntimeError(f"no NIC vectors in the guest's /proc/interrupts: {out!r}")
    return sum(int(f) for line in out.strip().splitlines() for f in line.split()[1:] if f.isdigit())


def guest_rx_bytes(end):
    rc, out = end.guest.run("cat /sys/class/net/eth0/statistics/rx_bytes")
    if rc or not out.strip().isdigit():
        raise RuntimeError(f"guest rx_bytes: {out!r}")
    return int(out)


def paced_rx_interrupts_per_mb(end):
    """Nobody listens in the guest: its stack drops the datagrams after the NIC took them."""
    i0, b0 = nic_interrupts(end, "input"), guest_rx_bytes(end)
    end.ns.sh(PACED_SEND, timeout=300)
    end.guest.run("sleep 1")  # the tail reaped
    i1, b1 = nic_interrupts(end, "input"), guest_rx_bytes(end)
    if b1 - b0 < 10**6:
        raise RuntimeError(f"the guest received only {b1 - b0} bytes of the paced stream")
    return (i1 - i0) / ((b1 - b0) / 1e6)


def coalescing_row(vmm, on):
    def measure(name, log_name):
        end = configs.VmEnd(name, vmm)
        try:
            end.start(log_name)
            if on:
                rc, out = end.guest.run(f"ethtool -C eth0 {COAL}")
                if rc:
                    raise RuntimeError(f"ethtool -C {COAL}: {out.strip()[-200:]}")
            pid = end.guest.proc.pid
            e0, i0 = kvm_exits(pid), nic_interrupts(end)
            g2h, g2h_bytes, _ = metrics.iperf(end, configs.HOST_IP, SECONDS, reverse=False)
            h2g, h2g_bytes, _ = metrics.iperf(end, configs.HOST_IP, SECONDS, reverse=True)
            e1, i1 = kvm_exits(pid), nic_interrupts(end)
            paced = paced_rx_interrupts_per_mb(end)
        finally:
            end.close()
        mb = (g2h_bytes + h2g_bytes) / 1e6
        return {"g2h_mbps": g2h, "h2g_mbps": h2g, "exits_per_mb": None if e0 is None else (e1 - e0) / mb,
                "irqs_per_mb": (i1 - i0) / mb, "paced_irqs_per_mb": paced}
    return measure


def fetch_udp_gso(end):
    """The guest takes build/udp_gso from the host side of its NIC."""
    size = os.path.getsize(UDP_GSO)
    srv = end.ns.popen(f"python3 -c \"import socket; s=socket.create_server(('{configs.HOST_IP}', {FETCH_PORT})); "
                       f"print('listening', flush=True); c,_=s.accept(); c.sendall(open('{UDP_GSO}','rb').read()); "
                       "c.close()\"")
    try:
        if srv.stdout.readline().strip() != "listening":
            raise RuntimeError("file server did not start")
        rc, out = end.guest.run(f"nc {configs.HOST_IP} {FETCH_PORT} > /tmp/udp_gso; chmod +x /tmp/udp_gso; "
                                "wc -c < /tmp/udp_gso", timeout=180)
        if rc or out.strip() != str(size):
            raise RuntimeError(f"guest got {out.strip()!r} bytes of udp_gso ({size})")
    finally:
        srv.kill()
        srv.wait()


def received(text):
    """Mbit/s from udp_gso recv's timed line (loss lowers it; an error fails)."""
    m = re.search(r"received (\d+) (\d+) (\d+) ([\d.]+)", text)
    if not m or not float(m.group(4)):
        raise RuntimeError(f"udp_gso recv: {text.strip()[-200:]}")
    return int(m.group(1)) * 8 / float(m.group(4)) / 1e6


def uso_row(vmm, uso):
    def measure(name, log_name):
        end = configs.VmEnd(name, vmm)
        try:
            end.start(log_name)
            fetch_udp_gso(end)
            if not uso:
                rc, out = end.guest.run("ethtool -K eth0 tx-udp-segmentation off")
                if rc:
                    raise RuntimeError(f"guest ethtool -K: {out.strip()[-200:]}")
                end.ns.sh(f"ethtool -K {configs.TAP} tx-udp-segmentation off")
            total = STREAM
            # guest->host
            srv = end.ns.popen(f"{UDP_GSO} recv {configs.HOST_IP} {UDP_PORT} {total} 3 timed")
            try:
                if srv.stdout.readline().strip() != "listening":
                    raise RuntimeError("host receiver did not start")
                end.guest.run(f"/tmp/udp_gso send {configs.HOST_IP} {UDP_PORT} {total} {SEG}", timeout=300)
                out, _ = srv.communicate(timeout=120)
            finally:
                srv.kill()
            g2h = received(out)
            # host->guest
            rc, out = end.guest.run(f"/tmp/udp_gso recv {configs.GUEST_IP} {UDP_PORT} {total} 3 timed > /tmp/ur "
                                    "2>&1 & n=0; until grep -q listening /tmp/ur || [ $n -gt 50 ]; do sleep 0.2; "
                                    "n=$((n+1)); done; cat /tmp/ur")
            if "listening" not in out:
                raise RuntimeError(f"guest receiver did not start: {out!r}")
            end.ns.sh(f"{UDP_GSO} send {configs.GUEST_IP} {UDP_PORT} {total} {SEG}", check=False, timeout=300)
            rc, out = end.guest.run("wait; cat /tmp/ur", timeout=120)
            h2g = received(out)
        finally:
            end.close()
        return {"g2h_mbps": g2h, "h2g_mbps": h2g}
    return measure


QUICK = os.environ.get("MINIVMM_BENCH_QUICK") == "1"
SECONDS = int(os.environ.get("MINIVMM_BENCH_SECONDS") or (3 if QUICK else 10))
STREAM = (20 if QUICK else 100) * 1000 * 1000

COAL_ROWS = {
    "minivmm vhost=worker, coalescing off": coalescing_row(configs.mini("worker"), False),
    f"minivmm vhost=worker, ethtool -C {COAL}": coalescing_row(configs.mini("worker"), True),
    "qemu 7.2 vhost=off (no coalescing offered)": coalescing_row(configs.qemu("off"), False),
}
USO_ROWS = {
    "minivmm vhost=worker, USO both ways": uso_row(configs.mini("worker"), True),
    "minivmm vhost=worker, USO off (guest and tap)": uso_row(configs.mini("worker"), False),
    "qemu 7.2 vhost=off (no USO offered)": uso_row(configs.qemu("off"), False),
}


def table(out, slug, title, rows, metric_list, nrounds, notes):
    t0 = time.monotonic()
    rounds.say(f"{title}: {nrounds} round(s) of {len(rows)} configurations")

    def save(results, prefix=""):
        os.makedirs(out, exist_ok=True)
        report.write_csv(os.path.join(out, f"net612-{slug}.csv"), results, metric_list)
        with open(os.path.join(out, f"net612-{slug}.md"), "w") as f:
            f.write(prefix + f"{title}\n\n" + report.markdown(results, metric_list) + "\n\n" + notes + "\n")

    def show(s):
        return ", ".join(f"{h} {'n/a' if s[k] is None else f'{s[k]:.{d}f}'}" for k, h, d in metric_list)

    results, retried, failed = rounds.run(list(rows), nrounds, lambda n, log: rows[n](n, log), show,
                                          lambda res: save(res, "(partial: the run did not finish) "))
    save(results)
    print(f"\n{title}\n\n" + report.markdown(results, metric_list) + "\n\n" + notes, flush=True)
    if retried:
        rounds.say(f"{title}: retried after a failure: {', '.join(retried)}")
    if failed:
        rounds.say(f"{title}: failed twice (no sample): {', '.join(failed)}")
    rounds.say(f"{title} took {rounds.elapsed(t0)}")
    return any(any(s) for s in results.values())


def run(out, nrounds):
    """Both tables; true if either has a sample."""
    where = (" Measured inside the emulated outer host (QEMU TCG): absolute figures are far below hardware, "
             "compare rows only." if os.environ.get("MINIVMM_OUTER") else "")
    ok = table(out, "coalescing", "Notification coalescing (6.12 guest and host)", COAL_ROWS, COAL_METRICS, nrounds,
               f"Median of {nrounds} interleaved round(s), {SECONDS} s per iperf3 transfer, 512 MiB and 1 vCPU. "
               "Per MB: over both transfers together (10^6 bytes received). KVM exits: the VM's `exits` in "
               "KVM's debugfs (all exit reasons); interrupts: the guest's virtio NIC vectors. Paced UDP: "
               f"{PACED} datagrams of 1400 bytes from the host, 100 us sleep after each; the guest's receive "
               "vectors per MB it received." + where)
    ok |= table(out, "uso", "UDP segmentation offload (6.12 guest and host)", USO_ROWS, USO_METRICS, nrounds,
                f"Median of {nrounds} interleaved round(s), {STREAM // 10**6} MB per stream of 1400-byte "
                "datagrams sent with UDP_SEGMENT (build/udp_gso); Mbit/s received, first datagram to last "
                "(datagrams lost lower it)." + where)
    return ok
