"""Boot stock Debian kernels under minivmm and check what the guest sees.

Needs a KVM that runs stock kernels (VMX/SVM): run inside the emulated outer
host (tests/run-integration.sh does that) unless this machine has one.
"""
import os
import re
import signal

from vmtest import IMAGES, KERNEL_SERIES, check, minivmm

BOOT_TIMEOUT = int(os.environ.get("MINIVMM_BOOT_TIMEOUT", "240"))
MIB = 1 << 20


def meminfo_kib(g):
    rc, out = g.run("grep MemTotal /proc/meminfo")
    m = re.search(r"MemTotal:\s+(\d+) kB", out)
    check(rc == 0 and m, f"no MemTotal in {out!r}")
    return int(m.group(1))


def check_mem(g, mem_mib):
    total = meminfo_kib(g) * 1024
    want = mem_mib * MIB
    # The kernel keeps its own image, page structs and crash reservations out
    # of MemTotal; 15 % covers those for these sizes, and more would be a bug.
    check(0.85 * want <= total <= want, f"MemTotal {total >> 20} MiB for --mem {mem_mib}M")


# --verbose's boot phase lines (vmm/boot_phases.hpp), in the order they come.
PHASES = ["first guest instruction", "first console output", "init started"]


def check_boot_lines(g, mode, compression=None):
    """The kernel booted the way asked, and --verbose timed each phase, in order."""
    with g.lock:
        out = g.out
    m = re.search(r"minivmm: kernel: (bzImage|vmlinux ELF), boot protocol \S+.*?, (direct|decompressor) boot, "
                  r"64-bit entry at (0x[0-9a-f]+)", out)
    check(m and m.group(2) == mode, f"no '{mode} boot' line: {m.group(0) if m else out[:400]!r}")
    if compression:
        d = re.search(r"minivmm: boot: kernel decompressed \((\w+), ([\d.]+) MiB -> ([\d.]+) MiB\) in (\d+) ms", out)
        check(d and d.group(1) == compression, f"no '{compression}' decompression line: {d.group(0) if d else None!r}")
        check(float(d.group(3)) > float(d.group(2)) > 1, f"sizes make no sense: {d.group(0)!r}")
    for line in (r"kernel file read \([\d.]+ MiB\)", r"kernel and initrd loaded \(.*\)"):
        check(re.search(rf"minivmm: boot: {line} in \d+ ms", out), f"no {line!r} line")
    times = []
    for phase in PHASES:
        t = re.search(rf"minivmm: boot: {phase} at (\d+) ms", out)
        check(t, f"no '{phase}' line")
        times.append(int(t.group(1)))
    check(times == sorted(times), f"phases out of order: {dict(zip(PHASES, times))}")
    check_boot_lines_once(g)
    return times


def check_no_kaslr(g):
    """Entered directly, the kernel runs where it was linked: the decompressor,
    which randomizes it, never ran."""
    with g.lock:
        m = re.search(r"kernel _text at ([0-9a-f]{16})", g.out)
    check(m, "guest-init did not say where _text is")
    check(m.group(1) == "ffffffff81000000", f"_text at {m.group(1)}, not the link address ffffffff81000000")


def marker_repeat_harmless(g):
    """The init marker written again (and a wrong value, and a read): no new line, guest unharmed."""
    rc, out = g.run("devmem 0xfef00000 8 0x49; devmem 0xfef00000 8 0x12; devmem 0xfef00000 8; echo done")
    check(rc == 0 and "done" in out, f"guest after marker writes: rc {rc}, {out!r}")
    check_boot_lines_once(g)


def check_boot_lines_once(g):
    """Each phase line once, however often the guest writes the marker or the console."""
    with g.lock:
        out = g.out
    for phase in PHASES:
        n = out.count(f"minivmm: boot: {phase} at")
        check(n == 1, f"'{phase}' reported {n} times")


def check_cpus(g, n):
    rc, out = g.run("grep -c ^processor /proc/cpuinfo; cat /sys/devices/system/cpu/online")
    lines = out.split()
    check(rc == 0 and lines and lines[0] == str(n), f"/proc/cpuinfo shows {out!r}, wanted {n} CPUs")
    want_online = "0" if n == 1 else f"0-{n - 1}"
    check(lines[1] == want_online, f"online CPUs {lines[1]!r}, wanted {want_online}")


