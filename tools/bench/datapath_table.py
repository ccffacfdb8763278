"""Summarises bench_datapath's Google Benchmark JSON as a Markdown table
(stdout) and a CSV: per frame size and direction, the worker's and the
kernel vhost-net's rates side by side, and the memcpy ceiling. With several
repetitions (rounds), the median with min-max beside it.

    datapath_table.py DATAPATH.json OUT.csv
"""
import csv
import json
import math
import statistics
import sys

SIZES = {64: "64 B", 1514: "1500 B", 65536: "64 KiB (TSO)"}
DIRECTIONS = {"Tx": "TX guest->tap", "Rx": "RX tap->guest"}
BACKENDS = {"Worker": "worker", "Kernel": "vhost-net"}


def load(path):
    """{(name, size): [repetition entries]}, e.g. ("WorkerTx", 64); an
    entry with an error keeps its message."""
    with open(path) as f:
        runs = json.load(f)["benchmarks"]
    out = {}
    for b in runs:
        if b.get("run_type", "iteration") != "iteration":
            continue  # Google Benchmark's own mean/median/stddev: ours are below
        name, size = b["name"].split("/")[:2]
        out.setdefault((name, int(size)), []).append(b)
    return out


def summary(entries):
    """None (not run), a string (every repetition failed: why), or
    {"pps"|"gbps"|"frame_bytes": (median, min, max), "ok": n, "n": n}."""
    if not entries:
        return None
    ok = [b for b in entries if not b.get("error_occurred")]
    if not ok:
        return "failed: " + entries[0].get("error_message", "?")
    s = {"ok": len(ok), "n": len(entries)}
    for k in ("pps", "gbps", "frame_bytes", "backend_cpu_ns"):
        vals = [b[k] for b in ok if k in b]
        s[k] = (statistics.median(vals), min(vals), max(vals)) if vals else None
    return s


def fmt(v, scale, decimals):
    """At least decimals, more where the median needs them for 3 significant
    digits (the emulated outer host's 64 KiB rows are below 0.001 Mpps)."""
    med, lo, hi = (x / scale for x in v)
    if med > 0:
        decimals = max(decimals, 2 - math.floor(math.log10(med)))
    f = f"{{:.{decimals}f}}"
    return f.format(med) if lo == hi else f"{f.format(med)} ({f.format(lo)}-{f.format(hi)})"


def cells(s):
    """(Mpps cell, Gbit/s cell)."""
    if s is None:
        return "not run", ""
    if isinstance(s, str):
        return s, ""
    lost = f" [{s['n'] - s['ok']} of {s['n']} failed]" if s["ok"] < s["n"] else ""
    return fmt(s["pps"], 1e6, 3) + lost, fmt(s["gbps"], 1, 2)


def cpu(s):
    return fmt(s["backend_cpu_ns"], 1e3, 2) if isinstance(s, dict) and s["backend_cpu_ns"] else "-"


def ratio(a, b):
    ok = isinstance(a, dict) and isinstance(b, dict) and b["gbps"][0]
    return f"{a['gbps'][0] / b['gbps'][0]:.2f}" if ok else ""


def main(src, dst):
    runs = load(src)
    rounds = max((len(v) for v in runs.values()), default=0)
    print("| frame | direction | worker, Mpps | worker, Gbit/s | vhost-net, Mpps | vhost-net, Gbit/s "
          "| worker / vhost-net | backend CPU, usec/frame: worker; vhost-net | memcpy ceiling, Mpps | memcpy, Gbit/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for size, label in SIZES.items():
        mc = summary(runs.get(("Memcpy", size)))
        for d, dlabel in DIRECTIONS.items():
            w, k = (summary(runs.get((b + d, size))) for b in BACKENDS)
            if w is None and k is None and mc is None:
                continue  # left out by a --benchmark_filter
            # The RX stream's 64 KiB frames are what the host's TCP made (about 64 KiB).
            if size > 1514 and d == "Rx":
                avg = [f"{n} {s['frame_bytes'][0] / 1024:.1f} KiB" for n, s in zip(BACKENDS.values(), (w, k))
                       if isinstance(s, dict)]
                if avg:
                    dlabel += ", avg " + ", ".join(avg)
            print(f"| {label} | {dlabel} | {' | '.join(cells(w))} | {' | '.join(cells(k))} | {ratio(w, k)} "
                  f"| {cpu(w)}; {cpu(k)} | {' | '.join(cells(mc))} |")
            rows += [(size, d, BACKENDS[b], s) for b, s in zip(BACKENDS, (w, k))]
        if mc is not None:
            rows.append((size, "", "memcpy", mc))
    order = ", run in random interleaved order" if rounds > 1 else ""
    print(f"\nMedian of {rounds} repetition(s) per row (min-max when more than one){order}; "
          "worker / vhost-net: ratio of the medians' Gbit/s. Backend CPU: time on a CPU "
          "of the worker's threads, or of vhost-net's kernel thread, per frame moved (the simulated driver's "
          "thread not counted).")
    with open(dst, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame_bytes", "direction", "backend", "status", "rounds_ok", "rounds"] +
                   [f"{k}{sfx}" for k in ("pps", "gbps", "avg_frame_bytes", "backend_cpu_ns_per_frame")
                    for sfx in ("", "_min", "_max")])
        for size, d, backend, s in rows:
            if isinstance(s, dict):
                vals = [f"{x:.6g}" if s[k] else "" for k in ("pps", "gbps", "frame_bytes", "backend_cpu_ns")
                        for x in (s[k] or (0, 0, 0))]
                w.writerow([size, d, backend, "ok", s["ok"], s["n"]] + vals)
            else:
                n = len(runs.get((next(b for b in BACKENDS if BACKENDS[b] == backend) + d, size), []))
                w.writerow([size, d, backend, s or "not run", 0, n] + [""] * 12)


if __name__ == "__main__":
    main(*sys.argv[1:3])
