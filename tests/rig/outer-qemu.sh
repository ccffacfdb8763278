#!/bin/bash
# Prints the path of the QEMU that emulates the outer host, fetching it first
# if needed. Why not the distro's: Debian 12's QEMU 7.2 emulates AMD SVM
# with bugs that crash or wedge the outer kernel (tests/rig/README.md); the
# QEMU of bookworm-backports (10.x) has not shown them. It is unpacked into
# build/rig/qemu from Debian's own packages with apt-get download and a
# private package list: the system's apt sources and its QEMU are untouched
# (the distro QEMU stays the one benchmarks compare against). Its libraries
# are those of the distro QEMU, which tools/install-deps.sh installs.
# Falls back to the distro QEMU, saying so on stderr, if the fetch fails.
set -u
cd "$(dirname "$0")/../.."
dir=$PWD/build/rig/qemu
bin=$dir/root/usr/bin/qemu-system-x86_64
say() { echo "outer-qemu: $*" >&2; }
mkdir -p build/rig
exec 9>build/rig/qemu.lock && flock 9  # two runs starting at once fetch it once

if [ ! -x "$bin" ]; then
    apt=$dir/apt
    rm -rf "$dir" && mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$dir/debs"
    echo "deb http://deb.debian.org/debian bookworm-backports main" > "$apt/sources.list"
    opts=(-o Dir::Etc::sourcelist="$apt/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$apt/lists"
          -o Dir::Cache="$apt/cache" -o APT::Sandbox::User=root)
    say "fetching the outer host's QEMU from bookworm-backports into $dir"
    if apt-get "${opts[@]}" -q update >"$dir/fetch.log" 2>&1 &&
       (cd "$dir/debs" && apt-get "${opts[@]}" download qemu-system-x86/bookworm-backports \
            qemu-system-data/bookworm-backports seabios/bookworm-backports >>"$dir/fetch.log" 2>&1); then
        for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/root"; done
    fi
    if ! "$bin" --version >/dev/null 2>&1; then
        say "could not fetch it (see $dir/fetch.log); using the distro's qemu-system-x86_64, which is flakier here"
        rm -rf "$dir/root"
        echo qemu-system-x86_64
        exit 0
    fi
fi
# -L: its own firmware (PVH loader, SeaBIOS), not the distro QEMU's.
echo "$bin -L $dir/root/usr/share/seabios -L $dir/root/usr/share/qemu"
