"""Notification coalescing seen from a Linux 6.12 guest (ethtool -C), for
test_net612's boots: with vhost=worker and vhost=off the guest's receive
interrupts per MB fall when it asks for rx-frames/rx-usecs, ping still
answers, and ethtool -c shows the values; vhost-net (vhost=kernel) does not
offer the feature, so ethtool -C is refused.

Counts, never timings, decide: interrupts per MB against the same flood with
coalescing off, and a round trip bound a thousand times rx-usecs.
"""
import re

from test_net import GUEST, HOST
from vmtest import check

RX_FRAMES, RX_USECS = 16, 900
FLOOD_PORT = 5403
# 1400 bytes each, one frame each (no GSO from a plain sendto), with a
# short pause after each: the guest reaps each and goes idle, taking an
# interrupt per frame without coalescing, while several arrive within one
# rx-usecs. (A flood without pauses keeps a slow guest polling, interrupts
# off, and one burst after a long pause costs one interrupt either way:
# little left for coalescing to save.)
DATAGRAMS = 3200
FLOOD = ("python3 -c \"import socket, time; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); d=b'x'*1400\n"
         f"for i in range({DATAGRAMS}):\n s.sendto(d, ('{GUEST}', {FLOOD_PORT}))\n time.sleep(0.0001)\"")


def rx_interrupts(g):
    """The NIC's receive vectors (virtioN-input.K), summed over CPUs."""
    rc, out = g.run("grep -E 'virtio[0-9]+-input' /proc/interrupts")
    check(rc == 0 and out.strip(), f"no receive vector in /proc/interrupts: {out!r}")
    total = 0
    for line in out.strip().splitlines():
        fields = line.split()[1:]
        total += sum(int(f) for f in fields if f.isdigit())
    return total


def rx_bytes(g):
    rc, out = g.run("cat /sys/class/net/eth0/statistics/rx_bytes")
    check(rc == 0 and out.strip().isdigit(), f"rx_bytes: {out!r}")
    return int(out)


def irqs_per_mb(g, ns):
    """A stream of 1400-byte datagrams from the host; nobody listens in the
    guest (its stack drops them after the NIC took them)."""
    i0, b0 = rx_interrupts(g), rx_bytes(g)
    ns.sh(FLOOD, timeout=300)
    # The guest's NAPI may still be reaping the tail: let it settle.
    g.run("sleep 1")
    i1, b1 = rx_interrupts(g), rx_bytes(g)
    mb = (b1 - b0) / 1e6
    check(mb >= 2, f"the guest received only {b1 - b0} bytes of the stream")
    return (i1 - i0) / mb, mb


def coalescing_cases(r, g, ns, vhost):
    if vhost == "kernel":
        def refused():
            rc, out = g.run(f"ethtool -C eth0 rx-frames {RX_FRAMES} rx-usecs {RX_USECS}")
            check(rc != 0, f"ethtool -C accepted with vhost-net: {out!r}")
            return out.strip()[-120:]
        r.case("vhost=kernel: no coalescing offered, ethtool -C refused", refused)
        return
    state = {}

    def baseline():
        state["off"] = irqs_per_mb(g, ns)
        note = f"{state['off'][0]:.0f} rx interrupts/MB over {state['off'][1]:.1f} MB"
        print(f"  {note}", flush=True)
        return note
    r.case("coalescing off: rx interrupts per MB of a host flood", baseline)

    def set_and_show():
        rc, out = g.run(f"ethtool -C eth0 rx-frames {RX_FRAMES} rx-usecs {RX_USECS}")
        check(rc == 0, f"ethtool -C: {out!r}")
        rc, out = g.run("ethtool -c eth0")
        check(rc == 0 and re.search(rf"^rx-usecs:\s+{RX_USECS}\s*$", out, re.M)
              and re.search(rf"^rx-frames:\s+{RX_FRAMES}\s*$", out, re.M), f"ethtool -c: {out!r}")
        # Out of bounds (more than a second): the device answers VIRTIO_NET_ERR.
        rc, out = g.run("ethtool -C eth0 rx-usecs 2000000")
        check(rc != 0, f"rx-usecs 2000000 accepted: {out!r}")
        rc, out = g.run("ethtool -c eth0")
        check(re.search(rf"^rx-usecs:\s+{RX_USECS}\s*$", out, re.M), f"a refused value stuck: {out!r}")
    r.case(f"ethtool -C rx-frames {RX_FRAMES} rx-usecs {RX_USECS} taken, shown by ethtool -c; "
           "rx-usecs 2000000 refused", set_and_show)

    def fewer():
        on, mb = irqs_per_mb(g, ns)
        off = state["off"][0]
        note = f"{on:.0f} rx interrupts/MB with coalescing, {off:.0f} without ({mb:.1f} MB)"
        print(f"  {note}", flush=True)
        check(on * 1.5 <= off, note)
        return note
    r.case("coalescing on: rx interrupts per MB fall by a third or more", fewer)

    def ping():
        rc, out = g.run(f"ping -c 5 -i 0.3 -W 5 {HOST}", timeout=120)
        m = re.search(r"round-trip min/avg/max = [\d.]+/[\d.]+/([\d.]+) ms", out)
        check(rc == 0 and re.search(r"\b0% packet loss", out) and m, f"ping: {out.strip()[-300:]}")
        check(float(m.group(1)) < RX_USECS, f"max round trip {m.group(1)} ms (a thousand times rx-usecs)")
        g.run("ethtool -C eth0 rx-frames 0 rx-usecs 0")
        print(f"  ping max {m.group(1)} ms", flush=True)
        return f"max {m.group(1)} ms"
    r.case("ping with coalescing on: every reply, round trips far under a thousand rx-usecs", ping)
