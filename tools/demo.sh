#!/bin/bash
# make demo: boot the default guest under minivmm, on this machine's KVM when
# it has VMX/SVM, otherwise inside the emulated outer host.
set -u
cd "$(dirname "$0")/.."
exec tests/rig/outer-run.sh --timeout 1200 -- /usr/bin/python3 tools/demo.py
