#!/bin/bash
# tools/check-layers.sh: the folders depend one way, vmm core <- virtio/ <-
# vhost/, and vhost/ports/ on vmm core alone, so that a port or the device
# model can be read, tested and fuzzed without what sits above it. Only the
# composition files (vmm/cli, machine with machine_state, machine_migration
# and api_machine, main, seccomp_policy, nic) may include every folder.
# Prints each include that breaks the rule, then
# "RESULT layers <passed> <failed>" as the test suites do; fails if any did.
set -u
cd "$(dirname "$0")/.."

violations=0
# bad FILE INCLUDE WHY
bad() {
    echo "$1: includes \"$2\": $3"
    violations=$((violations + 1))
}

for f in $(find vmm virtio vhost -name '*.hpp' -o -name '*.cpp' | sort); do
    while IFS= read -r inc; do
        case "$f" in
            vmm/cli.* | vmm/machine.* | vmm/machine_state.cpp | vmm/machine_migration.cpp | vmm/api_machine.cpp | vmm/main.cpp | vmm/seccomp_policy.* | vmm/nic.*) ;;
            vmm/*)
                case "$inc" in virtio/* | vhost/*) bad "$f" "$inc" "vmm core may include only vmm/" ;; esac ;;
            virtio/*)
                case "$inc" in vhost/*) bad "$f" "$inc" "virtio/ may not include vhost/" ;; esac ;;
            vhost/ports/*)
                case "$inc" in
                    vhost/ports/*) ;;
                    virtio/* | vhost/* | vmm/cli.* | vmm/machine.* | vmm/seccomp_policy.* | vmm/nic.*)
                        bad "$f" "$inc" "a port may include only vmm/ core and vhost/ports/" ;;
                esac ;;
        esac
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done

if [ "$violations" = 0 ]; then
    echo "layers: every include goes the one way"
    echo "RESULT layers 1 0"
else
    echo "layers: $violations include(s) against the layering"
    echo "RESULT layers 0 1"
    exit 1
fi
