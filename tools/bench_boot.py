"""Boot time to the guest's init marker and the VMM's max RSS, minivmm vs QEMU.

Same kernel, initramfs, memory and vCPUs for both; rounds are interleaved so
drift in the (emulated) host hits both alike. Prints a Markdown table.
"""
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from vmtest import INIT_MARKER, INITRD, KERNEL, MINIVMM  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "3"))
APPEND = "console=ttyS0 guest.run=poweroff"
CONFIGS = {
    "minivmm": [MINIVMM, "--kernel", KERNEL, "--initrd", INITRD, "--mem", "512M", "--cmdline", APPEND],
    "qemu": ["qemu-system-x86_64", "-enable-kvm", "-cpu", "host", "-m", "512", "-smp", "1", "-nographic",
             "-nodefaults", "-no-reboot", "-serial", "stdio", "-kernel", KERNEL, "-initrd", INITRD,
             "-append", APPEND],
}


def one(argv):
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen, boot = b"", None
    for chunk in iter(lambda: p.stdout.read1(4096), b""):
        seen = (seen + chunk)[-4096:]
        if boot is None and INIT_MARKER.encode() in seen:
            boot = time.monotonic() - t0
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = status
    if boot is None:
        raise SystemExit(f"{argv[0]} never reached init; exit status {status}")
    return boot, ru.ru_maxrss / 1024


def main():
    res = {name: [] for name in CONFIGS}
    for r in range(ROUNDS):
        for name, argv in CONFIGS.items():
            boot, rss = one(argv)
            res[name].append((boot, rss))
            print(f"round {r + 1} {name}: init after {boot:.1f}s, max RSS {rss:.0f} MiB", flush=True)
    print("\n| VMM | boot to init, s (median, min-max) | max RSS, MiB (median) |")
    print("|---|---|---|")
    for name, v in res.items():
        b = [x[0] for x in v]
        m = [x[1] for x in v]
        print(f"| {name} | {statistics.median(b):.1f} ({min(b):.1f}-{max(b):.1f}) | {statistics.median(m):.0f} |")


main()
