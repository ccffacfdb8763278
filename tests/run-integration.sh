#!/bin/bash
# Integration tests. The machine tests need only /dev/kvm and run here; the
# Linux boot and network tests need a KVM that runs stock kernels, so they
# run in the emulated outer host (tests/rig/outer-run.sh) unless this machine
# has VMX/SVM. Each network scenario gets its own outer host: the rig's
# known flake (tests/rig/README.md) then costs a retry of one scenario.
# Prints one "RESULT <suite> <passed> <failed>" line per outer run.
set -u
cd "$(dirname "$0")/.."
py=/usr/bin/python3
status=0
$py tests/integration/harness.py test_machine test_harness || status=1
# CI gives make test 90 minutes. The outer runs share a budget (default 60
# minutes; a clean pass takes about 10): a run that would start with less
# than 3 minutes left is not started and counts as one failure, and none may
# outlast the budget, so a wedged rig fails the suite instead of the CI job.
budget=${MINIVMM_TEST_BUDGET:-3600}
outer() {  # outer FILTER MODULES...
    local left=$((budget - SECONDS)) name="${*:2} ${1:-all}"
    if (( left < 180 )); then
        echo "FAIL outer run '$name' not started: the integration time budget (${budget}s) is spent"
        echo "RESULT integration 0 1"
        status=1
        return
    fi
    local t=${MINIVMM_OUTER_TIMEOUT:-1800}
    (( t > left )) && t=$left
    MINIVMM_TEST_FILTER=$1 tests/rig/outer-run.sh --timeout "$t" -- \
        "$py tests/integration/harness.py ${*:2}" || status=1
}
if [ -n "${MINIVMM_VM_SUITES:-}" ]; then
    outer "${MINIVMM_TEST_FILTER:-}" $MINIVMM_VM_SUITES
else
    outer "" test_boot test_vhost_kernel
    for s in one_nic_kernel one_nic_worker one_nic_off two_nics mq_kernel mq_worker mq_off; do outer "$s" test_net; done
    for s in kernel worker off; do outer "scenario_$s" test_direct; done
fi
exit $status
