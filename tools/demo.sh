#!/bin/bash
# make demo: boot the default guest under minivmm, on this machine's KVM when
# a probe finds it runs a stock kernel at speed (and vhost-net is there),
# otherwise inside the emulated outer host (tests/rig/outer-run.sh decides).
set -u
cd "$(dirname "$0")/.."
exec tests/rig/outer-run.sh --timeout 1200 -- /usr/bin/python3 tools/demo.py
