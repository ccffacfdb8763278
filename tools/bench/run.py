"""make bench's part in the outer host (or wherever a stock kernel boots
under KVM and /dev/vhost-net exists; tools/bench.sh starts it there). Three
parts, in this order:

1. datapath: the microbenchmark (datapath.py), worker against the kernel's
   vhost-net, no VM.
2. boot: VMM start to the guest's init, two kernels, minivmm's two boot
   paths and QEMU (boot.py).
3. vm: the VM table. Each configuration of configs.ROWS in turn, round after
   round (rounds.py): iperf3 both ways, sockperf TCP ping-pong, boot time to
   the guest's init, the VMM's max RSS, its Rss outside guest RAM after the
   transfers (smaps) and host CPU per GB moved.
4. migration: live migration, minivmm's datapaths and QEMU 7.2, idle and
   under iperf3 (migration.py).
5. net612: notification coalescing and USO against QEMU (net612.py); only
   in a 6.12 outer host (MINIVMM_KERNEL=6.12), which tools/bench.sh starts
   for it alone.

Timing never fails the run. A configuration that fails (most often its
guest never boots: the emulated host's known flake) is retried once in a
fresh VM, loudly; failing again, that round has no sample, and a row with
no sample at all reads "failed".

Environment: MINIVMM_BENCH_PARTS (comma-separated: datapath, boot, vm,
migration, net612; default all), MINIVMM_BENCH_QUICK=1 (1 round of 3 s runs; else 3 rounds of
10 s), MINIVMM_BENCH_ROUNDS, MINIVMM_BENCH_SECONDS override either;
MINIVMM_BENCH_ROWS, MINIVMM_BENCH_BOOT_ROWS and
MINIVMM_BENCH_MIGRATION_ROWS (comma-separated) keep only
the rows named; datapath.py's own knobs. Writes results.csv, results.md,
raw.csv, boot.csv, boot-raw.csv, boot.md, migration.* and datapath-outer.* to
$MINIVMM_RESULTS (the rig's share back to the real machine), or build/bench
when run by hand.
"""
import os
import sys
import time

sys.dont_write_bytecode = True  # nothing written into the source tree (read-only in the outer host anyway)
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import boot  # noqa: E402
import configs  # noqa: E402
import datapath  # noqa: E402
import metrics  # noqa: E402
import migration  # noqa: E402
import net612  # noqa: E402
import report  # noqa: E402
import rounds  # noqa: E402

QUICK = os.environ.get("MINIVMM_BENCH_QUICK") == "1"
ROUNDS = int(os.environ.get("MINIVMM_BENCH_ROUNDS") or (1 if QUICK else 3))
SECONDS = int(os.environ.get("MINIVMM_BENCH_SECONDS") or (3 if QUICK else 10))
PARTS = ("datapath", "boot", "vm", "migration", "net612")
OUT = os.environ.get("MINIVMM_RESULTS") or os.path.join(REPO, "build", "bench")


def measure(name, log_name):
    end = configs.ROWS[name]()
    try:
        boot_s = end.start(log_name)
        g2h, g2h_bytes, g2h_cpu = metrics.iperf(end, configs.HOST_IP, SECONDS, reverse=False)
        h2g, h2g_bytes, h2g_cpu = metrics.iperf(end, configs.HOST_IP, SECONDS, reverse=True)
        usec, tps = metrics.request_response(end, configs.HOST_IP, SECONDS)
        outside = end.footprint()  # after the transfers, the guest still running
        rss = end.stop()
    finally:
        end.close()
    # GB = 10^9 bytes, both directions' transfers together.
    return {"g2h_mbps": g2h, "h2g_mbps": h2g, "rr_usec": usec, "rr_tps": tps, "boot_s": boot_s, "rss_mib": rss,
            "outside_mib": outside, "cpu_s_per_gb": (g2h_cpu + h2g_cpu) / ((g2h_bytes + h2g_bytes) / 1e9)}


def show(s):
    na = lambda v, fmt: "n/a" if v is None else fmt.format(v)  # noqa: E731
    return (f"guest->host {s['g2h_mbps']:.0f} Mbit/s, host->guest {s['h2g_mbps']:.0f} Mbit/s, "
            f"RR {s['rr_usec']:.1f} usec ({s['rr_tps']:.0f}/s), boot {na(s['boot_s'], '{:.1f} s')}, "
            f"max RSS {na(s['rss_mib'], '{:.0f} MiB')}, outside guest RAM {na(s['outside_mib'], '{:.1f} MiB')}, "
            f"CPU {s['cpu_s_per_gb']:.2f} s/GB")


