"""ICMP echo every INTERVAL seconds for SECONDS, from the namespace it runs
in: prints "sent N received M max_gap_ms G" at the end (G: the longest time
without a reply, which spans a migration's pause). Root only (a raw socket).

usage: pinger.py ADDR INTERVAL SECONDS
"""
import os
import select
import socket
import struct
import sys
import time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def main():
    addr, interval, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    sent, got = 0, set()
    start = time.monotonic()
    last_reply = start
    max_gap = 0.0
    next_send = start
    print("pinging", flush=True)
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        if now >= next_send:
            body = struct.pack("!d", now) + b"minivmm" * 4
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, sent & 0xFFFF)
            pkt = struct.pack("!BBHHH", 8, 0, checksum(hdr + body), ident, sent & 0xFFFF) + body
            s.sendto(pkt, (addr, 0))
            sent += 1
            next_send += interval
        r, _, _ = select.select([s], [], [], max(0.0, min(next_send, start + seconds) - time.monotonic()))
        if r:
            data = s.recv(2048)
            ihl = (data[0] & 0x0F) * 4
            typ, _, _, rid, seq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if typ == 0 and rid == ident:
                got.add(seq)
                t = time.monotonic()
                max_gap = max(max_gap, t - last_reply)
                last_reply = t
    max_gap = max(max_gap, time.monotonic() - last_reply)
    print(f"sent {sent} received {len(got)} max_gap_ms {max_gap * 1000:.0f}", flush=True)


if __name__ == "__main__":
    main()
