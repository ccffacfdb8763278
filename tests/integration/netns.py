"""A network namespace per test: taps, addresses and servers live there.

Nothing is configured in the namespace the tests were started from; the
namespace and everything in it disappear in close().
"""
import os
import subprocess
import sys

from vmtest import TestFailure


class Netns:
    def __init__(self, name):
        self.name = name
        subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)
        r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if r.returncode:
            raise TestFailure(f"cannot create network namespace {name}: {r.stderr.strip()}")
        self.sh("ip link set lo up")

    def prefix(self):
        return ["ip", "netns", "exec", self.name]

    def sh(self, cmd, check=True, timeout=120):
        r = subprocess.run(self.prefix() + ["sh", "-c", cmd], capture_output=True, text=True, timeout=timeout)
        if check and r.returncode:
            raise TestFailure(f"in netns {self.name}: {cmd!r} failed: {r.stderr.strip() or r.stdout.strip()}")
        return r

    def popen(self, cmd):
        # exec: killing the Popen then kills the program, not just a shell.
        return subprocess.Popen(self.prefix() + ["sh", "-c", "exec " + cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def close(self):
        subprocess.run(["ip", "netns", "del", self.name], stderr=subprocess.DEVNULL)


class BulkServer:
    """One TCP transfer with the guest, served in the namespace by bulk.py:
    receive exactly `size` bytes, or send `size` bytes of seeded random data.
    result() gives the server's (sha256, bytes) to compare with the guest's."""

    def __init__(self, ns, mode, addr, port, size, seconds=0):
        here = os.path.dirname(os.path.abspath(__file__))
        self.proc = subprocess.Popen(ns.prefix() + [sys.executable, os.path.join(here, "bulk.py"), mode, addr,
                                                    str(port), str(size), str(seconds)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "listening":
            raise TestFailure(f"bulk server on {addr}:{port} did not start: {line}{self.proc.stdout.read()}")

    def result(self, timeout):
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise TestFailure("bulk transfer did not finish")
        fields = out.split()
        if self.proc.returncode or len(fields) != 2:
            raise TestFailure(f"bulk server failed: {out.strip()}")
        return fields[0], int(fields[1])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
