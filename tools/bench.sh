#!/bin/bash
# make bench [QUICK=1]: benchmarks, never part of make test; timing never
# fails it. Two places:
#  1. here: the datapath microbenchmark (build/bench/bench_datapath, the
#     vhost worker against a tap, no VM; the kernel vhost-net rows say
#     "no /dev/vhost-net" where there is none);
#  2. where a stock kernel boots under KVM and /dev/vhost-net exists (the
#     emulated outer host unless this machine has VMX/SVM:
#     tests/rig/outer-run.sh decides), tools/bench/run.py: the datapath
#     microbenchmark again (worker against vhost-net), the boot table and
#     the VM table. Their files come back through the rig's results share;
#     the chart is drawn here, from the VM table's CSV.
# MINIVMM_BENCH_PARTS=datapath,boot,vm (default all) narrows both places.
# Results in build/bench: datapath.{json,csv,md} (here), datapath-outer.*,
# boot.{csv,md}, boot-raw.csv, results.{csv,md}, raw.csv, chart.png.
set -u
cd "$(dirname "$0")/.."
out=build/bench
quick=${QUICK:-}
[ "$quick" = 0 ] && quick=
if [ -n "$quick" ]; then timeout=2400 what="QUICK: 1 round, 3 s runs"
else timeout=9000 what="3 rounds, 10 s runs"; fi
export MINIVMM_BENCH_QUICK=${quick:+1}
parts=${MINIVMM_BENCH_PARTS:-datapath,boot,vm}
has() { [[ ",$parts," == *",$1,"* ]]; }
say() { echo "bench: $*"; }
start=$SECONDS

[ -x "$out/bench_datapath" ] || { say "$out/bench_datapath is missing: run make bench"; exit 1; }
rm -f "$out"/datapath* "$out"/results.* "$out"/raw.csv "$out"/boot* "$out"/chart.png "$out"/perf-*

if has datapath; then
    say "== 1. datapath microbenchmark, on this machine (vhost backends <-> tap in a private netns, no VM)"
    python3 tools/bench/datapath.py "$out" ||
        say "the datapath microbenchmark failed (see above); going on"
fi

say "== 2. in the outer host: ${parts} ($what)"
# The rig writes each run's environment into its results/cmd.sh: this tag
# finds our run among others (the rig retries in a fresh run directory).
tag="bench.$$.$(date +%s)"
# Two emulated CPUs (the rig's default is one): the guest's vCPU, the
# datapath threads and the servers must be able to run side by side.
MINIVMM_OUTER_SMP=${MINIVMM_OUTER_SMP:-2} MINIVMM_BENCH_TAG=$tag MINIVMM_BENCH_PARTS=$parts \
    tests/rig/outer-run.sh --timeout "$timeout" -- /usr/bin/python3 tools/bench/run.py
rc=$?
results=
for cmd in $(grep -l -F -- "MINIVMM_BENCH_TAG=$tag" build/rig/runs/*/results/cmd.sh 2>/dev/null | xargs -r ls -t); do
    d=$(dirname "$cmd")
    if [ -s "$d/results.csv" ] || [ -s "$d/boot.csv" ] || [ -s "$d/datapath-outer.csv" ]; then results=$d; break; fi
done
if [ -z "$results" ]; then
    say "FAILED: the outer host left no results (outer-run status $rc)"
    exit 1
fi
for f in results.csv results.md raw.csv boot.csv boot.md boot-raw.csv datapath-outer.json datapath-outer.csv \
         datapath-outer.md; do
    [ -e "$results/$f" ] && cp "$results/$f" "$out/"
done
cp "$results"/perf-*.txt "$out/" 2>/dev/null
# The command's own status, as the outer host left it: the launcher's can
# differ for reasons after the run (seen: its script edited while it ran).
if [ -s "$results/rc" ] && [ "$(cat "$results/rc")" != "$rc" ]; then
    say "outer-run exited $rc after the run; the bench itself exited $(cat "$results/rc")"
    rc=$(cat "$results/rc")
fi

where="on this machine"
grep -qE 'vmx|svm' /proc/cpuinfo && [ -e /dev/kvm ] || where="in the emulated outer host: compare rows, not absolute figures"
chart="(no VM table: no chart)"
if [ -s "$out/results.csv" ]; then
    if gnuplot -e "csv='$out/results.csv'; png='$out/chart.png'; subtitle='$(date -u +%F), $what, $where'" \
            tools/bench/chart.gp; then
        chart="$out/chart.png"
    else
        chart="(gnuplot failed: no chart)"
    fi
fi

show() {  # show PART HEADING FILE
    has "$1" || return 0
    echo
    say "== $2"
    [ -s "$3" ] && cat "$3" || echo "(failed)"
}
show datapath "datapath microbenchmark on this machine ($out/datapath.csv)" "$out/datapath.md"
show datapath "datapath microbenchmark $where ($out/datapath-outer.csv)" "$out/datapath-outer.md"
show boot "boot to init $where ($out/boot.csv)" "$out/boot.md"
show vm "VM table ($out/results.csv, chart $chart, logs $results/minivmm-tests)" "$out/results.md"
echo
say "took $((SECONDS - start)) s"
# Timing decides nothing; an outer host that died or timed out does.
exit "$rc"
