"""The harness's own judgement, against scripted fake guests (no KVM).

Which failures are retried decides whether a real bug can hide behind the
emulated host's flakes, so it is tested: a hung guest (no prompt even after
Ctrl-C) is a GuestHang and later waits fail at once; a guest whose shell
answers Ctrl-C is a plain failure; a double-fault oops is recognised however
far before the panic line it is; any other panic is not a CPU fault.
"""
import contextlib
import io
import sys
import time

import harness
from vmtest import PROMPT, Guest, GuestHang, GuestPanic, TestFailure, check

# A fake guest: prints a prompt, then behaves as argv[1] says. It ignores
# SIGUSR1, which the harness sends to a stuck VMM for its state.
FAKE = r"""
import os, signal, sys, time
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
mode = sys.argv[1]
out = sys.stdout
out.write("guest# "); out.flush()
if mode == "double-fault":
    out.write("traps: PANIC: double fault, error_code: 0x0\n" + "x" * 5000 + "\nKernel panic - not syncing: Fatal\n")
elif mode == "other-panic":
    out.write("BUG: unable to handle page fault\nKernel panic - not syncing: Fatal\n")
out.flush()
while True:
    c = os.read(0, 1)
    if not c:
        time.sleep(60)
    if c == b"\x03" and mode == "answers":
        out.write("^C\nguest# "); out.flush()
"""


def fake(mode):
    return Guest([sys.executable, "-c", FAKE, mode], f"fake-{mode}")


def judged(fn):
    """Whether the harness marks a failing case for a retry (its own report
    of that case is kept out of ours: it is not one of our results)."""
    res = harness.Results()
    with contextlib.redirect_stdout(io.StringIO()):
        res.case("judged", fn)
    return res.boot_failed


def raised(fn):
    try:
        fn()
    except TestFailure as e:
        return e
    raise TestFailure("no failure raised")


def scenario_judgement(r):
    def hung():
        g = fake("hangs")
        try:
            g.expect(PROMPT, 10)
            e = raised(lambda: g.expect("never", 1))
            check(isinstance(e, GuestHang), f"a silent guest gave {type(e).__name__}: {e}")
            t0 = time.monotonic()
            e = raised(lambda: g.expect("again", 60))
            check(isinstance(e, GuestHang) and time.monotonic() - t0 < 5, f"a later wait: {type(e).__name__}")
            check(judged(lambda: g.expect("more", 60)), "a hung guest is not marked for a retry")
        finally:
            g.kill()
    r.case("a guest that ignores Ctrl-C is hung: later waits fail at once, the scenario is retried", hung)

    def answers():
        g = fake("answers")
        try:
            g.expect(PROMPT, 10)
            e = raised(lambda: g.expect("never", 1))
            check(not isinstance(e, GuestHang) and "still answers" in str(e), f"gave {type(e).__name__}: {e}")
            check(not judged(lambda: g.expect("never", 1)), "a stuck command in a live guest is marked for a retry")
        finally:
            g.kill()
    r.case("a guest whose shell answers Ctrl-C failed that case only, no retry", answers)

    def panics(mode, cpu_fault):
        g = fake(mode)
        try:
            e = raised(lambda: g.expect("never", 10))
            check(isinstance(e, GuestPanic) and e.cpu_fault() == cpu_fault, f"{mode}: {type(e).__name__} {e}")
            t0 = time.monotonic()
            e = raised(lambda: g.wait_exit(60))
            check(isinstance(e, GuestPanic) and time.monotonic() - t0 < 5, f"wait_exit after a panic: {e}")
        finally:
            g.kill()
    r.case("a double fault 5 KB before the panic line is a CPU fault (retried)",
           lambda: panics("double-fault", True))
    r.case("another panic is not (never retried)", lambda: panics("other-panic", False))

