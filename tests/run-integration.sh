#!/bin/bash
# Integration tests. Where each suite runs is decided by probing this
# machine's KVM (tests/integration/kvm_probe.py), never assumed, and said in
# one "where:" line per suite:
# - test_input (bad user input) and test_harness need no KVM: here, always.
# - test_machine (synthetic guests) needs a KVM that makes and runs a VM (PVM
#   will do): here when the probe finds one, else in the first outer host.
# - The Linux boot and network suites need a KVM that runs stock kernels at
#   speed, and vhost-net: the emulated outer host (tests/rig/outer-run.sh,
#   which runs them directly where the probe finds hardware speed). Each
#   network scenario gets its own outer host: the rig's known flake
#   (tests/rig/README.md) then costs a retry of one scenario.
# Prints one "RESULT <suite> <passed> <failed>" line per harness run.
set -u
cd "$(dirname "$0")/.."
py=/usr/bin/python3
status=0
probe=$($py tests/integration/kvm_probe.py)
level=$?
echo "$probe"
export MINIVMM_KVM_LEVEL=$level  # for tests/rig/outer-run.sh
echo "where: test_input, test_harness on this machine (they need no KVM)"
# The local suites run whole: MINIVMM_TEST_FILTER is for the outer runs.
MINIVMM_TEST_FILTER= $py tests/integration/harness.py test_input test_harness || status=1
first_outer="test_boot test_vhost_kernel"
if (( level <= 1 )); then
    echo "where: test_machine on this machine (the probe found a KVM that runs a VM)"
    MINIVMM_TEST_FILTER= $py tests/integration/harness.py test_machine || status=1
else
    echo "where: test_machine in the emulated outer host, with test_boot (the probe found no usable KVM here)"
    first_outer="test_machine $first_outer"
fi
echo "where: test_boot, test_vhost_kernel, test_net, test_direct, test_migration, test_snapshot, test_net612 (6.12) in the emulated outer host (they boot Linux" \
     "and need vhost-net; tests/rig/outer-run.sh runs them here if the probe finds hardware speed and vhost-net)"
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
if [ -n "${MINIVMM_VM_SUITES:-}" ]; then  # a developer's choice of suites (and MINIVMM_TEST_FILTER)
    suites=$MINIVMM_VM_SUITES
    [[ $first_outer == test_machine* && " $suites " != *" test_machine "* ]] && suites="test_machine $suites"
    outer "${MINIVMM_TEST_FILTER:-}" $suites
else
    outer "" $first_outer
    for s in one_nic_kernel one_nic_worker one_nic_off two_nics mq_kernel mq_worker mq_off; do outer "$s" test_net; done
    for s in kernel worker off; do outer "scenario_$s" test_direct; done
    # Live migration (the failure cases, the moves under traffic, twenty
    # moves) and snapshots restored on each datapath: one outer host.
    outer "" test_migration test_snapshot
    # A 6.12 outer host and guests (USO, jumbo frames): one outer host, a boot per datapath.
    MINIVMM_KERNEL=6.12 outer "" test_net612
fi
exit $status
