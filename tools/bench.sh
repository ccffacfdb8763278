#!/bin/bash
# make bench [QUICK=1]: benchmarks, never part of make test; timing never
# fails it. Two parts:
#  1. the datapath microbenchmark (build/bench/bench_datapath, the vhost
#     worker against a tap, no VM), here on this machine;
#  2. the VM table (tools/bench/run.py) where a stock kernel boots under
#     KVM: the emulated outer host unless this machine has VMX/SVM
#     (tests/rig/outer-run.sh decides). Its CSV comes back through the rig's
#     results share; the chart is drawn here, from that CSV.
# Results in build/bench: datapath.{json,csv,md}, results.{csv,md}, raw.csv, chart.png.
set -u
cd "$(dirname "$0")/.."
out=build/bench
quick=${QUICK:-}
[ "$quick" = 0 ] && quick=
if [ -n "$quick" ]; then min_time=0.1 timeout=2400 what="QUICK: 1 round, 3 s runs"
else min_time=0.5 timeout=7200 what="3 rounds, 10 s runs"; fi
say() { echo "bench: $*"; }
start=$SECONDS

[ -x "$out/bench_datapath" ] || { say "$out/bench_datapath is missing: run make bench"; exit 1; }
rm -f "$out"/datapath.* "$out"/results.* "$out"/raw.csv "$out"/chart.png

say "== 1. datapath microbenchmark, on this machine (vhost worker <-> tap in a private netns, no VM)"
if "$out/bench_datapath" --benchmark_min_time="$min_time" \
        --benchmark_out="$out/datapath.json" --benchmark_out_format=json &&
    python3 tools/bench/datapath_table.py "$out/datapath.json" "$out/datapath.csv" > "$out/datapath.md"; then
    echo; cat "$out/datapath.md"; echo
else
    say "the datapath microbenchmark failed (see above); going on with the VM table"
fi

say "== 2. VM table ($what)"
# The rig writes each run's environment into its results/cmd.sh: this tag
# finds our run among others (the rig retries in a fresh run directory).
tag="bench.$$.$(date +%s)"
# Two emulated CPUs (the rig's default is one): the guest's vCPU, the
# datapath threads and the servers must be able to run side by side.
MINIVMM_OUTER_SMP=${MINIVMM_OUTER_SMP:-2} MINIVMM_BENCH_TAG=$tag MINIVMM_BENCH_QUICK=${quick:+1} \
    tests/rig/outer-run.sh --timeout "$timeout" -- /usr/bin/python3 tools/bench/run.py
rc=$?
results=
for cmd in $(grep -l -F -- "MINIVMM_BENCH_TAG=$tag" build/rig/runs/*/results/cmd.sh 2>/dev/null | xargs -r ls -t); do
    [ -s "$(dirname "$cmd")/results.csv" ] && { results=$(dirname "$cmd"); break; }
done
if [ -z "$results" ]; then
    say "FAILED: the VM table left no results (outer-run status $rc)"
    exit 1
fi
cp "$results"/results.csv "$results"/results.md "$results"/raw.csv "$out"/
# The command's own status, as the outer host left it: the launcher's can
# differ for reasons after the run (seen: its script edited while it ran).
if [ -s "$results/rc" ] && [ "$(cat "$results/rc")" != "$rc" ]; then
    say "outer-run exited $rc after the run; the bench itself exited $(cat "$results/rc")"
    rc=$(cat "$results/rc")
fi

where="on this machine"
grep -qE 'vmx|svm' /proc/cpuinfo && [ -e /dev/kvm ] || where="in the emulated outer host: compare rows, not absolute figures"
if gnuplot -e "csv='$out/results.csv'; png='$out/chart.png'; subtitle='$(date -u +%F), $what, $where'" \
        tools/bench/chart.gp; then
    chart="$out/chart.png"
else
    chart="(gnuplot failed: no chart)"
fi

echo
say "== datapath microbenchmark ($out/datapath.csv)"
[ -s "$out/datapath.md" ] && cat "$out/datapath.md" || echo "(failed)"
echo
say "== VM table ($out/results.csv, chart $chart, logs $results/minivmm-tests)"
cat "$out/results.md"
echo
say "took $((SECONDS - start)) s"
# Timing decides nothing; an outer host that died or timed out does.
exit "$rc"
