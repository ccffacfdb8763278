"""A guest attached straight to a host interface, no bridge: raw= (an
AF_PACKET socket bound to the interface) and macvtap= (a macvtap link on it).

Each scenario makes two test namespaces: "vmm", where minivmm runs and the
guest's interfaces live without addresses (one end of a veth pair for the
raw socket, and a macvtap on one end of another pair), and "peer", holding
the other ends with addresses and the servers. One guest per datapath has
both NICs. Runs in the emulated outer host.
"""
import os
import re

from netns import Netns
from test_net import BOOT_TIMEOUT, iperf, ping
from vmtest import check, minivmm

RAW_GUEST, RAW_PEER = "10.0.4.15", "10.0.4.1"
MVT_GUEST, MVT_PEER = "10.0.5.15", "10.0.5.1"


def offloads_on(g, dev):
    rc, out = g.run(f"ethtool -k {dev}")
    check(rc == 0, f"ethtool -k {dev}: {out!r}")
    m = re.search(r"^tx-checksumming: (\w+)", out, re.M)
    return m and m.group(1) == "on"


def direct(r, vhost):
    vmm, peer = Netns(f"mvd-vmm-{vhost}"), Netns(f"mvd-peer-{vhost}")
    g = None
    try:
        vmm.sh(f"ip link add vraw type veth peer name praw && ip link set praw netns {peer.name} && "
               f"ip link set vraw up && "
               f"ip link add vlow type veth peer name plow && ip link set plow netns {peer.name} && "
               f"ip link set vlow up && ip link add link vlow name mvt0 type macvtap mode bridge && ip link set mvt0 up")
        # The peer sends as a wire would, with complete checksums and no GSO:
        # a packet socket has no header to tell the guest a checksum is
        # partial (README: raw=), and a veth left to itself leaves them so.
        peer.sh(f"ip addr add {RAW_PEER}/24 dev praw && ip link set praw up && ethtool -K praw tx off && "
                f"ip addr add {MVT_PEER}/24 dev plow && ip link set plow up")
        g = minivmm("--mem", "512M", "--cmdline",
                    f"quiet guest.ip=eth0:{RAW_GUEST}/24 guest.ip=eth1:{MVT_GUEST}/24",
                    "--net", f"raw=vraw,vhost={vhost}", "--net", f"macvtap=mvt0,vhost={vhost}",
                    wrap=vmm.prefix(), log_name=f"direct-{vhost}")
        r.case("boots with a raw-socket NIC and a macvtap NIC", lambda: g.boot(BOOT_TIMEOUT))

        def macvtap_mac():
            want = vmm.sh("cat /sys/class/net/mvt0/address").stdout.strip()
            rc, out = g.run("cat /sys/class/net/eth1/address")
            check(out.strip() == want, f"guest eth1 has {out.strip()}, macvtap mvt0 has {want}")
        r.case("the macvtap NIC takes the macvtap's MAC", macvtap_mac)
        r.case("raw: guest pings the peer, 0% loss", lambda: ping(g, RAW_PEER, 10))
        r.case("raw: iperf3 guest to peer", lambda: iperf(g, peer, False, host=RAW_PEER))
        r.case("raw: iperf3 peer to guest", lambda: iperf(g, peer, True, host=RAW_PEER))
        r.case("macvtap: guest pings the peer, 0% loss", lambda: ping(g, MVT_PEER, 10))
        r.case("macvtap: iperf3 guest to peer", lambda: iperf(g, peer, False, host=MVT_PEER))
        r.case("macvtap: iperf3 peer to guest", lambda: iperf(g, peer, True, host=MVT_PEER))
        r.case("offloads: none over raw (no vnet header), checksum offload over macvtap", lambda: check(
            not offloads_on(g, "eth0") and offloads_on(g, "eth1"), "tx-checksumming: want off on eth0, on on eth1"))
        r.case("guest poweroff exits 0", lambda: (g.send("poweroff -f\n"), check(g.wait_exit(120) == 0, "exit")))
    finally:
        if g:
            g.kill()
        vmm.close()
        peer.close()


def scenario_kernel(r):
    direct(r, "kernel")


def scenario_worker(r):
    direct(r, "worker")


def scenario_off(r):
    direct(r, "off")
