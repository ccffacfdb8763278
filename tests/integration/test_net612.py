"""virtio-net with a 6.12 guest on a 6.12 outer host: UDP segmentation
offload (USO) both ways, jumbo frames (mtu=9000), RSS (queues=2: the
guest's indirection table, applied by the tap's steering program) and
notification coalescing (ethtool -C; tests/integration/coalesce.py), on each
datapath.

Needs MINIVMM_KERNEL=6.12 (tests/run-integration.sh runs it so, in one outer
host): a 6.1 host's tap refuses USO and a 6.1 guest does not ask for it.
One boot per datapath; each scenario has its own network namespace.
"""
import os
import re
import socket
import struct

from coalesce import coalescing_cases
from netns import Netns
from test_net import BOOT_TIMEOUT, GUEST, HOST, guest_rx_clean, sigusr1_stats, unprivileged
from vmtest import KERNEL_SERIES, REPO, check, minivmm

UDP_GSO = os.path.join(REPO, "build", "udp_gso")  # make builds it (tests/support/udp_gso.cpp)
MTU = 9000
SEG = 8000  # each segment a jumbo frame; 8 of them in one send, one GSO frame
STREAM = 500 * SEG
DATAGRAMS = STREAM // SEG
FETCH_PORT, TO_HOST_PORT, TO_GUEST_PORT = 5400, 5401, 5402
RSS_FLOWS, RSS_PER_FLOW, RSS_PORT = 32, 4, 5403


def snmp_ip(text):
    """The Ip: counters of /proc/net/snmp as {name: value}."""
    rows = [ln.split()[1:] for ln in text.splitlines() if ln.startswith("Ip:")]
    check(len(rows) == 2, f"no Ip: rows in /proc/net/snmp: {text[:300]!r}")
    return dict(zip(rows[0], (int(x) for x in rows[1])))


def guest_snmp(g):
    rc, out = g.run("cat /proc/net/snmp")
    check(rc == 0, f"/proc/net/snmp: {out!r}")
    return snmp_ip(out)


def guest_rx_packets(g):
    rc, out = g.run("cat /sys/class/net/eth0/statistics/rx_packets")
    check(rc == 0 and out.strip().isdigit(), f"guest rx_packets: {out!r}")
    return int(out)


def tap_counter(ns, tap, name):
    return int(ns.sh(f"cat /sys/class/net/{tap}/statistics/{name}").stdout)


def jumbo_ping(g, ns):
    """8972 bytes of ICMP payload: a 9000-byte IP packet each way, which
    fits the MTU whole. Linux sets DF on what fits its path MTU; busybox's
    ping has no -M, so the IP counters say nothing was fragmented or
    reassembled on either side."""
    host0, guest0 = snmp_ip(ns.sh("cat /proc/net/snmp").stdout), guest_snmp(g)
    rc, out = g.run(f"ping -c 5 -i 0.3 -W 5 -s 8972 {HOST}", timeout=120)
    check(rc == 0 and re.search(r"\b0% packet loss", out) and "8980 bytes from" in out, f"ping: {out.strip()[-300:]}")
    host1, guest1 = snmp_ip(ns.sh("cat /proc/net/snmp").stdout), guest_snmp(g)
    for side, a, b in (("host", host0, host1), ("guest", guest0, guest1)):
        moved = {k: b[k] - a[k] for k in ("FragCreates", "ReasmReqds", "FragFails") if b[k] != a[k]}
        check(not moved, f"{side} fragmented or reassembled: {moved}")
    return "5 of 5 replies, no fragments"


def fetch_tool(g, ns):
    """The guest has no UDP GSO sender of its own: it takes minivmm's test
    tool from the host side of its NIC."""
    size = os.path.getsize(UDP_GSO)
    srv = ns.popen(f"python3 -c \"import socket,sys; s=socket.create_server(('{HOST}', {FETCH_PORT})); "
                   f"print('listening', flush=True); c,_=s.accept(); c.sendall(open('{UDP_GSO}','rb').read()); "
                   "c.close()\"")
    try:
        line = srv.stdout.readline()
        check(line.strip() == "listening", f"file server did not start: {line!r}")
        rc, out = g.run(f"nc {HOST} {FETCH_PORT} > /tmp/udp_gso; chmod +x /tmp/udp_gso; wc -c < /tmp/udp_gso",
                        timeout=180)
        check(rc == 0 and out.strip() == str(size), f"guest got {out.strip()!r} bytes of {size}")
    finally:
        srv.kill()
        srv.wait()


