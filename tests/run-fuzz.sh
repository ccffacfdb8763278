#!/bin/bash
# tests/run-fuzz.sh [RUNS]: a short pass of every libFuzzer target (make
# fuzz-build), RUNS inputs each (default 20000). The seed is fixed
# (FUZZ_SEED overrides it) so that make test repeats the same run; open-ended
# fuzzing is make fuzz. Prints "RESULT fuzz_<name> <passed> <failed>" per
# target, as the integration suites do, and fails if any target did.
set -u
cd "$(dirname "$0")/.."
runs=${1:-20000}
dir=build/fuzz
status=0
for name in virtqueue pci; do
    bin=$dir/fuzz_$name log=$dir/fuzz_$name.log
    start=$SECONDS
    # -close_fd_mask=2 mutes the code under test (a broken device's message
    # per input); libFuzzer's own report, crashes included, still gets through.
    if [ -x "$bin" ] && "$bin" -runs="$runs" -seed="${FUZZ_SEED:-1}" -len_control=0 -max_len=1024 \
        -close_fd_mask=2 -timeout=30 -artifact_prefix="$dir/" > "$log" 2>&1; then
        echo "fuzz_$name: $runs inputs in $((SECONDS - start)) s"
        echo "RESULT fuzz_$name 1 0"
    else
        [ -x "$bin" ] || echo "no $bin: run make fuzz-build" > "$log"
        echo "fuzz_$name: FAILED, the end of $log:"
        tail -n 40 "$log"
        echo "RESULT fuzz_$name 0 1"
        status=1
    fi
done
exit $status
