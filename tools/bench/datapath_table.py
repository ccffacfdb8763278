"""Summarises bench_datapath's Google Benchmark JSON as a Markdown table
(stdout) and a CSV: per frame size, the worker's TX and RX rates and the
memcpy ceiling.

    datapath_table.py DATAPATH.json OUT.csv
"""
import csv
import json
import sys

SIZES = {64: "64 B", 1514: "1500 B", 65536: "64 KiB (TSO)"}
KINDS = ("WorkerTx", "WorkerRx", "Memcpy")


def load(path):
    """{(kind, size): benchmark entry}; an entry with an error keeps its message."""
    with open(path) as f:
        runs = json.load(f)["benchmarks"]
    out = {}
    for b in runs:
        kind, size = b["name"].split("/")[:2]
        out[(kind, int(size))] = b
    return out


def rate(b):
    if b is None:
        return None
    if b.get("error_occurred"):
        return "failed: " + b.get("error_message", "?")
    return b["pps"], b["gbps"], b["frame_bytes"]


def cell_pps(r):
    return r if isinstance(r, str) or r is None else f"{r[0] / 1e6:.3f}"


def cell_gbps(r):
    return "" if isinstance(r, str) or r is None else f"{r[1]:.2f}"


def main(src, dst):
    runs = load(src)
    rows = []
    for size, label in SIZES.items():
        tx, rx, mc = (rate(runs.get((k, size))) for k in KINDS)
        rows.append((size, label, tx, rx, mc))
    print("| frame | worker TX (guest->tap), Mpps | TX, Gbit/s | worker RX (tap->guest), Mpps | RX, Gbit/s "
          "| memcpy ceiling, Mpps | memcpy, Gbit/s | TX / memcpy |")
    print("|---|---|---|---|---|---|---|---|")
    for size, label, tx, rx, mc in rows:
        # The RX stream's 64 KiB frames are what the host's TCP made (about 64 KiB).
        if size > 1514 and isinstance(rx, tuple):
            label += f", RX avg {rx[2] / 1024:.1f} KiB"
        share = (f"{tx[1] / mc[1]:.0%}" if isinstance(tx, tuple) and isinstance(mc, tuple) and mc[1] else "")
        print(f"| {label} | {cell_pps(tx)} | {cell_gbps(tx)} | {cell_pps(rx)} | {cell_gbps(rx)} "
              f"| {cell_pps(mc)} | {cell_gbps(mc)} | {share} |")
    with open(dst, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["frame_bytes", "kind", "status", "pps", "gbps", "avg_frame_bytes"])
        for size, _, *rs in rows:
            for kind, r in zip(KINDS, rs):
                if isinstance(r, tuple):
                    w.writerow([size, kind, "ok", f"{r[0]:.0f}", f"{r[1]:.3f}", f"{r[2]:.0f}"])
                else:
                    w.writerow([size, kind, r or "missing", "", "", ""])


if __name__ == "__main__":
    main(*sys.argv[1:3])