def udp_gso_to_host(g, ns, tap, vhost):
    srv = ns.popen(f"{UDP_GSO} recv {HOST} {TO_HOST_PORT} {STREAM} 30")
    try:
        line = srv.stdout.readline()
        check(line.strip() == "listening", f"receiver did not start: {line!r}")
        tap0 = tap_counter(ns, tap, "rx_packets")
        stats0 = sigusr1_stats(g)[0] if vhost != "kernel" else None
        rc, out = g.run(f"/tmp/udp_gso send {HOST} {TO_HOST_PORT} {STREAM} {SEG}", timeout=180)
        check(rc == 0 and out.split()[:3] == ["sent", str(STREAM), str(DATAGRAMS)], f"guest sender: {out!r}")
        got, _ = srv.communicate(timeout=120)
    finally:
        srv.kill()
    check(srv.returncode == 0 and got.split() == ["received", str(STREAM), str(DATAGRAMS), "0"],
          f"host receiver: {got!r}")
    # The tap counts what was written into it: GSO frames whole, 8
    # datagrams each, when the guest's segmentation was left to the host.
    frames = tap_counter(ns, tap, "rx_packets") - tap0
    check(frames <= DATAGRAMS // 2, f"{frames} frames reached the tap for {DATAGRAMS} datagrams: not segmented "
                                    "by the host (no USO)")
    note = f"{DATAGRAMS} datagrams in {frames} frames at the tap"
    if stats0 is not None:
        tx = sigusr1_stats(g)[0]["tx0"][0] - stats0["tx0"][0]
        check(tx <= DATAGRAMS // 2, f"minivmm sent {tx} frames for {DATAGRAMS} datagrams")
        note += f", {tx} sent by minivmm"
    print(f"  {note}", flush=True)
    return note


def udp_gso_to_guest(g, ns):
    rc, out = g.run(f"/tmp/udp_gso recv {GUEST} {TO_GUEST_PORT} {STREAM} 30 > /tmp/urecv 2>&1 & "
                    "n=0; until grep -q listening /tmp/urecv || [ $n -gt 50 ]; do sleep 0.2; n=$((n+1)); done; "
                    "cat /tmp/urecv")
    check("listening" in out, f"guest receiver did not start: {out!r}")
    rx0 = guest_rx_packets(g)
    r = ns.sh(f"{UDP_GSO} send {GUEST} {TO_GUEST_PORT} {STREAM} {SEG}", check=False, timeout=180)
    check(r.returncode == 0, f"host sender: {r.stdout}{r.stderr}")
    rc, out = g.run("wait; cat /tmp/urecv", timeout=120)
    check(rc == 0 and f"received {STREAM} {DATAGRAMS} 0" in out, f"guest receiver: {out!r}")
    # The guest's driver counts a GSO frame once: the tap handed them over
    # whole (the guest acked GUEST_USO4/6) and the guest's stack split them.
    frames = guest_rx_packets(g) - rx0
    check(frames <= DATAGRAMS // 2, f"the guest received {frames} frames for {DATAGRAMS} datagrams (no USO)")
    print(f"  {DATAGRAMS} datagrams in {frames} frames at the guest's NIC", flush=True)
    return f"{DATAGRAMS} datagrams in {frames} frames"


def rx_per_queue(g, vhost):
    """What each receive queue took: packets as minivmm counts them
    (worker, off), or, where vhost-net serves the rings unseen, the
    interrupts of each receive queue's MSI-X vector in the guest (6.12's
    ethtool -S has no per-queue packet counts)."""
    if vhost != "kernel":
        q = sigusr1_stats(g)[0]
        check("rx0" in q and "rx1" in q, f"minivmm's stats lack rx0/rx1: {q}")
        return {0: q["rx0"][0], 1: q["rx1"][0]}
    rc, out = g.run("cat /proc/interrupts")
    got = {}
    for line in out.splitlines():
        m = re.search(r"virtio\d+-input\.(\d)\s*$", line)
        if m:
            got[int(m.group(1))] = interrupts(line)
    check(rc == 0 and set(got) == {0, 1}, f"no virtio input.0/.1 interrupts: {out[-600:]!r}")
    return got


def interrupts(line):
    """The per-CPU counts of a /proc/interrupts line, summed."""
    total = 0
    for field in line.split(":", 1)[1].split():
        if not field.isdigit():
            break
        total += int(field)
    return total


def rss_settings(g):
    """The guest's indirection table and hash key, as ethtool -x shows them."""
    rc, out = g.run("ethtool -x eth0")
    check(rc == 0 and "with 2 RX ring(s)" in out, f"ethtool -x eth0: {out[:400]!r}")
    rows = re.findall(r"^\s*\d+:((?:\s+\d+)+)\s*$", out, re.M)
    key = re.search(r"RSS hash key:\s*\n\s*((?:[0-9a-f]{2}:)+[0-9a-f]{2})", out)
    check(key is not None, f"no RSS hash key in ethtool -x eth0: {out[-400:]!r}")
    return [int(x) for row in rows for x in row.split()], bytes.fromhex(key.group(1).replace(":", ""))


def toeplitz(key, data):
    """The virtio spec's (Microsoft's) RSS hash of data under key: for each
    set input bit, the 32 key bits starting at its position, XORed."""
    k, klen, h = int.from_bytes(key, "big"), len(key) * 8, 0
    for i, byte in enumerate(data):
        for b in range(8):
            if byte & (0x80 >> b):
                h ^= (k >> (klen - 32 - (8 * i + b))) & 0xFFFFFFFF
    return h


def flow_queue(table, key, port):
    """The receive queue the guest's settings name for the UDP flow from
    the host's port into the guest: source and destination addresses, then
    ports, as on the wire."""
    data = socket.inet_aton(HOST) + socket.inet_aton(GUEST) + struct.pack(">HH", port, RSS_PORT)
    return table[toeplitz(key, data) % len(table)]


def flows_for_both_queues(table, key):
    """RSS_FLOWS source ports, half of them hashing to each queue: the
    guest's key is random, and a few consecutive ports can all land on one."""
    want, ports = RSS_FLOWS // 2, {0: [], 1: []}
    for p in range(40000, 60000):
        q = flow_queue(table, key, p)
        if len(ports[q]) < want:
            ports[q].append(p)
        if min(len(v) for v in ports.values()) == want:
            return ports[0] + ports[1]
    check(False, f"no {want} flows for each queue under the guest's table {table} and key {key.hex()}")


def flows_to_guest(g, ns, vhost, ports):
    """One UDP flow into the guest from each source port; what each receive
    queue took meanwhile."""
    before = rx_per_queue(g, vhost)
    ns.sh(f"python3 -c \"import socket\nfor p in {list(ports)}:\n"
          f" s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('{HOST}', p))\n"
          f" for i in range({RSS_PER_FLOW}): s.sendto(b'x', ('{GUEST}', {RSS_PORT}))\n\"")
    after = rx_per_queue(g, vhost)
    return {q: after[q] - before[q] for q in after}


def rss(g, ns, vhost):
    """The guest's RSS table decides where host->guest flows land: all on
    queue 1 once pinned; once spread again, each flow on the queue its
    Toeplitz hash under the guest's key names. ARP probes from the host
    are not hashed and go to the unclassified queue (0): a few allowed.
    Counted in packets (worker, off) or receive interrupts (kernel)."""
    sent = RSS_FLOWS * RSS_PER_FLOW if vhost != "kernel" else 1
    rc, out = g.run("ethtool -L eth0 combined 2 && ethtool -X eth0 equal 2")
    if rc != 0:
        _, why = g.run("cat /sys/class/net/eth0/device/features; dmesg | grep -i -E 'virtio|rss' | tail -5")
        check(False, f"ethtool -L/-X: {out!r}; device features and driver messages: {why!r}")
    table, key = rss_settings(g)
    check(len(table) == 128 and set(table) == {0, 1}, f"table after 'equal 2': {table}")
    ports = flows_for_both_queues(table, key)
    rc, out = g.run("ethtool -X eth0 weight 0 1")
    check(rc == 0, f"ethtool -X eth0 weight 0 1: {out!r}")
    check(set(rss_settings(g)[0]) == {1}, f"table after 'weight 0 1': {rss_settings(g)[0]}")
    pinned = flows_to_guest(g, ns, vhost, ports)
    check(pinned[1] >= sent and pinned[0] <= 4, f"pinned to queue 1: per queue {pinned}")
    rc, out = g.run("ethtool -X eth0 equal 2")
    check(rc == 0, f"ethtool -X eth0 equal 2: {out!r}")
    spread = flows_to_guest(g, ns, vhost, ports)
    if vhost != "kernel":
        # Half the flows hash to each queue: exactly their packets on
        # queue 1, theirs and at most a few ARP probes on queue 0.
        half = sent // 2
        check(spread[1] == half and half <= spread[0] <= half + 4,
              f"spread over 2 queues: per queue {spread}, {half} packets expected on each")
    else:
        check(min(spread.values()) >= 1, f"spread over 2 queues: interrupts per queue {spread}")
    unit = "packets" if vhost != "kernel" else "interrupts"
    note = f"weight 0 1: {pinned[0]}/{pinned[1]} {unit} on queues 0/1; equal 2: {spread[0]}/{spread[1]}"
    print(f"  {note}", flush=True)
    return note


def uso_mtu(r, vhost):
    check(KERNEL_SERIES == "6.12", f"needs MINIVMM_KERNEL=6.12 (this run has {KERNEL_SERIES})")
    check(os.access(UDP_GSO, os.X_OK), f"{UDP_GSO} missing: make build/udp_gso")
    ns = Netns(f"mvt612-{vhost}")
    tap = f"mvu{vhost}"
    g = minivmm("--mem", "512M", "--cmdline", f"quiet guest.ip=eth0:{GUEST}/24",
                "--net", f"{tap},vhost={vhost},mtu={MTU},queues=2", *unprivileged(), wrap=ns.prefix(),
                log_name=f"net612-{vhost}")
    try:
        def boots():
            g.boot(BOOT_TIMEOUT)
            check(f"created tap {tap}" in g.out, "no 'created tap' line")
            check("refuses UDP segmentation offload" not in g.out, "the 6.12 tap refused USO")
            check("RSS not offered" not in g.out, "the tap's steering program was not loaded")
        r.case("boots a 6.12 guest with mtu=9000; the tap takes USO (no refusal said)", boots)

        def host_side():
            ns.sh(f"ip addr add {HOST}/24 dev {tap} && ip link set {tap} up")
            mtu = ns.sh(f"cat /sys/class/net/{tap}/mtu").stdout.strip()
            check(mtu == str(MTU), f"tap MTU {mtu}")
        r.case("tap's MTU set to 9000; host side configured", host_side)

        def guest_mtu():
            rc, out = g.run("cat /sys/class/net/eth0/mtu")
            check(out.strip() == str(MTU), f"guest eth0 MTU {out.strip()!r} (config space mtu)")
        r.case("guest's eth0 takes MTU 9000 from the device (VIRTIO_NET_F_MTU)", guest_mtu)

        def uso_on():
            # Offered (HOST_USO), the feature is the guest's to switch: 6.12's
            # driver leaves it off at first (later kernels turn it on), and
            # "[fixed]" would mean the device did not offer it.
            rc, out = g.run("ethtool -k eth0 | grep tx-udp-segmentation")
            check(re.search(r"tx-udp-segmentation: (on|off)\s*$", out, re.M), f"not offered: {out!r}")
            rc, out = g.run("ethtool -K eth0 tx-udp-segmentation on && ethtool -k eth0 | grep tx-udp-segmentation")
            check(rc == 0 and re.search(r"tx-udp-segmentation: on\s*$", out, re.M), f"ethtool -K: {out!r}")
            return out.strip()
        r.case("ethtool: tx-udp-segmentation offered (not fixed) and on once asked", uso_on)
        r.case("ping -s 8972 (9000-byte packets), nothing fragmented", lambda: jumbo_ping(g, ns))
        r.case("guest fetches the UDP GSO tool", lambda: fetch_tool(g, ns))
        r.case("UDP GSO stream guest to host: every byte arrives, segmented after the guest",
               lambda: udp_gso_to_host(g, ns, tap, vhost))
        r.case("UDP GSO stream host to guest: every byte arrives, as GSO frames", lambda: udp_gso_to_guest(g, ns))
        r.case("RSS: ethtool -X pins host->guest flows to queue 1, then spreads them over both", lambda: rss(g, ns, vhost))
        r.case("guest's driver dropped no received frame", lambda: guest_rx_clean(g))
        coalescing_cases(r, g, ns, vhost)
        r.case("guest poweroff exits 0", lambda: (g.send("poweroff -f\n"), check(g.wait_exit(120) == 0, "exit")))
    finally:
        g.kill()
        ns.close()


def scenario_uso_mtu_kernel(r):
    uso_mtu(r, "kernel")


def scenario_uso_mtu_worker(r):
    uso_mtu(r, "worker")


def scenario_uso_mtu_off(r):
    uso_mtu(r, "off")
