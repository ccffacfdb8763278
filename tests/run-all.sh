#!/bin/bash
# make test: the layering check, unit tests, a short fuzzing pass, then integration tests; ends with one summary line
# "N passed, M failed" counting every test case of every suite.
set -u
cd "$(dirname "$0")/.."
mkdir -p build
log=build/test-output.log
: > "$log"
passed=0 failed=0

echo "== layering (tools/check-layers.sh)"
llog=build/layers-output.log
tools/check-layers.sh 2>&1 | tee "$llog"
rc=${PIPESTATUS[0]}
result=$(grep -a '^RESULT layers ' "$llog" | tail -1)
if [ -n "$result" ]; then
    read -r _ _ p f <<< "$result"
    passed=$((passed + p)) failed=$((failed + f))
fi
# No result, or a failing run that reported no failure, counts as one.
if [ -z "$result" ] || { [ "$rc" != 0 ] && [ "${f:-0}" = 0 ]; }; then
    failed=$((failed + 1))
    echo "the layering check did not report its result"
fi

echo "== unit tests (GoogleTest)"
build/unit-tests 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) tests\?\..*/\1/p' "$log" | tail -1)
f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) tests\?, listed below.*/\1/p' "$log" | tail -1)
p=${p:-0} f=${f:-0}
# A crash before gtest's summary still counts as a failure.
if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
passed=$((passed + p)) failed=$((failed + f))

echo "== fuzz tests (libFuzzer, a fixed number of inputs)"
flog=build/fuzz-output.log
tests/run-fuzz.sh 2>&1 | tee "$flog"
rc=${PIPESTATUS[0]}
results=$(grep -a '^RESULT ' "$flog" | tr -d '\r')
ffailed=0
while read -r _ name p f; do
    [ -n "${name:-}" ] || continue
    passed=$((passed + p)) failed=$((failed + f)) ffailed=$((ffailed + f))
done <<< "$results"
# No results, or a failing run that reported no failure, counts as one.
if [ -z "$results" ] || { [ "$rc" != 0 ] && [ "$ffailed" = 0 ]; }; then
    failed=$((failed + 1))
    echo "the fuzz tests did not report their results"
fi

echo "== integration tests"
ilog=build/integration-output.log
tests/run-integration.sh 2>&1 | tee "$ilog"
rc=${PIPESTATUS[0]}
results=$(grep -a '^RESULT ' "$ilog" | tr -d '\r')
suites=$(printf '%s\n' "$results" | grep -c . || true)
while read -r _ name p f; do
    [ -n "${name:-}" ] || continue
    passed=$((passed + p)) failed=$((failed + f))
done <<< "$results"
# Two suites must report (machine tests here, boot tests in the outer host);
# a suite that never got to report (outer host failed to boot) is a failure.
if [ "$suites" -lt 2 ]; then failed=$((failed + 1)); echo "a test suite did not report its results"; fi
if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