def save(results, prefix, notes=""):
    os.makedirs(OUT, exist_ok=True)
    report.write_csv(os.path.join(OUT, "results.csv"), results)
    report.write_raw(os.path.join(OUT, "raw.csv"), results)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(prefix + "\n\n" + report.markdown(results) + "\n\n" + notes + "\n")


def vm_table(names):
    """Whether any row has a sample."""
    t0 = time.monotonic()
    rounds.say(f"VM table: {ROUNDS} round(s) of {len(names)} configurations, {SECONDS} s per transfer")
    results, retried, failed = rounds.run(names, ROUNDS, measure, show,
                                          lambda res: save(res, "(partial: the run did not finish) "))
    notes = (f"Median of {ROUNDS} interleaved round(s) (min-max when more than one), {SECONDS} s per transfer, "
             f"{configs.MEM_MIB} MiB and {configs.CPUS} vCPU per guest (the queues= rows: 2 vCPUs and 4 "
             "parallel TCP streams each way, to show multiqueue scaling), same kernel and initramfs. "
             "TCP RR: sockperf ping-pong over TCP, one message in flight. Boot: VMM start to the guest's "
             "init marker (quiet console). VMM max RSS: the process's peak (ru_maxrss), guest pages "
             "touched included. Outside guest RAM: Rss in /proc/PID/smaps less the guest-RAM mapping's, "
             "after the transfers with the guest running (all of the process's threads; not the kernel's "
             "vhost-net threads, which are not in it on Linux 6.1). Host CPU: VMM process (all threads) "
             "plus kernel vhost threads, over both iperf3 transfers, per 10^9 bytes moved; native: the "
             "iperf3 client process.")
    if os.environ.get("MINIVMM_OUTER"):
        notes += (" Measured inside the emulated outer host (QEMU TCG): absolute figures are far below "
                  "hardware, compare rows only.")
    print("\n" + report.markdown(results) + "\n\n" + notes, flush=True)
    if retried:
        rounds.say(f"VM table: retried after a failure: {', '.join(retried)}")
    if failed:
        rounds.say(f"VM table: failed twice (no sample): {', '.join(failed)}")
    rounds.say(f"VM table took {rounds.elapsed(t0)}")
    save(results, "", notes)
    return any(any(s) for s in results.values())


def main():
    parts = [p.strip() for p in (os.environ.get("MINIVMM_BENCH_PARTS") or ",".join(PARTS)).split(",") if p.strip()]
    try:
        if set(parts) - set(PARTS):
            raise ValueError(f"MINIVMM_BENCH_PARTS: no part {', '.join(set(parts) - set(PARTS))} "
                             f"(parts: {', '.join(PARTS)})")
        vm_rows = rounds.pick(configs.ROWS, os.environ.get("MINIVMM_BENCH_ROWS"))
        rounds.pick(boot.ROWS, os.environ.get("MINIVMM_BENCH_BOOT_ROWS"))  # checked before hours of work
        rounds.pick(migration.ROWS, os.environ.get("MINIVMM_BENCH_MIGRATION_ROWS"))
    except ValueError as e:
        rounds.say(str(e))
        return 1
    ok = True
    # Timing never fails make bench; a part that has no row at all does.
    if "datapath" in parts:
        rounds.say("== datapath microbenchmark: worker and vhost-net (no VM)")
        ok &= datapath.run(OUT, "-outer")
    if "boot" in parts:
        rounds.say("== boot to init")
        ok &= boot.run(OUT, ROUNDS)
    if "vm" in parts:
        rounds.say("== VM table")
        ok &= vm_table(vm_rows)
    if "migration" in parts:
        rounds.say("== live migration: minivmm and QEMU 7.2")
        ok &= migration.run(OUT, ROUNDS)
    if "net612" in parts:
        rounds.say("== net612: notification coalescing and USO, against QEMU")
        if os.environ.get("MINIVMM_KERNEL") != "6.12":
            rounds.say("net612 needs the 6.12 images and outer host (MINIVMM_KERNEL=6.12)")
            ok = False
        else:
            ok &= net612.run(OUT, ROUNDS)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
