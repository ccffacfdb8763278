"""make bench's VM table, run where a stock kernel boots under KVM (the
emulated outer host here; tools/bench.sh starts it there).

Measures each configuration of configs.ROWS in turn, round after round
(interleaved, and each round starting one row further on, so drift in the
host hits every row alike): iperf3 both ways, sockperf TCP ping-pong, boot
time to the guest's init, the VMM's max RSS and host CPU per GB moved.
Timing never fails the run. A configuration that fails (most often its
guest never boots: the emulated host's known flake) is retried once in a
fresh VM, loudly; failing again, that round has no sample, and a row with
no sample at all reads "failed".

Environment: MINIVMM_BENCH_QUICK=1 (1 round of 3 s runs; else 3 rounds of
10 s), MINIVMM_BENCH_ROUNDS, MINIVMM_BENCH_SECONDS override either;
MINIVMM_BENCH_ROWS (comma-separated) keeps only the rows named. Writes
results.csv, results.md and raw.csv to $MINIVMM_RESULTS (the rig's share
back to the real machine), or build/bench when run by hand.
"""
import os
import sys
import time

sys.dont_write_bytecode = True  # nothing written into the source tree (read-only in the outer host anyway)
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import configs  # noqa: E402
import metrics  # noqa: E402
import report  # noqa: E402

QUICK = os.environ.get("MINIVMM_BENCH_QUICK") == "1"
ROUNDS = int(os.environ.get("MINIVMM_BENCH_ROUNDS") or (1 if QUICK else 3))
SECONDS = int(os.environ.get("MINIVMM_BENCH_SECONDS") or (3 if QUICK else 10))


def say(msg):
    print(f"bench: {msg}", flush=True)


def measure(name, log_name):
    end = configs.ROWS[name]()
    try:
        boot = end.start(log_name)
        g2h, g2h_bytes, g2h_cpu = metrics.iperf(end, configs.HOST_IP, SECONDS, reverse=False)
        h2g, h2g_bytes, h2g_cpu = metrics.iperf(end, configs.HOST_IP, SECONDS, reverse=True)
        usec, tps = metrics.request_response(end, configs.HOST_IP, SECONDS)
        rss = end.stop()
    finally:
        end.close()
    # GB = 10^9 bytes, both directions' transfers together.
    return {"g2h_mbps": g2h, "h2g_mbps": h2g, "rr_usec": usec, "rr_tps": tps, "boot_s": boot, "rss_mib": rss,
            "cpu_s_per_gb": (g2h_cpu + h2g_cpu) / ((g2h_bytes + h2g_bytes) / 1e9)}


def show(s):
    na = lambda v, fmt: "n/a" if v is None else fmt.format(v)  # noqa: E731
    return (f"guest->host {s['g2h_mbps']:.0f} Mbit/s, host->guest {s['h2g_mbps']:.0f} Mbit/s, "
            f"RR {s['rr_usec']:.1f} usec ({s['rr_tps']:.0f}/s), boot {na(s['boot_s'], '{:.1f} s')}, "
            f"RSS {na(s['rss_mib'], '{:.0f} MiB')}, CPU {s['cpu_s_per_gb']:.2f} s/GB")


def save(results, prefix, notes=""):
    out = os.environ.get("MINIVMM_RESULTS") or os.path.join(REPO, "build", "bench")
    os.makedirs(out, exist_ok=True)
    report.write_csv(os.path.join(out, "results.csv"), results)
    report.write_raw(os.path.join(out, "raw.csv"), results)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(prefix + "\n\n" + report.markdown(results) + "\n\n" + notes + "\n")


def main():
    names = list(configs.ROWS)
    if os.environ.get("MINIVMM_BENCH_ROWS"):
        keep = [n.strip() for n in os.environ["MINIVMM_BENCH_ROWS"].split(",")]
        unknown = [n for n in keep if n not in configs.ROWS]
        if unknown:
            say(f"no such row: {', '.join(unknown)} (rows: {', '.join(names)})")
            return 1
        names = keep
    results = {n: [] for n in names}
    retried, failed = [], []
    t0 = time.monotonic()
    say(f"{ROUNDS} round(s) of {len(names)} configurations, {SECONDS} s per transfer")
    for r in range(ROUNDS):
        for name in names[r % len(names):] + names[:r % len(names)]:
            slug = "".join(c if c.isalnum() else "-" for c in name)
            sample = None
            for attempt in (1, 2):
                try:
                    sample = measure(name, f"bench-r{r + 1}-{slug}" + ("-retry" if attempt == 2 else ""))
                    break
                except Exception as e:  # noqa: BLE001 - any failure gets the one retry
                    why = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
                    if attempt == 1:
                        say(f"RETRY round {r + 1} {name}: failed ({why}); retrying once in a fresh VM")
                        retried.append(f"round {r + 1} {name}")
                    else:
                        say(f"FAILED round {r + 1} {name}: failed again ({why}); no sample this round")
                        failed.append(f"round {r + 1} {name}")
            results[name].append(sample)
            if sample:
                say(f"round {r + 1} {name}: {show(sample)}")
            # After every sample: an outer host that dies mid-run (README,
            # known problems) still leaves what was measured.
            save(results, "(partial: the run did not finish) ")

    table = report.markdown(results)
    notes = (f"Median of {ROUNDS} interleaved round(s) (min-max when more than one), {SECONDS} s per transfer, "
             f"{configs.MEM_MIB} MiB and {configs.CPUS} vCPU per guest (the queues= rows: 2 vCPUs and 4 "
             "parallel TCP streams each way, to show multiqueue scaling), same kernel and initramfs. "
             "TCP RR: sockperf ping-pong over TCP, one message in flight. Boot: VMM start to the guest's "
             "init marker (quiet console). Host CPU: VMM process (all threads) plus kernel vhost threads, "
             "over both iperf3 transfers, per 10^9 bytes moved; native: the iperf3 client process.")
    if os.environ.get("MINIVMM_OUTER"):
        notes += (" Measured inside the emulated outer host (QEMU TCG): absolute figures are far below "
                  "hardware, compare rows only.")
    print("\n" + table + "\n\n" + notes, flush=True)
    if retried:
        say(f"retried after a failure: {', '.join(retried)}")
    if failed:
        say(f"failed twice (no sample): {', '.join(failed)}")
    say(f"VM table took {time.monotonic() - t0:.0f} s")

    save(results, "", notes)
    # Timing never fails make bench; a table with no row at all does.
    return 0 if any(any(s) for s in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
