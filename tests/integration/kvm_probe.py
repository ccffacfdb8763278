"""Where can a VM run? Probes this host's KVM the way minivmm uses it.

    python3 tests/integration/kvm_probe.py

Prints one line, "kvm-probe: LEVEL: why", and exits with the level's code:
  0 fast    a synthetic guest's CPL 0 loop runs at hardware speed: stock
            Linux guests boot here
  1 slow    KVM works (device, API, VM, vCPU, a guest that powers off) but
            CPL 0 code crawls (PVM, or an emulated KVM): synthetic guests
            only, Linux guests need the emulated outer host
  2 none    no usable KVM: the device is missing, not permitted, not KVM, or
            a VM or vCPU cannot be made or run
Each step is tried, not assumed from /proc/cpuinfo: a /dev/kvm can exist
and still be a /dev/null bind, or PVM without VMX/SVM.
"""
import errno
import fcntl
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bzimage  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MINIVMM = os.path.join(REPO, "minivmm")
KVM_GET_API_VERSION, KVM_CREATE_VM, KVM_CREATE_VCPU = 0xAE00, 0xAE01, 0xAE41
# 20 million turns of dec/jnz: tens of milliseconds on VMX/SVM, about 25 s at
# the 1.7 million instructions a second PVM manages for a stock kernel's CPL 0.
LOOPS = 20_000_000
FAST_SECONDS = 3.0


def spin_then_poweroff(n):
    # mov ecx, n; 1: dec ecx; jnz 1b; then ACPI S5
    return b"\xb9" + n.to_bytes(4, "little") + b"\xff\xc9\x75\xfc" + bzimage.POWEROFF


def run_guest(code, timeout):
    with tempfile.NamedTemporaryFile(prefix="kvm-probe-", suffix=".bzImage") as f:
        f.write(bzimage.make_bzimage(code))
        f.flush()
        t0 = time.monotonic()
        try:
            p = subprocess.run([MINIVMM, "--kernel", f.name, "--mem", "64M"], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, "", time.monotonic() - t0
        return p.returncode, p.stderr.decode(errors="replace").strip(), time.monotonic() - t0


def probe():
    try:
        kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return 2, f"cannot open /dev/kvm: {os.strerror(e.errno)}"
    try:
        try:
            version = fcntl.ioctl(kvm, KVM_GET_API_VERSION, 0)
        except OSError as e:
            return 2, f"/dev/kvm answers no KVM ioctl ({errno.errorcode.get(e.errno, e.errno)}): not a KVM device"
        if version != 12:
            return 2, f"/dev/kvm speaks KVM API {version}, not 12"
        try:
            vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
        except OSError as e:
            return 2, f"KVM_CREATE_VM failed: {os.strerror(e.errno)}"
        try:
            os.close(fcntl.ioctl(vm, KVM_CREATE_VCPU, 0))
        except OSError as e:
            return 2, f"KVM_CREATE_VCPU failed: {os.strerror(e.errno)}"
        finally:
            os.close(vm)
    finally:
        os.close(kvm)
    if not os.access(MINIVMM, os.X_OK):
        return 2, f"{MINIVMM} is not built"
    rc, err, _ = run_guest(bzimage.POWEROFF, 30)
    if rc != 0:
        return 2, f"a synthetic guest did not power off under minivmm (exit {rc}): {err[-200:]}"
    rc, err, took = run_guest(spin_then_poweroff(LOOPS), FAST_SECONDS)
    if rc == 0:
        return 0, f"KVM works and ran {LOOPS // 1_000_000}M guest CPL 0 loop turns in {took:.2f}s: hardware speed"
    if rc is not None:
        return 2, f"a synthetic guest's loop failed under minivmm (exit {rc}): {err[-200:]}"
    return 1, (f"KVM works (API 12, VM, vCPU, a synthetic guest powered off), but {LOOPS // 1_000_000}M guest "
               f"CPL 0 loop turns took over {FAST_SECONDS:.0f}s: CPL 0 is emulated (PVM or similar)")


if __name__ == "__main__":
    try:
        code, why = probe()
    except Exception as e:  # a probe that breaks finds no usable KVM, never "slow"
        code, why = 2, f"the probe failed: {e!r}"
    print(f"kvm-probe: {['fast', 'slow', 'none'][code]}: {why}", flush=True)
    sys.exit(code)
