"""bulk.py recv|send ADDR PORT SIZE: one TCP transfer for the checksum tests.

Prints "listening" once the socket is bound, then "SHA256 BYTES" for what it
received or sent. Sent data is seeded random bytes, so nothing compresses.
"""
import hashlib
import random
import socket
import sys


def main(mode, addr, port, size):
    port, size = int(port), int(size)
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
                c.sendall(data)
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