def scenario_smp_512m(r):
    token = "minivmm.test=cmdline-arrives-4711"
    # No console= here: minivmm must add the serial console itself. `quiet`
    # because every console byte is an exit through two levels of
    # virtualization in the outer host: fewer exits, faster, steadier boots.
    # Direct boot is the default: minivmm decompresses the (xz) kernel.
    g = minivmm("--cpus", "2", "--mem", "512M", "--verbose", "--cmdline", "quiet " + token, log_name="smp-512m")
    try:
        r.case("reaches init and the shell prompt", lambda: g.boot(BOOT_TIMEOUT))
        r.case("booted direct (xz decompressed by minivmm), --verbose times each boot phase",
               lambda: check_boot_lines(g, "direct", "xz"))
        r.case("no KASLR when entered directly", lambda: check_no_kaslr(g))
        r.case("init marker again, with other values, and read: harmless, reported once",
               lambda: marker_repeat_harmless(g))
        r.case("2 vCPUs online", lambda: check_cpus(g, 2))

        def series():
            rc, out = g.run("uname -r")
            check(rc == 0 and out.strip().startswith(KERNEL_SERIES + "."),
                  f"guest runs {out.strip()!r}, MINIVMM_KERNEL says {KERNEL_SERIES}")
        r.case("runs the kernel series the rig was asked for", series)

        def cmdline():
            rc, out = g.run("cat /proc/cmdline")
            check(token in out, f"/proc/cmdline is {out!r}")
            check("console=ttyS0" in out, f"serial console not added: {out!r}")
        r.case("command line arrives, console added", cmdline)

        def initrd():
            rc, out = g.run("dmesg | grep -c 'Trying to unpack rootfs'; ls /init; lsmod | grep -c virtio")
            lines = out.split()
            check(rc == 0 and lines[0] == "1" and lines[1] == "/init", f"initramfs not unpacked: {out!r}")
        r.case("initrd arrives and is unpacked", initrd)
        r.case("/proc/meminfo matches --mem 512M", lambda: check_mem(g, 512))

        def mtrr_pat():
            # Firmware-like MTRR defaults let Linux program PAT (write-combining etc.).
            rc, out = g.run("dmesg | grep 'x86/PAT: Configuration'")
            check(" WC " in out, f"PAT not initialized: {out!r}")
        r.case("MTRRs enabled, PAT initialized", mtrr_pat)

        r.case("interactive console (typed input reaches a program)", lambda: interactive_typed(g))

        r.case("guest poweroff exits 0", lambda: exits_zero_after(g, "poweroff -f"))
    finally:
        g.kill()


def exits_zero_after(g, command):
    g.send(command + "\n")
    rc = g.wait_exit(120)
    check(rc == 0, f"exit status {rc} after guest {command}")


def interactive_typed(g):
    """A program reads a line typed after its prompt, as a person would type it."""
    mark = len(g.out)
    g.send("read -p 'type two numbers: ' a b; echo \"sum=$((a+b))\"\n")
    g.expect("type two numbers: ", 60, mark)
    g.send("40 2\n")
    g.expect(r"sum=42", 60, mark)


def scenario_one_cpu_above_4g(r):
    # 3.25 GiB straddles the 32-bit MMIO hole: 3 GiB below it, 256 MiB above 4 GiB
    # (small enough to leave the 4 GiB outer host room).
    # Through the bzImage's own decompressor, as before direct boot.
    g = minivmm("--mem", "3328M", "--boot=decompressor", "--verbose", log_name="one-cpu-3328m")
    try:
        r.case("reaches init with no --cmdline (serial console by default)", lambda: g.boot(BOOT_TIMEOUT))
        r.case("--boot=decompressor: booted so, --verbose times each boot phase",
               lambda: check_boot_lines(g, "decompressor"))
        r.case("1 vCPU online", lambda: check_cpus(g, 1))
        r.case("/proc/meminfo matches --mem 3328M", lambda: check_mem(g, 3328))

        def above_4g():
            rc, out = g.run("dmesg | grep -i 'BIOS-e820'")
            check("0x0000000100000000-0x000000010fffffff] usable" in out, f"no RAM above 4 GiB: {out!r}")
            check(not re.search(r"0x00000000(c|d|e|f)[0-9a-f]{7}\] usable", out), f"RAM in the hole: {out!r}")
        r.case("RAM above 4 GiB, none in the MMIO hole", above_4g)

        r.case("guest reboot exits 0", lambda: exits_zero_after(g, "reboot -f"))
    finally:
        g.kill()


def scenario_cloud_kernel(r):
    kernel = os.path.join(IMAGES, "vmlinuz-cloud")
    initrd = os.path.join(IMAGES, "guest-initrd-cloud.gz")
    g = minivmm("--cpus", "2", "--verbose", "--cmdline", "quiet", kernel=kernel, initrd=initrd, log_name="cloud")
    try:
        r.case("cloud-amd64 kernel reaches init", lambda: g.boot(BOOT_TIMEOUT))
        r.case("booted direct (lz4 decompressed by minivmm), --verbose times each boot phase",
               lambda: check_boot_lines(g, "direct", "lz4"))
        r.case("2 vCPUs online", lambda: check_cpus(g, 2))

        def sigterm():
            g.proc.send_signal(signal.SIGTERM)
            rc = g.wait_exit(30)
            check(rc == 0, f"exit status {rc} after SIGTERM")
        r.case("SIGTERM stops a running Linux guest, exits 0", sigterm)
    finally:
        g.kill()


def scenario_vmlinux(r):
    # The uncompressed ELF kernel (the generic one, extracted by guest-images/build.sh).
    kernel = os.path.join(IMAGES, "vmlinux")
    g = minivmm("--verbose", "--cmdline", "quiet", kernel=kernel, log_name="vmlinux")
    try:
        r.case("bare vmlinux reaches init", lambda: g.boot(BOOT_TIMEOUT))
        r.case("vmlinux booted direct, --verbose times each boot phase", lambda: check_boot_lines(g, "direct"))
        r.case("no KASLR for a vmlinux", lambda: check_no_kaslr(g))
        r.case("/proc/meminfo matches the default --mem 512M", lambda: check_mem(g, 512))
        r.case("guest poweroff exits 0", lambda: exits_zero_after(g, "poweroff -f"))
    finally:
        g.kill()
