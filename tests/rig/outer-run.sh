#!/bin/bash
# Run a shell command line inside the emulated "outer host" (QEMU TCG, -cpu max,
# Debian kernel with kvm_amd + vhost_net, this machine's root shared read-only
# over 9p), unless a probe finds that this machine's own KVM runs a stock
# kernel at speed and it has vhost-net.
#   tests/rig/outer-run.sh [--timeout SECONDS] -- COMMAND...
# COMMAND runs under bash in the current directory; exit status is COMMAND's,
# 124 on timeout (SECONDS for everything, retry included). See tests/rig/README.md for the environment it gets.
set -u

timeout=1200
while [ $# -gt 0 ]; do
    case $1 in
        --timeout) timeout=${2:?--timeout needs seconds}; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--timeout SECONDS] -- COMMAND..." >&2; exit 2; }
cmd="$*"
workdir=$PWD
repo=$(cd "$(dirname "$0")/../.." && pwd)
# Each kernel series (MINIVMM_KERNEL, 6.1 by default) has its own images.
series=${MINIVMM_KERNEL:-6.1}
images=${MINIVMM_IMAGES:-$repo/build/images$([ "$series" = 6.1 ] || echo "-$series")}
runs=$repo/build/rig/runs

say() { echo "outer-run: $*"; }

# newrun : fresh per-attempt dir holding the results share and the console log.
newrun() {
    mkdir -p "$runs"
    # Runs older than a day are clutter; none can still be running (timeouts).
    find "$runs" -mindepth 1 -maxdepth 1 -type d -mmin +1440 -exec rm -rf {} +
    rundir=$(mktemp -d "$runs/$(date +%Y%m%d-%H%M%S).XXXX")
    mkdir "$rundir/results"
    {
        # The outer host starts COMMAND with a clean environment: carry over the
        # project's own settings (MINIVMM_*), except those the outer host sets.
        for v in $(compgen -e MINIVMM_); do
            case $v in MINIVMM_RESULTS | MINIVMM_OUTER) ;; *) printf 'export %s=%q\n' "$v" "${!v}" ;; esac
        done
        printf 'cd %q || exit 125\n%s\n' "$workdir" "$cmd"
    } > "$rundir/results/cmd.sh"
    # The outer init must not hide this directory under a scratch tmpfs.
    printf '%s\n' "$workdir" > "$rundir/results/workdir"
}

# Probed, not assumed: a /dev/kvm can be PVM, or not KVM at all.
# tests/run-integration.sh probes once and passes the level on.
if [ -n "${MINIVMM_KVM_LEVEL:-}" ]; then
    level=$MINIVMM_KVM_LEVEL probe="kvm-probe level $MINIVMM_KVM_LEVEL"
else
    probe=$(/usr/bin/python3 "$repo/tests/integration/kvm_probe.py"); level=$?
fi
if [ "$level" = 0 ] && [ -e /dev/vhost-net ]; then
    say "$probe; /dev/vhost-net exists: running the command directly"
    newrun
    MINIVMM_RESULTS=$rundir/results timeout "$timeout" bash "$rundir/results/cmd.sh"
    rc=$?
    [ "$rc" = 124 ] && say "FAILED: timed out after ${timeout}s"
    exit "$rc"
fi
[ -z "${MINIVMM_KVM_LEVEL:-}" ] && say "$probe; /dev/vhost-net $([ -e /dev/vhost-net ] && echo exists || echo is missing): using the emulated outer host"

command -v qemu-system-x86_64 >/dev/null ||
    { say "qemu-system-x86_64 is missing: apt-get install qemu-system-x86"; exit 1; }
# The emulator of the outer host: by default bookworm-backports' QEMU, which
# emulates SVM better than the distro's (tests/rig/outer-qemu.sh says why).
qemu=${MINIVMM_OUTER_QEMU:-$("$repo/tests/rig/outer-qemu.sh")}

"$repo/guest-images/build.sh" "$images" || { say "building $images failed"; exit 1; }
# Same kernel as vmlinuz; uncompressed it boots through PVH, about 5 s sooner.
kernel=$images/vmlinux
[ -e "$kernel" ] || kernel=$images/vmlinuz

qpid= tpid=
stop() {   # stop QEMU and the live view, politely then firmly
    if [ -n "$qpid" ]; then
        kill "$qpid" 2>/dev/null
        for _ in 1 2 3 4 5; do kill -0 "$qpid" 2>/dev/null || break; sleep 1; done
        kill -9 "$qpid" 2>/dev/null
        wait "$qpid" 2>/dev/null
    fi
    [ -n "$tpid" ] && { kill "$tpid" 2>/dev/null; wait "$tpid" 2>/dev/null; }
    qpid= tpid=
}
trap 'stop; say "interrupted"; exit 130' INT TERM

