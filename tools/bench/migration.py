"""make bench's migration part (MINIVMM_BENCH_PARTS=migration): live
migration of a 512 MiB, 1 vCPU guest with one NIC on a shared multi_queue
tap, within one outer host, minivmm beside QEMU 7.2 in the same run.

Rows (MINIVMM_BENCH_MIGRATION_ROWS, comma-separated, keeps only those named,
e.g. "minivmm kernel -> worker (iperf3),qemu 7.2 vhost=on defaults (idle)"):
- minivmm kernel -> kernel, worker -> worker, kernel -> worker (vhost=);
- QEMU 7.2 vhost=on with its default migration parameters (the downtime
  limit and bandwidth cap it reports are in the notes), and with
  max-bandwidth raised to 10 GiB/s, since minivmm has no cap;
- the same 10 GiB/s QEMU on its usual arrangement instead ("bridge"): a
  single-queue tap of its own for each process on a bridge holding the
  host's address. On the shared tap QEMU's destination attaches its queues
  as it starts and frames for the guest wait in them until it runs, which
  the ping gap shows (README.md, NOTES.md);
each with the guest idle and under iperf3 load (host->guest, the direction
whose pages the datapath writes: vhost's dirty log, not KVM's, sees them).

Per move: total and downtime as the VMM reports them (minivmm: its `migrate`
reply, from the pause to the destination's "running"; QEMU: query-migrate's
total-time and downtime), rounds (minivmm's; QEMU's dirty-sync-count), MB in
the stream (minivmm: all of it; QEMU: RAM transferred), and what the network
saw: tests/integration/pinger.py from the host every 10 ms, its longest gap
between replies and the pings lost, from when the destination waits. Under load: iperf3's rate over its whole
run, and how long the load still had to run when the move completed
(negative: the move finished only after the load had ended).

A guest boots once per VMM (and tap arrangement) and round and is moved row after row (a move
that only brings it to a row's source is not measured). A failure ends that
guest; the rows left are retried once in a fresh one, loudly, then read
`failed`. Writes migration.md, migration.csv, migration-raw.csv.
"""
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass

from test_migration import shared_tap
from test_net import GUEST, HOST
from netns import Netns
from vmtest import REPO, TestFailure

import configs
import metrics
import report
import rounds
from migration_vms import MiniVm, QemuVm

QUICK = os.environ.get("MINIVMM_BENCH_QUICK") == "1"
# Long enough that a move under load completes while iperf3 still runs, and
# inside the pinger's window, in an emulated host that other work slows too
# (a 107 MB QEMU move took 23 s in one quick run); QUICK changes only rounds.
LOAD_S = 30  # iperf3's run; the destination starts 3 s into it
PING_IDLE_S, PING_LOAD_S = 40, LOAD_S + 10  # the pinger's window; the move starts 2 s into it
PINGER = os.path.join(REPO, "tests", "integration", "pinger.py")
TAP, BRIDGE = "mvbmig0", "mvbmigbr"
BIG_BW = 10 << 30  # QEMU's max-bandwidth for the raised rows, bytes/s (HMP: 10G)

METRICS = [
    ("total_ms", "total, ms", 0),
    ("downtime_ms", "downtime (VMM's own), ms", 0),
    ("gap_ms", "longest ping gap (10 ms pings), ms", 0),
    ("lost", "pings lost", 0),
    ("rounds", "rounds", 0),
    ("mb", "MB sent", 1),
    ("load_mbps", "iperf3 host->guest, Mbit/s", 0),
    ("load_left_s", "iperf3 left at completion, s", 1),
]


@dataclass
class Row:
    vmm: str  # the guest it takes: "minivmm", "qemu" (shared tap), "qemu bridge" (a tap each on a bridge)
    src: str  # the backend the guest must be on before the move
    dst: str
    load: bool
    bandwidth: int = 0  # QEMU: max-bandwidth for the move (0: QEMU's default)


ROWS = {}
for _s, _d in (("kernel", "kernel"), ("worker", "worker"), ("kernel", "worker")):
    for _load in (False, True):
        ROWS[f"minivmm {_s} -> {_d} ({'iperf3' if _load else 'idle'})"] = Row("minivmm", _s, _d, _load)
for _vmm, _bw, _what in (("qemu", 0, "defaults"), ("qemu", BIG_BW, "max-bandwidth 10G"),
                         ("qemu bridge", BIG_BW, "max-bandwidth 10G bridge")):
    for _load in (False, True):
        ROWS[f"qemu 7.2 vhost=on {_what} ({'iperf3' if _load else 'idle'})"] = Row(_vmm, "qemu", "qemu", _load, _bw)
