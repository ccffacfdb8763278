#!/bin/bash
# Self-check of the test rig: outer host boots with /dev/kvm and /dev/vhost-net,
# exit statuses come back, the soft-lockup retry works, and QEMU inside the
# outer host boots both guest kernels under KVM. Prints PASS/FAIL lines.
#   tests/rig/selftest.sh        (from anywhere; runs from the repo root)
set -u
cd "$(dirname "$0")/../.." || exit 2
run=tests/rig/outer-run.sh
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fails=0

check() {   # check NAME CONDITION... : PASS when CONDITION succeeds
    local name=$1; shift
    if "$@"; then echo "selftest: PASS $name"; else echo "selftest: FAIL $name"; fails=$((fails + 1)); fi
}
# The inner guest's tty ends lines with \r\n; drop the \r so patterns can use $.
has() { sed -i 's/\r$//' "$out"; grep -qa -- "$1" "$out"; }

$run --timeout 300 -- 'ls -la /dev/kvm /dev/vhost-net; uname -r; echo hello' | tee "$out"
rc=${PIPESTATUS[0]}
check "devices: exit 0" [ "$rc" = 0 ]
check "devices: /dev/kvm and /dev/vhost-net are character devices" \
    eval 'has "^crw.* /dev/kvm$" && has "^crw.* /dev/vhost-net$"'
check "devices: command output reaches the console" has '^hello$'

$run --timeout 300 -- false
check "exit status 1 of 'false' is passed back" [ $? = 1 ]

# Fake the watchdog's console message: the launcher must retry once, then give up.
$run --timeout 300 -- 'echo "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! (selftest)"; sleep 600' | tee "$out"
rc=${PIPESTATUS[0]}
check "soft lockup: retried once, then failed" \
    eval '[ "$rc" != 0 ] && has "retrying once in a fresh outer host" && has "soft lockup again"'

# Boot each guest kernel with QEMU under KVM inside the outer host; time it.
inner='for k in "" -cloud; do
  s=$(date +%s.%N)
  qemu-system-x86_64 -enable-kvm -cpu host -m 512 -smp 2 -nographic -no-reboot -nodefaults \
    -serial stdio -kernel build/images/vmlinuz$k -initrd build/images/guest-initrd$k.gz \
    -append "console=ttyS0 quiet guest.run=poweroff" </dev/null || exit
  echo "inner-boot vmlinuz$k wall $(echo "$(date +%s.%N) - $s" | bc) s"
done'
$run --timeout 900 -- "$inner" | tee "$out"
rc=${PIPESTATUS[0]}
check "inner guests: QEMU exits 0" [ "$rc" = 0 ]
sed -i 's/\r$//' "$out"
check "inner guests: both print MINIVMM-GUEST-INIT-OK" [ "$(grep -ac '^MINIVMM-GUEST-INIT-OK$' "$out")" = 2 ]
grep -a -e '^inner-boot' -e '^outer-run: outer boot' "$out"

[ "$fails" = 0 ] && echo "selftest: all PASS" || echo "selftest: $fails FAILED"
[ "$fails" = 0 ]