# One emulated CPU by default. With two (thread=multi), guests with two
# vCPUs crashed the outer kernel (an interrupt taken right after VMRUN
# returned, on the guest's GS base) or lost IPIs in about half of the
# multiqueue runs; with one, none did (README, known problems). The
# benchmark asks for two: its rows compare threads that need to run at once.
smp=${MINIVMM_OUTER_SMP:-1}

crash_marks='Kernel panic - not syncing|stack guard page was hit'

# attempt : one outer boot; sets $outcome to done, lockup, crash or timeout.
attempt() {
    newrun
    log=$rundir/console.log
    : > "$log"   # exists before tail -f looks for it
    $qemu ${MINIVMM_OUTER_QEMU_ARGS:-} -accel tcg,thread=multi -cpu "${MINIVMM_OUTER_CPU:-max}" -m 4096 -smp "$smp" \
        -nographic -no-reboot -nodefaults -serial stdio \
        -kernel "$kernel" -initrd "$images/outer-initrd.gz" \
        -append "console=ttyS0 quiet panic=-1 ${MINIVMM_OUTER_APPEND:-}" \
        -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
        -virtfs "local,path=$rundir/results,mount_tag=results,security_model=none" \
        </dev/null >"$log" 2>&1 &
    qpid=$!
    tail -n +1 -f --pid="$qpid" "$log" & tpid=$!
    local t0=${EPOCHREALTIME//[!0-9]/}
    elapsed() { local us=$(( ${EPOCHREALTIME//[!0-9]/} - t0 )); echo "$((us / 1000000)).$((us / 100000 % 10))"; }
    outcome=done boot_s=
    local size=0 grown=$SECONDS now
    while kill -0 "$qpid" 2>/dev/null; do
        [ -z "$boot_s" ] && grep -qF '=== MINIVMM-OUTER-START' "$log" && boot_s=$(elapsed)
        # pr_emerg from the outer kernel's watchdog: this boot will not recover.
        if grep -qF 'watchdog: BUG: soft lockup' "$log"; then outcome=lockup; break; fi
        # The outer kernel's own crash (README, known problems) may hang it
        # rather than end QEMU: no need to wait for the silence below.
        # (Only its own signature: the harness may echo an inner guest's panic.)
        if grep -qF 'stack guard page was hit' "$log"; then outcome=crash; break; fi
        # A wedged outer host can also fall silent without a watchdog report
        # (seen: both emulated CPUs busy, the command frozen). Commands here
        # print at least every few minutes, so long silence means the same.
        now=$(stat -c %s "$log")
        if (( now != size )); then size=$now grown=$SECONDS
        elif (( SECONDS - grown >= ${MINIVMM_OUTER_SILENCE:-600} )); then outcome=lockup; break; fi
        # The timeout covers the retry too: callers budget whole runs.
        if (( SECONDS >= timeout )); then outcome=timeout; break; fi
        # Poll finely until the command starts, so the boot time printed is right.
        if [ -z "$boot_s" ]; then sleep 0.2; else sleep 1; fi
    done
    if [ "$outcome" = done ]; then wait "$qpid"; wait "$tpid"; qpid= tpid=; else stop; fi
    total_s=$(elapsed)
}

# crashed : the outer kernel itself died (seen: "stack guard page was hit" in
# exc_general_protection inside the inner VMM's KVM_RUN, the emulated SVM
# having left a bad GS base) and QEMU exited without the command's status.
crashed() {
    [ "$outcome" = crash ] ||
        { [ "$outcome" = done ] && [ ! -s "$rundir/results/rc" ] && grep -qE "$crash_marks" "$log"; }
}

# wedged : the test harness found a VMM it could not kill (a vCPU thread the
# emulated CPU never let out of guest mode) and gave up on this outer host.
wedged() { grep -qF 'MINIVMM-OUTER-WEDGED' "$log"; }

attempt
if [ "$outcome" = lockup ] || crashed || wedged; then
    what="soft lockup in outer host (watchdog report, or no output for ${MINIVMM_OUTER_SILENCE:-600}s)"
    crashed && what="outer kernel crashed in the emulated CPU"
    wedged && what="a vCPU thread stuck in the outer kernel (the harness could not kill its VMM)"
    say "$what, retrying once in a fresh outer host"
    say "log of the failed attempt: $log"
    attempt
    [ "$outcome" = lockup ] && { say "FAILED: soft lockup again in the retry; log: $log"; exit 1; }
    crashed && { say "FAILED: outer kernel crashed again in the retry; log: $log"; exit 1; }
    wedged && { say "FAILED: a vCPU thread stuck in the outer kernel again in the retry; log: $log"; exit 1; }
fi
if [ "$outcome" = timeout ]; then
    say "FAILED: timed out after ${timeout}s, QEMU killed; log: $log"
    exit 124
fi
say "outer boot ${boot_s:-?}s (launch to command start), whole run ${total_s}s; console log: $log"
if [ ! -s "$rundir/results/rc" ]; then
    say "FAILED: the outer host left no exit status (crash or boot failure? see the log)"
    exit 1
fi
exit "$(cat "$rundir/results/rc")"