# The order a guest goes through them: minivmm's kernel -> worker under load
# last, after an unmeasured worker -> kernel.
ORDER = {"minivmm": [n for n in ROWS if ROWS[n].vmm == "minivmm" and not (ROWS[n].src != ROWS[n].dst and ROWS[n].load)]
         + [n for n in ROWS if ROWS[n].vmm == "minivmm" and ROWS[n].src != ROWS[n].dst and ROWS[n].load],
         "qemu": [n for n in ROWS if ROWS[n].vmm == "qemu"],
         "qemu bridge": [n for n in ROWS if ROWS[n].vmm == "qemu bridge"]}

qemu_defaults = {}  # QEMU's migration parameters as it reported them, for the notes


def ping_gap(pinger, window, started, done):
    """(longest gap ms or None, lost): None when the move outlasted the pinger's window."""
    out, _ = pinger.communicate(timeout=window + 60)
    m = re.search(r"sent (\d+) received (\d+) max_gap_ms (\d+)", out)
    if not m:
        raise TestFailure(f"pinger: {out!r}")
    sent, got, gap = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if done - started > window - 1:
        rounds.say(f"the move ended {done - started:.0f} s into the pinger's {window} s: no gap figure")
        return None, sent - got
    return gap, sent - got


def measure_move(vm, ns, name):
    row = ROWS[name]
    srv = None
    load_end = None
    try:
        if row.load:
            srv = metrics.Server(ns, f"iperf3 -s -1 --forceflush -B {HOST}", "listening")
            # A job of the guest's shell, so `wait` finds it after the move ("& true": run() appends "; ...").
            # Per-second reports go to a file in the guest, not its console.
            vm.g.run(f"iperf3 -c {HOST} -t {LOAD_S} -R -f m -i 1 > /tmp/ipl 2>&1 & true")
            load_end = time.monotonic() + LOAD_S
            time.sleep(3)
        # The destination waits before the pinger starts: its start-up (seconds
        # for QEMU here) is no part of either VMM's move.
        vm.prepare(row.dst) if row.vmm == "minivmm" else vm.prepare(row.bandwidth)
        window = PING_LOAD_S if row.load else PING_IDLE_S
        pinger = subprocess.Popen(ns.prefix() + [sys.executable, PINGER, GUEST, "0.01", str(window)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            if pinger.stdout.readline().strip() != "pinging":
                raise TestFailure("the pinger did not start")
            started = time.monotonic()
            time.sleep(2)
            rep = vm.move()
            done = time.monotonic()
            gap, lost = ping_gap(pinger, window, started, done)
        finally:
            if pinger.poll() is None:
                pinger.kill()
        if isinstance(vm, QemuVm) and vm.defaults and not qemu_defaults:
            qemu_defaults.update(vm.defaults)
        sample = dict(rep, gap_ms=gap, lost=lost, load_mbps=None, load_left_s=None)
        if row.load:
            rc, out = vm.g.run("wait; cat /tmp/ipl", timeout=LOAD_S + 180)
            m = re.findall(r"([\d.]+) Mbits/sec.*receiver", out)
            if not m:
                raise TestFailure(f"iperf3 across the move (log {vm.g.log_path}): {out.strip()[-300:]}")
            sample.update(load_mbps=float(m[-1]), load_left_s=load_end - done)
            per_s = re.findall(r"\]\s+\d+\.\d+-\d+\.\d+\s+sec\s+[\d.]+ \w?Bytes\s+([\d.]+) Mbits/sec\s*$", out, re.M)
            rounds.say(f"{name}: iperf3 Mbit/s each second (the move ended {LOAD_S - (load_end - done):.0f} s in): "
                       + " ".join(f"{float(x):.0f}" for x in per_s))
    finally:
        if srv:
            srv.stop()
    # Traffic after the move, or the row fails: a stalled NIC is a result to report, not a figure.
    rc, out = vm.g.run(f"ping -c 3 -W 5 {HOST}", timeout=60)
    if rc:
        raise TestFailure(f"no traffic after the move (log {vm.g.log_path}): {out.strip()[-200:]}")
    return sample


def chain(vmm, todo, label, got):
    """Boots one guest and moves it through the rows todo (in order), each
    sample into got[name]; raises at the first failure."""
    ns = Netns("mvbmig")
    vm = None
    try:
        if vmm == "qemu bridge":
            ns.sh(f"ip link add {BRIDGE} type bridge && ip addr add {HOST}/24 dev {BRIDGE} && ip link set {BRIDGE} up")
            vm = QemuVm(ns, TAP, label.replace(" ", "-"), bridge=BRIDGE)
        else:
            shared_tap(ns, TAP)
            vm = MiniVm(ns, TAP, label) if vmm == "minivmm" else QemuVm(ns, TAP, label)
        vm.boot(configs.BOOT_TIMEOUT)
        rc, out = vm.g.run(f"ping -c 2 -W 5 {HOST}", timeout=60)
        if rc:
            raise TestFailure(f"guest cannot reach the host: {out.strip()[-200:]}")
        for name in todo:
            row = ROWS[name]
            if vm.backend != row.src:
                vm.prepare(row.src)  # to the row's start, not measured
                vm.move()
            got[name] = measure_move(vm, ns, name)
            rounds.say(f"{label} {name}: {show(got[name])}")
    finally:
        if vm:
            vm.close()
        ns.close()


def show(s):
    return ", ".join(f"{h} {'n/a' if s.get(k) is None else f'{s[k]:.{d}f}'}" for k, h, d in METRICS)


def notes(nrounds):
    d = qemu_defaults
    qd = (f"downtime-limit {d['downtime-limit']} ms, max-bandwidth {d['max-bandwidth'] / 2**20:.0f} MiB/s"
          if d else "not read (no QEMU move succeeded)")
    where = (" Measured inside the emulated outer host (QEMU TCG): absolute figures are far below hardware, "
             "compare rows only." if os.environ.get("MINIVMM_OUTER") else "")
    return (f"Median of {nrounds} interleaved round(s) (min-max when more than one). 512 MiB, 1 vCPU, one NIC "
            "on a multi_queue tap shared by source and destination (the `bridge` rows: QEMU's usual arrangement "
            "instead, a tap of its own for each process on a bridge), both processes on the same host, "
            "migrating over a unix socket. minivmm: `--incoming unix:PATH`, `minivmm ctl SOCK migrate URI`; "
            "downtime from the pause to the destination's \"running\"; no bandwidth cap. QEMU 7.2 vhost=on: "
            f"`-incoming unix:PATH`, QMP `migrate`, query-migrate's total-time and downtime; QEMU's defaults "
            f"(as it reported them: {qd}) and, in the 10G rows, max-bandwidth raised to 10 GiB/s "
            "(`migrate-set-parameters`). Rounds: minivmm's pre-copy passes (the full one included); QEMU's "
            "dirty-sync-count. MB sent: minivmm's whole stream; QEMU's RAM transferred (10^6 bytes). Ping gap: "
            "tests/integration/pinger.py every 10 ms from the host, the longest time without a reply over its "
            f"window ({PING_IDLE_S} s idle, {PING_LOAD_S} s under load), which starts once the destination waits "
            "and 2 s before the move. "
            f"iperf3: `-R` (host->guest) for {LOAD_S} s, the destination started 3 s in; its rate over the whole "
            "run, and how long it still had to run when the move completed (negative: the move completed only "
            "after the load had stopped)." + where)


def run(out, nrounds):
    """True if any row has a sample."""
    try:
        names = rounds.pick(ROWS, os.environ.get("MINIVMM_BENCH_MIGRATION_ROWS"))
    except ValueError as e:
        rounds.say(str(e))
        return False
    t0 = time.monotonic()
    chains = [(vmm, [n for n in ORDER[vmm] if n in names]) for vmm in ORDER]
    chains = [c for c in chains if c[1]]
    rounds.say(f"migration: {nrounds} round(s) of {len(names)} rows ({len(chains)} guests a round)")
    results = {n: [] for n in names}
    retried, failed = [], []

    def save(prefix=""):
        os.makedirs(out, exist_ok=True)
        report.write_csv(os.path.join(out, "migration.csv"), results, METRICS)
        report.write_raw(os.path.join(out, "migration-raw.csv"), results, METRICS)
        with open(os.path.join(out, "migration.md"), "w") as f:
            f.write(prefix + "Live migration, minivmm and QEMU 7.2\n\n" + report.markdown(results, METRICS)
                    + "\n\n" + notes(nrounds) + "\n")

    for r in range(nrounds):
        for vmm, todo in chains[r % len(chains):] + chains[:r % len(chains)]:
            got = {}
            for attempt in (1, 2):
                left = [n for n in todo if n not in got]
                try:
                    chain(vmm, left, f"migbench-r{r + 1}-{vmm.replace(' ', '-')}" + ("-retry" if attempt == 2 else ""), got)
                    break
                except Exception as e:  # noqa: BLE001 - any failure gets the one retry
                    where = [n for n in left if n not in got][:1]
                    what = f"round {r + 1} {vmm} at {where[0] if where else 'boot'}"
                    if attempt == 1:
                        rounds.say(f"RETRY {what}: failed ({rounds.why(e)}); the rows left once more in a fresh guest")
                        retried.append(what)
                    else:
                        rounds.say(f"FAILED {what}: failed again ({rounds.why(e)}); those rows have no sample "
                                   "this round")
                        failed.append(what)
            for n in todo:
                results[n].append(got.get(n))
            save("(partial: the run did not finish) ")
    save()
    print("\nLive migration, minivmm and QEMU 7.2\n\n" + report.markdown(results, METRICS) + "\n\n" + notes(nrounds),
          flush=True)
    if retried:
        rounds.say(f"migration: retried after a failure: {', '.join(retried)}")
    if failed:
        rounds.say(f"migration: failed twice: {', '.join(failed)}")
    rounds.say(f"migration took {rounds.elapsed(t0)}")
    return any(any(s) for s in results.values())
