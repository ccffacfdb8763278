#!/bin/bash
# Integration tests. The machine tests need only /dev/kvm and run here; the
# Linux boot tests need a KVM that runs stock kernels, so they run in the
# emulated outer host (tests/rig/outer-run.sh) unless this machine has VMX/SVM.
# Prints one "RESULT <suite> <passed> <failed>" line per suite.
set -u
cd "$(dirname "$0")/.."
py=/usr/bin/python3
status=0
$py tests/integration/harness.py test_machine || status=1
tests/rig/outer-run.sh --timeout "${MINIVMM_OUTER_TIMEOUT:-2400}" -- \
    "$py tests/integration/harness.py ${MINIVMM_VM_SUITES:-test_boot test_net}" || status=1
exit $status
