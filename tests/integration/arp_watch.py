"""Watches an interface, in the namespace it runs in, for the guest's
announcement: a gratuitous ARP (sender and target address both ADDR), as
Linux's virtio-net driver sends when the device shows
VIRTIO_NET_S_ANNOUNCE. Prints "watching" once bound, then on the first one
"announced MAC AT" (AT: CLOCK_MONOTONIC seconds, comparable with the
test's time.monotonic()) and exits 0; "none" and exit 1 after SECONDS.
Root only (a packet socket); it takes ARP frames only, so a stream on the
same interface costs it nothing.

usage: arp_watch.py IFACE ADDR SECONDS
"""
import os
import select
import socket
import struct
import subprocess
import sys
import time

ETH_P_ARP = 0x0806


def gratuitous_from(frame, addr):
    """The sender's MAC if frame is a gratuitous ARP for addr, else None."""
    if len(frame) < 42 or struct.unpack("!H", frame[12:14])[0] != ETH_P_ARP:
        return None
    htype, ptype, hlen, plen, _op = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        return None
    sha, spa, tpa = frame[22:28], frame[28:32], frame[38:42]
    if spa != addr or tpa != addr or frame[6:12] != sha:
        return None
    return ":".join(f"{b:02x}" for b in sha)


class Watch:
    """arp_watch.py run in ns on iface, started before the guest moves;
    announced() then waits for its answer: (MAC, monotonic time)."""

    def __init__(self, ns, iface, addr, seconds=900):
        self.proc = subprocess.Popen(ns.prefix() + [sys.executable, os.path.abspath(__file__), iface, addr,
                                                    str(seconds)], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "watching":
            self.kill()
            from vmtest import TestFailure  # (not needed where this runs as the watcher)
            raise TestFailure(f"arp_watch.py did not start: {line!r}")

    def announced(self, timeout):
        """(MAC, AT) of the announcement, or None if none came in timeout seconds."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        fields = out.split()
        if self.proc.returncode or len(fields) != 3 or fields[0] != "announced":
            return None
        return fields[1], float(fields[2])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def main():
    iface, addr, seconds = sys.argv[1], socket.inet_aton(sys.argv[2]), float(sys.argv[3])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    s.bind((iface, ETH_P_ARP))
    print("watching", flush=True)
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            print("none", flush=True)
            sys.exit(1)
        r, _, _ = select.select([s], [], [], left)
        if not r:
            continue
        frame, (_, _, pkttype, _, _) = s.recvfrom(2048)
        if pkttype == socket.PACKET_OUTGOING:
            continue
        mac = gratuitous_from(frame, addr)
        if mac:
            print(f"announced {mac} {time.monotonic():.3f}", flush=True)
            return


if __name__ == "__main__":
    main()
