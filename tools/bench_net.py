"""Network throughput and latency: minivmm's three datapaths against QEMU's
vhost=on and vhost=off, same guest kernel and initramfs, same tap setup.

Each configuration boots a guest whose NIC is a tap in a fresh network
namespace, then measures iperf3 guest->host and host->guest (TCP, Mbit/s)
and sockperf TCP ping-pong latency (usec). Rounds are interleaved so drift in
the (emulated) host hits all alike. Prints a Markdown table.
"""
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from netns import Netns  # noqa: E402
from vmtest import INITRD, KERNEL, Guest, minivmm  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "2"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
GUEST, HOST, TAP = "10.0.2.15", "10.0.2.1", "mvbench0"
APPEND = f"console=ttyS0 quiet guest.ip=eth0:{GUEST}/24"


def qemu(vhost, ns):
    argv = ns.prefix() + [
        "qemu-system-x86_64", "-enable-kvm", "-cpu", "host", "-m", "512", "-smp", "1", "-nographic",
        "-nodefaults", "-no-reboot", "-serial", "stdio", "-kernel", KERNEL, "-initrd", INITRD, "-append", APPEND,
        "-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no,vhost={vhost}",
        "-device", "virtio-net-pci,netdev=n0"]
    return Guest(argv, f"bench-qemu-{vhost}")


def mini(vhost, ns):
    return minivmm("--mem", "512M", "--cmdline", APPEND, "--net", f"{TAP},vhost={vhost}", wrap=ns.prefix(),
                   log_name=f"bench-minivmm-{vhost}")


CONFIGS = {
    "QEMU vhost=on": lambda ns: qemu("on", ns),
    "QEMU vhost=off": lambda ns: qemu("off", ns),
    "minivmm vhost=kernel": lambda ns: mini("kernel", ns),
    "minivmm vhost=worker": lambda ns: mini("worker", ns),
    "minivmm vhost=off": lambda ns: mini("off", ns),
}


def iperf(g, ns, reverse):
    srv = ns.popen(f"iperf3 -s -1 --forceflush -B {HOST}")
    try:
        while "listening" not in (srv.stdout.readline() or "listening"):
            pass
        rc, out = g.run(f"iperf3 -c {HOST} -t {SECONDS} {'-R' if reverse else ''} -f m", timeout=300)
        m = re.findall(r"([\d.]+) Mbits/sec.*receiver", out)
        return float(m[-1]) if rc == 0 and m else float("nan")
    finally:
        srv.kill()
        srv.wait()


def latency(g, ns):
    srv = ns.popen(f"sockperf server --tcp -i {HOST} -p 11111")
    try:
        time.sleep(1)
        rc, out = g.run(f"sockperf ping-pong --tcp -i {HOST} -p 11111 -t {SECONDS}", timeout=300)
        m = re.search(r"Latency is ([\d.]+) usec", out)
        return float(m.group(1)) if m else float("nan")
    finally:
        srv.kill()
        srv.wait()


def measure(name, start):
    ns = Netns("mvbench")
    g = None
    try:
        # An existing tap, configured first: both VMMs attach to it alike.
        ns.sh(f"ip tuntap add dev {TAP} mode tap && ip addr add {HOST}/24 dev {TAP} && ip link set {TAP} up")
        g = start(ns)
        g.boot(600)
        g.run(f"ping -c 3 -W 5 {HOST}", timeout=60)
        return iperf(g, ns, False), iperf(g, ns, True), latency(g, ns)
    finally:
        if g:
            g.kill()
        ns.close()


def main():
    res = {name: [] for name in CONFIGS}
    for r in range(ROUNDS):
        for name, start in CONFIGS.items():
            try:
                v = measure(name, start)
            except Exception as e:  # the rig's flake (README): one more try, said aloud
                print(f"round {r + 1} {name}: failed ({str(e).splitlines()[0][:200]}); retrying once", flush=True)
                v = measure(name, start)
            res[name].append(v)
            print(f"round {r + 1} {name}: guest->host {v[0]:.0f} Mbit/s, host->guest {v[1]:.0f} Mbit/s, "
                  f"TCP ping-pong {v[2]:.1f} usec", flush=True)
    print("\n| datapath | guest->host Mbit/s | host->guest Mbit/s | TCP ping-pong latency, usec |")
    print("|---|---|---|---|")
    for name, v in res.items():
        med = [statistics.median(x[i] for x in v) for i in range(3)]
        print(f"| {name} | {med[0]:.0f} | {med[1]:.0f} | {med[2]:.1f} |")
    print(f"\n(median of {ROUNDS} interleaved rounds, {SECONDS} s each, one emulated outer host)")


main()
