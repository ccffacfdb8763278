"""One measurement each: TCP stream with iperf3, TCP request/response with
sockperf ping-pong, and the host CPU a VMM spends. Servers run in the host
namespace, clients on the guest end (see configs.py)."""
import os
import re
import threading

CLK_TCK = os.sysconf("SC_CLK_TCK")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Server:
    """A server in a namespace; its output is collected so the pipe never fills."""

    def __init__(self, ns, cmd, ready, timeout=30):
        self.proc = ns.popen(cmd)
        self.lines = []
        self.seen = threading.Event()
        threading.Thread(target=self._read, args=(ready,), daemon=True).start()
        if not self.seen.wait(timeout):
            self.stop()
            raise RuntimeError(f"{cmd.split()[0]} server did not start: {''.join(self.lines)[-300:]}")

    def _read(self, ready):
        for line in self.proc.stdout:
            self.lines.append(line)
            if ready in line:
                self.seen.set()
        self.seen.set()  # exited: the caller finds out from what it printed

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def iperf(end, host_ip, seconds, reverse):
    """TCP stream, guest->host (or host->guest with reverse). Returns
    (Mbit/s, bytes moved, host CPU seconds meanwhile), as the receiver saw them."""
    srv = Server(end.ns, f"iperf3 -s -1 --forceflush -B {host_ip}", "listening")
    try:
        # -i 0: no per-second reports, each would be console output (nested exits) mid-measurement.
        streams = f"-P {end.streams}" if end.streams > 1 else ""  # the receiver [SUM] line comes last
        rc, out, cpu = end.run(f"iperf3 -c {host_ip} -t {seconds} {'-R' if reverse else ''} {streams} -f m -i 0",
                               timeout=seconds + 180)
    finally:
        srv.stop()
    m = re.findall(r"([\d.]+) ([KMGT]?)Bytes\s+([\d.]+) Mbits/sec.*receiver", out)
    if rc or not m:
        raise RuntimeError(f"iperf3 {'-R ' if reverse else ''}failed (status {rc}): {out.strip()[-300:]}")
    amount, unit, mbps = m[-1]
    return float(mbps), float(amount) * UNITS[unit], cpu


def request_response(end, host_ip, seconds):
    """sockperf ping-pong over TCP: one message in flight, each answered.
    Returns (usec per transaction, transactions/s) over sockperf's valid
    duration (it leaves out its warm-up)."""
    srv = Server(end.ns, f"sockperf server --tcp -i {host_ip} -p 11111", "block on socket")
    try:
        rc, out, _ = end.run(f"sockperf ping-pong --tcp -i {host_ip} -p 11111 -t {seconds}", timeout=seconds + 180)
    finally:
        srv.stop()
    out = ANSI.sub("", out)
    m = re.search(r"\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=\d+; ReceivedMessages=(\d+)", out)
    if rc or not m or not int(m.group(2)):
        raise RuntimeError(f"sockperf failed (status {rc}): {out.strip()[-300:]}")
    runtime, n = float(m.group(1)), int(m.group(2))
    return runtime * 1e6 / n, n / runtime


def _ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def vmm_cpu_seconds(pid):
    """CPU seconds of the VMM (all its threads, vCPUs included) plus the
    kernel's vhost-net worker threads serving it. Those are kernel threads
    named vhost-<tid of the thread that set the owner>, outside the process
    (Linux 6.1, as in the outer host; newer kernels make them threads of the
    process, which /proc/<pid>/stat already counts and /proc does not list)."""
    total = _ticks(pid)
    try:
        tids = set(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        tids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
            if comm.startswith("vhost-") and comm[6:] in tids:
                total += _ticks(entry)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / CLK_TCK


def rss_outside_guest_mib(pid, guest_mib):
    """Resident memory of a VMM outside its guest's RAM, from
    /proc/PID/smaps: total Rss less that of the guest-RAM mappings, which are
    told by size (guest_mib or more: minivmm maps all the guest's RAM as one
    mapping, QEMU as one of guest_mib plus its alignment; no
    other mapping of either comes near). Raises if none is found, rather
    than report the guest's pages as the VMM's."""
    total = guest = guest_size = 0
    size = 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^(Size|Rss):\s+(\d+) kB", line)
            if not m:
                continue
            kib = int(m.group(2))
            if m.group(1) == "Size":
                size = kib
                continue
            total += kib
            if size >= guest_mib * 1024:
                guest += kib
                guest_size += size
    if not guest_size:
        raise RuntimeError(f"no mapping of {guest_mib} MiB or more in /proc/{pid}/smaps: where is guest RAM?")
    return (total - guest) / 1024
