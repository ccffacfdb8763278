#!/bin/bash
# Installs the Debian packages minivmm's build, tests, images and benchmarks
# need, and only those missing. Safe to run repeatedly; quick when done.
set -eu
pkgs=(
    g++ make libgtest-dev libgmock-dev            # build and unit tests
    libseccomp-dev                                # each thread's system call filter
    nlohmann-json3-dev                            # the control socket's JSON (--api-sock, minivmm ctl)
    libcap-ng-dev                                 # dropping capabilities, --user
    libbpf-dev libelf-dev                         # loading the tap's RSS steering program (static)
    zlib1g-dev liblzma-dev liblz4-dev libzstd-dev  # decompressing a bzImage's kernel (--boot=direct)
    clang libclang-rt-dev                         # fuzzing (libFuzzer, sanitizers); the BPF steering program
    python3 util-linux iproute2                   # test driver, unshare/setpriv, netns
    qemu-system-x86 busybox-static cpio           # outer host and guest images
    iperf3 sockperf ethtool                       # tools copied into the guest image
    libbenchmark-dev gnuplot-nox                  # make bench: datapath microbenchmark, chart
)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}"
    [ "$(id -u)" = 0 ] || { echo "install-deps: need root to apt-get install ${missing[*]}" >&2; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
