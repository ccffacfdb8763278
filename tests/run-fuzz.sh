#!/bin/bash
# tests/run-fuzz.sh [RUNS]: a short pass of every libFuzzer target (make
# fuzz-build), a fixed number of inputs each (below; RUNS, if given, for
# all). The counts keep the whole pass under about two minutes on two cores:
# the targets that start a device's threads per input run fewer. The random seed is
# fixed (FUZZ_SEED overrides it) so that make test repeats the same run;
# open-ended fuzzing is make fuzz. A target with inputs in tests/fuzz/corpus
# starts from them (new inputs go to build/fuzz, never there). Prints
# "RESULT fuzz_<name> <passed> <failed>" per target, as the integration
# suites do, and fails if any target did.
set -u
cd "$(dirname "$0")/.."
dir=build/fuzz
status=0
for target in virtqueue:20000 pci:20000 net_rx:15000 net_tx:12000 net_ctrl:4000 device:2000 kernel_image:20000 state:20000 device_state:20000; do
    name=${target%%:*}
    runs=${1:-${target#*:}}
    bin=$dir/fuzz_$name log=$dir/fuzz_$name.log
    corpus=()
    if [ -d tests/fuzz/corpus/fuzz_$name ]; then
        # A fresh directory for what the pass adds, so each pass starts alike.
        rm -rf "$dir/pass-corpus/fuzz_$name" && mkdir -p "$dir/pass-corpus/fuzz_$name"
        corpus=("$dir/pass-corpus/fuzz_$name" "tests/fuzz/corpus/fuzz_$name")
    fi
    start=$SECONDS
    # -close_fd_mask=2 mutes the code under test (a broken device's message
    # per input); libFuzzer's own report, crashes included, still gets through.
    if [ -x "$bin" ] && "$bin" ${corpus[@]+"${corpus[@]}"} -runs="$runs" -seed="${FUZZ_SEED:-1}" -len_control=0 \
        -max_len=1024 -close_fd_mask=2 -timeout=30 -artifact_prefix="$dir/" > "$log" 2>&1; then
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
