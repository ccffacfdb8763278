"""make bench's VM table: per configuration the median of the rounds with
their spread (min-max), as Markdown for people and CSV for the chart."""
import csv
import statistics

# (CSV column, Markdown heading, decimals)
METRICS = [
    ("g2h_mbps", "TCP guest->host, Mbit/s", 0),
    ("h2g_mbps", "TCP host->guest, Mbit/s", 0),
    ("rr_usec", "TCP RR, usec/transaction", 1),
    ("rr_tps", "TCP RR, transactions/s", 0),
    ("boot_s", "boot to init, s", 1),
    ("rss_mib", "VMM max RSS, MiB", 0),
    ("outside_mib", "VMM Rss outside guest RAM, MiB", 1),
    ("cpu_s_per_gb", "host CPU, s/GB", 2),
]


def summarise(samples, metrics=METRICS):
    """samples: the rounds' dicts (None for a round that failed). Returns
    {metric: (median, min, max) | "n/a"} or None if every round failed."""
    ok = [s for s in samples if s]
    if not ok:
        return None
    out = {}
    for key, _, _ in metrics:
        vals = [s[key] for s in ok if s.get(key) is not None]
        out[key] = (statistics.median(vals), min(vals), max(vals)) if vals else "n/a"
    return out


def cell(v, decimals):
    if isinstance(v, str):
        return v
    med, lo, hi = v
    f = f"{{:.{decimals}f}}"
    return f.format(med) if lo == hi else f"{f.format(med)} ({f.format(lo)}-{f.format(hi)})"


def markdown(results, metrics=METRICS):
    """results: {name: [sample or None per round]}."""
    lines = ["| configuration | " + " | ".join(h for _, h, _ in metrics) + " |",
             "|---" * (len(metrics) + 1) + "|"]
    for name, samples in results.items():
        s = summarise(samples, metrics)
        cells = ["failed"] * len(metrics) if s is None else [cell(s[k], d) for k, _, d in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(path, results, metrics=METRICS):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "status", "rounds_ok", "rounds"] +
                   [f"{k}{suffix}" for k, _, _ in metrics for suffix in ("", "_min", "_max")])
        for name, samples in results.items():
            s = summarise(samples, metrics)
            ok = sum(1 for x in samples if x)
            row = [name, "ok" if s else "failed", ok, len(samples)]
            for key, _, _ in metrics:
                v = "failed" if s is None else s[key]
                row += [v] * 3 if isinstance(v, str) else [f"{x:.6g}" for x in v]
            w.writerow(row)


def write_raw(path, results, metrics=METRICS):
    """Every round's sample, for whoever wants more than medians."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "round"] + [k for k, _, _ in metrics])
        for name, samples in results.items():
            for r, s in enumerate(samples, 1):
                w.writerow([name, r] + (["failed"] * len(metrics) if s is None else
                                        ["n/a" if s.get(k) is None else f"{s[k]:.6g}" for k, _, _ in metrics]))
