"""bulk.py recv|send ADDR PORT SIZE [SECONDS]: one TCP transfer for the checksum tests.

Prints "listening" once the socket is bound, then "SHA256 BYTES" for what it
received or sent. Sent data is seeded random bytes, so nothing compresses.
With SECONDS, a send is spread evenly over that long (the migration tests
keep a stream going while RAM is copied).
"""
import hashlib
import random
import socket
import sys
import time


def main(mode, addr, port, size, seconds="0"):
    port, size, seconds = int(port), int(size), float(seconds)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(1)
        s.settimeout(900)
        print("listening", flush=True)
        c, _ = s.accept()
        with c:
            c.settimeout(900)
            h, done = hashlib.sha256(), 0
            if mode == "send":
                data = random.Random(4711).randbytes(size)
                chunk = 64 << 10
                start = time.monotonic()
                for off in range(0, size, chunk):
                    if seconds:  # ahead of the even pace: wait for it
                        time.sleep(max(0.0, start + seconds * off / size - time.monotonic()))
                    c.sendall(data[off:off + chunk])
                h.update(data)
                done = size
            else:
                while done < size:
                    chunk = c.recv(min(1 << 20, size - done))
                    if not chunk:
                        break
                    h.update(chunk)
                    done += len(chunk)
    print(h.hexdigest(), done, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
