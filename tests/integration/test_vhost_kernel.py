"""The vhost backend unit tests (suite VhostBackend, in
tests/unit/vhost_backend_*_test.cpp) against the kernel's vhost-net
instead of minivmm's worker: same simulated driver,
same tap in a private namespace. Needs /dev/vhost-net, so it runs in the
emulated outer host; the cases that read the worker's own counters (the
kernel keeps its own, out of sight) stay worker-only.
"""
import os
import re
import subprocess

from vmtest import REPO, check

TESTS = ["TxThroughAnIndirectTable", "DirtyLogMarksEveryPageWritten", "DirtyLogOfDataOnlyWithLogAll",
         "DirtyLogCoversTheAvailEventWord", "RxStopAndRestartContinuesAtTheBase",
         "TxStopAndRestartContinuesAtTheBase", "TxRingMovedWhileRunning", "RxRingMovedWhileRunning"]


def scenario_unit_tests(r):
    out = ""

    def run():
        nonlocal out
        check(os.path.exists("/dev/vhost-net"), "no /dev/vhost-net here")
        p = subprocess.run([os.path.join(REPO, "build", "unit-tests"),
                            "--gtest_filter=" + ":".join("VhostBackend." + t for t in TESTS)],
                           env=dict(os.environ, MINIVMM_TEST_VHOST="kernel"), capture_output=True, text=True,
                           timeout=300)
        out = p.stdout + p.stderr
        check(f"{len(TESTS)} tests" in out, f"gtest did not run the {len(TESTS)} tests:\n{out[-1500:]}")
    r.case("vhost backend unit tests run against /dev/vhost-net", run)
    for t in TESTS:
        def one(t=t):
            ok = re.search(rf"^\[       OK \] VhostBackend\.{t} ", out, re.M)
            i = out.find(f"[ RUN      ] VhostBackend.{t}")
            check(ok, f"failed:\n{out[i:i + 1500] if i >= 0 else out[-800:]}")
        r.case(f"kernel vhost-net: {t}", one)
