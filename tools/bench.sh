#!/bin/bash
# make bench: benchmarks, run where a stock kernel boots (outer host unless
# this machine has VMX/SVM). Never part of make test.
set -u
cd "$(dirname "$0")/.."
exec tests/rig/outer-run.sh --timeout 5400 -- \
    "/usr/bin/python3 tools/bench_boot.py && /usr/bin/python3 tools/bench_net.py"
