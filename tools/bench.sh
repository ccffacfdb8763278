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
# MINIVMM_BENCH_PARTS=datapath,boot,vm,migration,net612 (default all) narrows both
# places; net612 (coalescing and USO, tools/bench/net612.py) runs in a 6.12
# outer host of its own.
# Results in build/bench: datapath.{json,csv,md} (here), datapath-outer.*,
# boot.{csv,md}, boot-raw.csv, results.{csv,md}, raw.csv, chart.png,
# migration.{csv,md}, migration-raw.csv.
set -u
cd "$(dirname "$0")/.."
out=build/bench
mkdir -p "$out"
quick=${QUICK:-}
[ "$quick" = 0 ] && quick=
if [ -n "$quick" ]; then timeout=2400 what="QUICK: 1 round, 3 s runs"
else timeout=9000 what="3 rounds, 10 s runs"; fi
export MINIVMM_BENCH_QUICK=${quick:+1}
parts=${MINIVMM_BENCH_PARTS:-datapath,boot,vm,migration,net612}
has() { [[ ",$parts," == *",$1,"* ]]; }
say() { echo "bench: $*"; }
start=$SECONDS

! has datapath || [ -x "$out/bench_datapath" ] || { say "$out/bench_datapath is missing: run make bench"; exit 1; }
! has net612 || [ -x build/udp_gso ] || { say "build/udp_gso is missing: run make bench"; exit 1; }
rm -f "$out"/datapath* "$out"/results.* "$out"/raw.csv "$out"/boot* "$out"/chart.png "$out"/perf-* "$out"/net612-* "$out"/migration*

if has datapath; then
    say "== 1. datapath microbenchmark, on this machine (vhost backends <-> tap in a private netns, no VM)"
    python3 tools/bench/datapath.py "$out" ||
        say "the datapath microbenchmark failed (see above); going on"
fi

# outer PARTS SERIES FILES...: runs tools/bench/run.py for PARTS in an outer
# host of kernel SERIES and copies FILES of its results here; sets rc and
# results (its results directory).
outer() {
    local p=$1 series=$2 f cmd d r
    shift 2
    say "== 2. in the ${series} outer host: ${p} ($what)"
    # The rig writes each run's environment into its results/cmd.sh: this tag
    # finds our run among others (the rig retries in a fresh run directory).
    local tag="bench.$$.$(date +%s).$series"
    # Two emulated CPUs (the rig's default is one): the guest's vCPU, the
    # datapath threads and the servers must be able to run side by side.
    MINIVMM_KERNEL=$series MINIVMM_OUTER_SMP=${MINIVMM_OUTER_SMP:-2} MINIVMM_BENCH_TAG=$tag MINIVMM_BENCH_PARTS=$p \
        tests/rig/outer-run.sh --timeout "$timeout" -- /usr/bin/python3 tools/bench/run.py
    r=$?
    results=
    for cmd in $(grep -l -F -- "MINIVMM_BENCH_TAG=$tag" build/rig/runs/*/results/cmd.sh 2>/dev/null | xargs -r ls -t); do
        d=$(dirname "$cmd")
        for f in "$@"; do
            if [ -s "$d/$f" ]; then results=$d; break 2; fi
        done
    done
    if [ -z "$results" ]; then
        say "FAILED: the ${series} outer host left no results (outer-run status $r)"
        rc=1
        return
    fi
    for f in "$@"; do
        [ -e "$results/$f" ] && cp "$results/$f" "$out/"
    done
    cp "$results"/perf-*.txt "$out/" 2>/dev/null
    # The command's own status, as the outer host left it: the launcher's can
    # differ for reasons after the run (seen: its script edited while it ran).
    if [ -s "$results/rc" ] && [ "$(cat "$results/rc")" != "$r" ]; then
        say "outer-run exited $r after the run; the bench itself exited $(cat "$results/rc")"
        r=$(cat "$results/rc")
    fi
    [ "$r" = 0 ] || rc=$r
}

rc=0
# net612 (coalescing, USO) needs 6.12 guests and host: an outer host of its own.
parts61=$(echo ",$parts," | sed 's/,net612,/,/g; s/^,//; s/,$//')
if [ -n "$parts61" ]; then
    outer "$parts61" 6.1 results.csv results.md raw.csv boot.csv boot.md boot-raw.csv datapath-outer.json \
        datapath-outer.csv datapath-outer.md migration.md migration.csv migration-raw.csv
    vm_results=$results
fi
if has net612; then
    [ -d build/images-6.12/images ] || [ -e build/images-6.12/vmlinuz ] ||
        say "net612 needs the 6.12 images (make images MINIVMM_KERNEL=6.12); trying anyway"
    outer net612 6.12 net612-coalescing.md net612-coalescing.csv net612-uso.md net612-uso.csv
fi
results=${vm_results:-$results}

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
show migration "live migration, minivmm and QEMU 7.2, $where ($out/migration.csv, logs $results/minivmm-tests)" "$out/migration.md"
show net612 "notification coalescing, 6.12 guest and host ($out/net612-coalescing.csv)" "$out/net612-coalescing.md"
show net612 "UDP segmentation offload, 6.12 guest and host ($out/net612-uso.csv)" "$out/net612-uso.md"
echo
say "took $((SECONDS - start)) s"
# Timing decides nothing; an outer host that died or timed out does.
exit "$rc"
