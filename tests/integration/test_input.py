"""minivmm's answers to bad user input, on any host: none of them needs KVM.

Every check of what the user gave (options, files, sizes, NIC ports) is made
before /dev/kvm is opened, so these run on a machine with no KVM at all, and
each must end in one "minivmm: ..." line and a non-zero exit status.
"""
import os
import subprocess
import tempfile

import bzimage
from vmtest import MINIVMM, check

TMP = tempfile.mkdtemp(prefix="minivmm-machine-")


def kernel_file(name, code=None, data=None):
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(data if data is not None else bzimage.make_bzimage(code))
    return path


def run_vmm(args, timeout=60, wrap=()):
    p = subprocess.run(list(wrap) + [MINIVMM] + args, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def expect_exit(args, want_rc, stdout_has=None, stderr_has=None, timeout=60):
    rc, out, err = run_vmm(args, timeout)
    check(rc == want_rc, f"exit status {rc}, wanted {want_rc}; stderr: {err.strip()[:500]}")
    if stdout_has:
        check(stdout_has in out, f"stdout lacks {stdout_has!r}: {out[:300]!r}")
    if stderr_has:
        check(stderr_has in err, f"stderr lacks {stderr_has!r}: {err[:500]!r}")
    return out, err


# A macvtap on a veth, in the private namespace; MVT_HELD: another process holds its /dev/tapN.
MACVTAP = ('ip link add vx type veth peer name vy && ip link set vx up && '
           'ip link add link vx name mvx type macvtap mode bridge && ip link set mvx up || exit 99; '
           '[ -z "$MVT_HELD" ] && exec "$0" "$@"; '
           # The holder ends with the case: interface indexes are per namespace,
           # and the next case's macvtap may get this one's /dev/tapN name.
           'sleep 30 >/dev/null 2>&1 3<>/dev/tap$(ip -o link show mvx | cut -d: -f1) & h=$!; sleep 0.3; '
           '"$0" "$@"; rc=$?; kill $h; wait $h 2>/dev/null; exit $rc')


# /dev/kvm, if this host has one, looks like /dev/null to minivmm: the input
# errors below must then still be the user's, which shows they are found
# before KVM is opened.
HIDE_KVM = ("unshare", "-m", "sh", "-c",
            '[ ! -e /dev/kvm ] || mount --bind /dev/null /dev/kvm || exit 97; exec "$0" "$@"')


def one_line_error(args, keyword, wrap=(), hide_kvm=True):
    rc, out, err = run_vmm(args, 30, (HIDE_KVM if hide_kvm else ()) + tuple(wrap))
    check(rc < 128, f"killed by signal {rc - 128} (a crash) for {args}")
    check(rc == 1, f"exit status {rc} for bad input {args}, wanted 1")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    check(len(lines) == 1, f"wanted one line on stderr, got {len(lines)}: {err!r}")
    check(lines[0].startswith("minivmm: "), f"line does not start with 'minivmm: ': {lines[0]!r}")
    check(keyword.lower() in lines[0].lower(), f"line does not mention {keyword!r}: {lines[0]!r}")
    if "kvm" not in keyword.lower():  # the user's mistake, found before KVM was looked at
        check("/dev/kvm" not in lines[0], f"KVM's error, not the input's: {lines[0]!r}")
    return lines[0]


def scenario_bad_input(r):
    good = kernel_file("good", bzimage.POWEROFF)
    r.case("missing kernel", lambda: one_line_error(["--kernel", "/nonexistent/bzImage"], "No such file"))
    r.case("no --kernel", lambda: one_line_error([], "--kernel"))
    r.case("kernel is a directory", lambda: one_line_error(["--kernel", TMP], "not a regular file"))
    r.case("kernel is not a bzImage", lambda: one_line_error(
        ["--kernel", kernel_file("text", data=b"#!/bin/sh\necho hi\n" * 200)], "not a usable bzImage"))
    r.case("kernel is empty", lambda: one_line_error(["--kernel", kernel_file("empty", data=b"")], "too small"))
    r.case("kernel too old (protocol 2.06)", lambda: one_line_error(
        ["--kernel", kernel_file("old", data=bzimage.make_bzimage(bzimage.POWEROFF, version=0x0206))],
        "older than 2.12"))
    r.case("32-bit-only kernel", lambda: one_line_error(
        ["--kernel", kernel_file("k32", data=bzimage.make_bzimage(bzimage.POWEROFF, xloadflags=0))], "64-bit"))
    # Direct boot (the default for a bzImage): minivmm decompresses the payload and checks the ELF in it.
    payload = lambda data: kernel_file("p", data=bzimage.make_bzimage(bzimage.POWEROFF, payload=data))
    r.case("bzImage locating no payload", lambda: one_line_error(
        ["--kernel", payload(b"")], "no compressed payload"))
    r.case("corrupt gzip payload", lambda: one_line_error(
        ["--kernel", payload(b"\x1f\x8b\x08\x00" + b"\xff" * 60 + b"\x00\x10\x00\x00")], "gzip"))
    r.case("payload that decompresses beyond the header's init_size", lambda: one_line_error(
        ["--kernel", payload(bzimage.compress_payload(bytes(2 << 20)))], "more than"))
    r.case("payload in an unknown format", lambda: one_line_error(
        ["--kernel", payload(b"\x42" * 100)], "no compression format"))
    r.case("bzip2 payload: not decompressed here, --boot=decompressor named", lambda: one_line_error(
        ["--kernel", payload(b"BZh91AY&SY" + bytes(40))], "--boot=decompressor"))
    r.case("payload that is no ELF kernel", lambda: one_line_error(
        ["--kernel", payload(bzimage.compress_payload(b"not an ELF file" * 10))], "not a usable vmlinux"))
    r.case("payload ELF for another machine", lambda: one_line_error(
        ["--kernel", payload(bzimage.compress_payload(bzimage.make_elf(bzimage.POWEROFF, machine=183)))],
        "not x86-64"))
    r.case("vmlinux with a segment over the zero page", lambda: one_line_error(
        ["--kernel", kernel_file("low.elf", data=bzimage.make_elf(bzimage.POWEROFF, paddr=0x7000))], "outside"))
    r.case("32-bit ELF kernel", lambda: one_line_error(
        ["--kernel", kernel_file("k32.elf", data=bzimage.make_elf(bzimage.POWEROFF, elf_class=1))], "64-bit"))
    r.case("truncated vmlinux", lambda: one_line_error(
        ["--kernel", kernel_file("cut.elf", data=bzimage.make_elf(bzimage.POWEROFF)[:90])], "outside the file"))
    r.case("--boot=decompressor with a vmlinux", lambda: one_line_error(
        ["--kernel", kernel_file("ok.elf", data=bzimage.make_elf(bzimage.POWEROFF)), "--boot=decompressor"],
        "uncompressed vmlinux"))
    r.case("bad --boot value", lambda: one_line_error(["--kernel", good, "--boot=fast"], "--boot"))

    def unreadable():
        path = kernel_file("secret", bzimage.POWEROFF)
        os.chmod(path, 0)
        os.chmod(TMP, 0o755)
        # As root the mode is ignored, so drop to nobody. Input files are read
        # before /dev/kvm is opened, so the error must name the kernel.
        one_line_error(["--kernel", path], "cannot open kernel",
                       wrap=("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"))
    r.case("unreadable kernel", unreadable)
    r.case("missing initrd", lambda: one_line_error(["--kernel", good, "--initrd", "/nonexistent/initrd"],
                                                    "initrd"))
    big = os.path.join(TMP, "big-initrd")
    with open(big, "wb") as f:
        f.truncate(200 << 20)  # sparse: costs no disk
    r.case("initrd that does not fit", lambda: one_line_error(
        ["--kernel", good, "--initrd", big, "--mem", "128M"], "does not fit"))
    r.case("memory too small", lambda: one_line_error(["--kernel", good, "--mem", "16M"], "too small"))
    r.case("memory too large", lambda: one_line_error(["--kernel", good, "--mem", "64T"], "more than"))
    r.case("bad memory size", lambda: one_line_error(["--kernel", good, "--mem", "lots"], "bad size"))
    r.case("zero cpus", lambda: one_line_error(["--kernel", good, "--cpus", "0"], "--cpus"))
    r.case("too many cpus", lambda: one_line_error(["--kernel", good, "--cpus", "9999"], "--cpus"))
    r.case("unknown option", lambda: one_line_error(["--kernel", good, "--frobnicate"], "unknown option"))
    r.case("option without value", lambda: one_line_error(["--kernel"], "needs a value"))
    r.case("bad --net option", lambda: one_line_error(["--kernel", good, "--net", "tap0,speed=9"], "unknown option"))
    r.case("bad MAC", lambda: one_line_error(["--kernel", good, "--net", "tap0,mac=zz"], "MAC"))
    # Taps only in a private network namespace (unshare -n), never this host's.
    netns = ("unshare", "-n", "sh", "-c", 'ip tuntap add dev mqt0 mode tap && exec "$0" "$@"')
    r.case("too many queue pairs", lambda: one_line_error(
        ["--kernel", good, "--net", "mqt1,vhost=off,queues=17"], "queue pairs", wrap=netns))
    r.case("queues=2 on a tap made without multi_queue", lambda: one_line_error(
        ["--kernel", good, "--net", "mqt0,vhost=off,queues=2"], "multi_queue", wrap=netns))
    r.case("--user naming no user", lambda: one_line_error(["--kernel", good, "--user", "nosuchuser0"],
                                                           "no such user"))
    r.case("--user with a uid out of range", lambda: one_line_error(["--kernel", good, "--user", "4294967295:0"],
                                                                    "out of range"))
    r.case("--jail on a missing directory", lambda: one_line_error(["--kernel", good, "--jail", TMP + "/nosuch"],
                                                                   "No such file"))
    r.case("--jail on a file", lambda: one_line_error(["--kernel", good, "--jail", good], "not a directory"))
    for bad in ("67", "65536", "0", "9k", ""):
        r.case(f"--net mtu={bad}", lambda bad=bad: one_line_error(
            ["--kernel", good, "--net", f"tap0,mtu={bad}"], "mtu must be a number from 68 to 65535"))
    # Within the option's range, but more than a tap takes (65535 less its Ethernet header).
    r.case("mtu a tap refuses", lambda: one_line_error(
        ["--kernel", good, "--net", "mqt0,vhost=off,mtu=65535"], "refuses", wrap=netns))
    r.case("raw= on a missing interface", lambda: one_line_error(
        ["--kernel", good, "--net", "raw=nosuch0,vhost=off"], "no such interface", wrap=netns))
    r.case("raw= with queues=2", lambda: one_line_error(
        ["--kernel", good, "--net", "raw=lo,vhost=off,queues=2"], "one queue pair", wrap=netns))
    r.case("macvtap= on a missing interface", lambda: one_line_error(
        ["--kernel", good, "--net", "macvtap=nosuch0,vhost=off"], "no such interface", wrap=netns))
    r.case("macvtap= on an interface that is not a macvtap", lambda: one_line_error(
        ["--kernel", good, "--net", "macvtap=lo,vhost=off"], "not a macvtap", wrap=netns))
    r.case("macvtap= whose device another process holds", lambda: one_line_error(
        ["--kernel", good, "--net", "macvtap=mvx,vhost=off"], "in use",
        wrap=("env", "MVT_HELD=1", "unshare", "-n", "sh", "-c", MACVTAP)))

    r.case("more NICs than PCI slots", lambda: one_line_error(
        ["--kernel", good] + [a for i in range(32) for a in ("--net", f"t{i}")], "more than 31"))
    # A tap minivmm creates is announced only once the VM is built: an error
    # after it (here KVM's) is still the only line.
    r.case("a new tap, then no usable KVM: one line", lambda: one_line_error(
        ["--kernel", good, "--net", "newtap0,vhost=off"], "/dev/kvm", wrap=("unshare", "-n")))
    # A host without KVM: the one line names /dev/kvm and says what to do.
    def kvm_missing():
        # A private mount namespace with an empty /dev: the host's is untouched.
        line = one_line_error(["--kernel", good], "/dev/kvm: this host has no KVM",
                              wrap=("unshare", "-m", "sh", "-c", 'mount -t tmpfs none /dev && exec "$0" "$@"'))
        check("virtualization" in line or "modprobe" in line, f"no advice on what to do: {line!r}")
    r.case("/dev/kvm missing: says so and what to do", kvm_missing)
    # A node that opens but answers no KVM ioctl: here /dev/null's numbers.
    r.case("/dev/kvm that is no KVM device", lambda: one_line_error(
        ["--kernel", good], "not a KVM device",
        wrap=("unshare", "-m", "sh", "-c", 'mount -t tmpfs none /dev && mknod -m 666 /dev/null c 1 3 && '
              'mknod -m 666 /dev/kvm c 1 3 && exec "$0" "$@"')))
