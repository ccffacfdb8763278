"""make bench's boot table: VMM start to the guest's init marker
(MINIVMM-GUEST-INIT-OK on its console, as in the VM table), for both Debian
kernels, under minivmm's two boot paths and QEMU's -kernel.

- generic: build/images/vmlinuz (XZ-compressed) with guest-initrd.gz;
  cloud: vmlinuz-cloud (LZ4) with guest-initrd-cloud.gz.
- minivmm --boot=direct (the default: minivmm unpacks the kernel itself)
  and --boot=decompressor (the bzImage's own decompressor runs in the
  guest); QEMU 7.2 `-kernel` of the same bzImage (its firmware and option
  ROM, then the decompressor). Same initrd, MEM_MIB and 1 vCPU, no NIC,
  `console=ttyS0 quiet`.

Rows in interleaved rounds (rounds.py); the ratio lines compare medians.
MINIVMM_BENCH_BOOT_ROWS (comma-separated) keeps only the rows named.
"""
import csv
import os
import statistics
import time

from vmtest import IMAGES, Guest, minivmm

import configs
import report
import rounds

KERNELS = {  # label: (bzImage, initrd, what it is)
    "generic": ("vmlinuz", "guest-initrd.gz", "Debian generic kernel, XZ"),
    "cloud": ("vmlinuz-cloud", "guest-initrd-cloud.gz", "Debian cloud kernel, LZ4"),
}
VMMS = {  # label: how the row boots
    "minivmm --boot=direct": "direct",
    "minivmm --boot=decompressor": "decompressor",
    "qemu -kernel": "qemu",
}
APPEND = "console=ttyS0 quiet"
GOALS = [  # (numerator VMM, denominator VMM, text, met(ratio))
    ("minivmm --boot=direct", "qemu -kernel", "minivmm direct / QEMU", "<= 0.5", lambda x: x <= 0.5),
    ("minivmm --boot=decompressor", "minivmm --boot=direct", "decompressor / direct", ">= 1.5", lambda x: x >= 1.5),
]


def row(vmm, kernel):
    return f"{vmm} ({kernel})"


ROWS = {row(v, k): (v, k) for k in KERNELS for v in VMMS}


def start(name, log_name):
    vmm, kernel = ROWS[name]
    bz, initrd, _ = KERNELS[kernel]
    bz, initrd = os.path.join(IMAGES, bz), os.path.join(IMAGES, initrd)
    if VMMS[vmm] == "qemu":
        return Guest(["qemu-system-x86_64", "-enable-kvm", "-cpu", "host", "-m", str(configs.MEM_MIB),
                      "-smp", "1", "-nographic", "-nodefaults", "-no-reboot", "-serial", "stdio",
                      "-kernel", bz, "-initrd", initrd, "-append", APPEND], log_name)
    return minivmm("--mem", f"{configs.MEM_MIB}M", "--cpus", "1", "--cmdline", APPEND, f"--boot={VMMS[vmm]}",
                   kernel=bz, initrd=initrd, log_name=log_name)


def measure(name, log_name):
    g = start(name, log_name)
    try:
        return {"boot_s": g.boot(configs.BOOT_TIMEOUT)}
    finally:
        g.kill()


def medians(results):
    out = {}
    for name, samples in results.items():
        vals = [s["boot_s"] for s in samples if s]
        if vals:
            out[name] = statistics.median(vals)
    return out


def cell(samples):
    vals = [s["boot_s"] for s in samples if s]
    if not vals:
        return "failed"
    lost = f" [{len(samples) - len(vals)} of {len(samples)} failed]" if len(vals) < len(samples) else ""
    return report.cell((statistics.median(vals), min(vals), max(vals)), 2) + lost


def markdown(results):
    kernels = [k for k in KERNELS if any(ROWS[n][1] == k for n in results)]
    lines = ["| VMM | " + " | ".join(f"{k}: {KERNELS[k][2]}, s" for k in kernels) + " |",
             "|---" * (len(kernels) + 1) + "|"]
    for vmm in VMMS:
        if not any(ROWS[n][0] == vmm for n in results):
            continue
        cells = [cell(results[row(vmm, k)]) if row(vmm, k) in results else "not run" for k in kernels]
        lines.append(f"| {vmm} | " + " | ".join(cells) + " |")
    med = medians(results)
    lines.append("")
    for num, den, text, goal, met in GOALS:
        for k in kernels:
            a, b = row(num, k), row(den, k)
            if a not in results or b not in results:
                continue
            if a in med and b in med:
                x = med[a] / med[b]
                lines.append(f"- {text}, {k}: {x:.2f} (goal {goal}: {'met' if met(x) else 'NOT met'})")
            else:
                lines.append(f"- {text}, {k}: n/a ({a if a not in med else b} failed)")
    return "\n".join(lines)


def write_csv(path, raw_path, results):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "vmm", "kernel", "status", "rounds_ok", "rounds", "boot_s", "boot_s_min", "boot_s_max"])
        for name, samples in results.items():
            vals = [s["boot_s"] for s in samples if s]
            stats = [f"{x:.4g}" for x in (statistics.median(vals), min(vals), max(vals))] if vals else ["failed"] * 3
            w.writerow([name, *ROWS[name], "ok" if vals else "failed", len(vals), len(samples)] + stats)
    with open(raw_path, "w", newline="") as f:  # every round's sample
        w = csv.writer(f)
        w.writerow(["name", "round", "boot_s"])
        for name, samples in results.items():
            for r, s in enumerate(samples, 1):
                w.writerow([name, r, f"{s['boot_s']:.4g}" if s else "failed"])


def save(out, results, notes=""):
    write_csv(os.path.join(out, "boot.csv"), os.path.join(out, "boot-raw.csv"), results)
    with open(os.path.join(out, "boot.md"), "w") as f:
        f.write(markdown(results) + "\n\n" + notes + "\n")


def run(out, n_rounds):
    """The boot table into out/boot.{csv,md}; whether any row has a sample."""
    names = rounds.pick(ROWS, os.environ.get("MINIVMM_BENCH_BOOT_ROWS"))
    t0 = time.monotonic()
    rounds.say(f"boot table: {n_rounds} round(s) of {len(names)} rows")
    results, retried, failed = rounds.run(names, n_rounds, measure, lambda s: f"init after {s['boot_s']:.2f} s",
                                          lambda res: save(out, res, "(partial: the run did not finish)"))
    notes = (f"VMM start to the guest's MINIVMM-GUEST-INIT-OK line; median of {n_rounds} interleaved round(s) "
             f"(min-max when more than one); {configs.MEM_MIB} MiB, 1 vCPU, no NIC, `{APPEND}`, same initrd "
             "per kernel; QEMU: Debian's qemu-system-x86_64 -enable-kvm -kernel. Ratios: of the medians.")
    if os.environ.get("MINIVMM_OUTER"):
        notes += " Measured inside the emulated outer host (QEMU TCG): compare rows only."
    save(out, results, notes)
    print("\n" + markdown(results) + "\n\n" + notes, flush=True)
    if retried:
        rounds.say(f"boot table: retried after a failure: {', '.join(retried)}")
    if failed:
        rounds.say(f"boot table: failed twice (no sample): {', '.join(failed)}")
    rounds.say(f"boot table took {rounds.elapsed(t0)}")
    return any(any(s) for s in results.values())
