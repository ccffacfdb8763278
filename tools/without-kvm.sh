#!/bin/bash
# tools/without-kvm.sh COMMAND... : runs COMMAND as on a host with no KVM at
# all (no /dev/kvm node), to try what such a host's users and CI see:
#   tools/without-kvm.sh env CI=true bash .ci/run
# COMMAND gets a private mount namespace whose /dev is an overlay of the real
# one with kvm deleted in the overlay only: nodes the kernel adds later (a
# macvtap's /dev/tapN) still show, and the host's /dev is untouched.
# (Binding /dev/null over /dev/kvm instead gives the third case: a node that
# opens but answers no KVM ioctl.)
set -eu
[ $# -gt 0 ] || { echo "usage: $0 COMMAND..." >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0: needs root (mount namespaces)" >&2; exit 1; }
exec unshare -m --propagation private bash -c '
    set -e
    d=$(mktemp -d /run/without-kvm.XXXX)
    mount -t tmpfs none "$d"
    mkdir "$d/upper" "$d/work" "$d/dev"
    mount -t overlay overlay -o "lowerdir=/dev,upperdir=$d/upper,workdir=$d/work" "$d/dev"
    rm -f "$d/dev/kvm"
    # The mounts below /dev (pts, shm, mqueue, hugepages) are not in the overlay.
    for m in $(findmnt -rn -o TARGET | grep "^/dev/"); do
        [ -d "$d$m" ] && mount --rbind "$m" "$d$m"
    done
    mount --move "$d/dev" /dev
    umount -l "$d" && rmdir "$d"  # the overlay keeps its layers; the host keeps no directory
    exec "$@"' without-kvm "$@"
