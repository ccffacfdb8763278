#!/bin/bash
# Build the kernels and initramfs images the test rig boots, from Debian packages.
#   guest-images/build.sh OUTDIR
# Outputs in OUTDIR: vmlinuz, vmlinuz-cloud, guest-initrd.gz, guest-initrd-cloud.gz,
# outer-initrd.gz, vmlinux (vmlinuz uncompressed, for the outer host).
# Cached: an output is rebuilt only when it is older than the recipe files,
# busybox or the guest tools, or when the kernel package changed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
[ $# = 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd)
tools=(/usr/bin/iperf3 /usr/bin/sockperf /usr/sbin/ethtool)
common=("$here"/build.sh /bin/busybox)

# Global so the EXIT trap can remove a half-built staging tree.
stage=
trap 'rm -rf "$stage"' EXIT

log() { echo "guest-images: $*" >&2; }

# uptodate OUT DEP... : OUT exists and no DEP is newer.
uptodate() {
    local o=$1 d; shift
    [ -e "$o" ] || return 1
    for d; do [ "$d" -nt "$o" ] && return 1; done
    return 0
}

ensure_pkgs() {
    local p missing=()
    for p; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} = 0 ] && return
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

# fetch_kernel PKG ROOT : unpack kernel package PKG into ROOT (re-done only when
# the package name changes, e.g. a new ABI).
fetch_kernel() {
    local pkg=$1 root=$2 deb
    [ "$(cat "$root/.pkg" 2>/dev/null)" = "$pkg" ] && return
    mkdir -p "$out/debs"
    deb=$(ls -t "$out/debs/${pkg}"_*.deb 2>/dev/null | head -1) || true
    if [ -z "$deb" ]; then
        log "downloading $pkg"
        # Sandbox user root: the _apt user cannot write into OUTDIR.
        (cd "$out/debs" && apt-get -q -o APT::Sandbox::User=root download "$pkg" >&2)
        deb=$(ls -t "$out/debs/${pkg}"_*.deb | head -1)
    fi
    log "unpacking $(basename "$deb")"
    rm -rf "$root"
    dpkg -x "$deb" "$root"
    echo "$pkg" > "$root/.pkg"
}

# copy_modules KROOT LIST STAGE : flatten LIST's modules into STAGE/lib/modules.
# A name ending in "?" may be absent from a kernel series (fscache is part of
# netfs from 6.12 on); any other absent module must be built in.
copy_modules() {
    local kdir m name f
    kdir=$(echo "$1"/lib/modules/*)
    mkdir -p "$3/lib/modules" "$3/etc"
    : > "$3/etc/modules.list"
    for m in $(grep -v '^#' "$2"); do
        name=${m%\?}
        echo "$name" >> "$3/etc/modules.list"
        f=$(find "$kdir/kernel" -name "$name.ko" -o -name "$name.ko.xz" -o -name "$name.ko.zst" | head -1)
        if [ -z "$f" ]; then
            grep -q "/$name\.ko\$" "$kdir/modules.builtin" || [ "$m" != "$name" ] ||
                { log "module $name missing from $kdir"; exit 1; }
            continue   # built in or gone: /init skips modules it does not carry
        fi
        case $f in
            *.xz) xz -dc "$f" ;;
            *.zst) zstd -qdc "$f" ;;
            *) cat "$f" ;;
        esac > "$3/lib/modules/$name.ko"
    done
}

# copy_with_libs STAGE BIN... : BINs and every library ldd names (loader too),
# at the same paths as on this machine.
copy_with_libs() {
    local stage=$1 f; shift
    # One ldd per binary: with several, ldd prints "path:" header lines.
    for f in "$@" $(for f; do ldd "$f"; done | awk '$2 == "=>" {print $3} $1 ~ /^\// {print $1}' | sort -u); do
        mkdir -p "$stage$(dirname "$f")"
        cp -L "$f" "$stage$f"
    done
}

# extract_vmlinux : OUT/vmlinux.tmp = the ELF kernel inside OUT/vmlinuz, found
# where the setup header's payload_offset says (6.1 compresses it with xz,
# 6.12 with zstd; the last 4 bytes of the payload are its uncompressed size).
extract_vmlinux() {
    python3 - "$out/vmlinuz" "$out/vmlinux.tmp" <<'PY'
import lzma, struct, subprocess, sys
image = open(sys.argv[1], "rb").read()
setup = ((image[0x1f1] or 4) + 1) * 512
off, length = struct.unpack_from("<II", image, 0x248)
payload = image[setup + off:setup + off + length]
if payload.startswith(b"\xfd7zXZ\x00"):
    elf = lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(payload)
elif payload.startswith(b"\x28\xb5\x2f\xfd"):
    elf = subprocess.run(["zstd", "-qdc"], input=payload[:-4], capture_output=True).stdout
else:
    elf = b""
if not elf.startswith(b"\x7fELF"):
    sys.exit("no xz- or zstd-compressed ELF in " + sys.argv[1])
open(sys.argv[2], "wb").write(elf)
PY
}

# mkinitrd OUT KROOT INIT MODLIST [BIN...] : busybox initramfs, newc cpio + gzip.
mkinitrd() {
    local dst=$1 kroot=$2 init=$3 mods=$4 a; shift 4
    log "building $(basename "$dst")"
    stage=$(mktemp -d "$out/.stage.XXXXXX")
    mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,root,etc}
    install -m 1777 -d "$stage/tmp"
    cp /bin/busybox "$stage/bin/busybox"
    for a in $(/bin/busybox --list-full); do
        [ -e "$stage/$a" ] || ln -s /bin/busybox "$stage/$a"
    done
    install -m 755 "$init" "$stage/init"
    copy_modules "$kroot" "$mods" "$stage"
    [ $# = 0 ] || copy_with_libs "$stage" "$@"
    (cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 > "$dst.tmp"
    mv "$dst.tmp" "$dst"
    rm -rf "$stage"; stage=
}

ensure_pkgs busybox-static cpio iperf3 sockperf ethtool xz-utils zstd

# Which Debian kernel series: MINIVMM_KERNEL=6.1 (bookworm's own, the
# default) or 6.12 (bookworm-security's, trixie's default). One variable for
# the whole rig: tests/integration/vmtest.py and tests/rig/outer-run.sh pick
# the images directory from it (images_dir below).
series=${MINIVMM_KERNEL:-6.1}
case $series in
    6.1) metaprefix=linux-image ;;
    6.12) metaprefix=linux-image-6.12 ;;
    *) log "MINIVMM_KERNEL=$series: known series are 6.1 and 6.12"; exit 1 ;;
esac

# Resolve both meta packages in one call: this apt has no pkgcache.bin
# (docker-clean), so every apt-cache run spends about a second rebuilding it.
declare -A kpkg
while read -r meta pkg; do kpkg[$meta]=$pkg; done < <(
    apt-cache depends $metaprefix-amd64 $metaprefix-cloud-amd64 |
    awk '/^[^ ]/ {m = $1} $1 == "Depends:" && $2 ~ /^linux-image-/ {print m, $2}')

for flavour in "" -cloud; do
    meta=$metaprefix${flavour}-amd64
    kroot=$out/kernel-root$flavour
    [ -n "${kpkg[$meta]:-}" ] || { log "cannot resolve the kernel package of $meta"; exit 1; }
    fetch_kernel "${kpkg[$meta]}" "$kroot"
    uptodate "$out/vmlinuz$flavour" "$kroot/.pkg" \
        || cp "$(ls "$kroot"/boot/vmlinuz-* | head -1)" "$out/vmlinuz$flavour"
    uptodate "$out/guest-initrd$flavour.gz" "$kroot/.pkg" "${common[@]}" \
        "$here"/guest-init "$here"/guest.modules "${tools[@]}" \
        || mkinitrd "$out/guest-initrd$flavour.gz" "$kroot" "$here/guest-init" "$here/guest.modules" "${tools[@]}"
done

# The outer host boots the stock kernel as an uncompressed ELF through PVH:
# skipping real-mode setup and xz decompression saves about 5 s under TCG.
# Not fatal: without vmlinux, tests/rig/outer-run.sh boots vmlinuz.
uptodate "$out/vmlinux" "$out/vmlinuz" || {
    log "extracting vmlinux"
    if extract_vmlinux; then mv "$out/vmlinux.tmp" "$out/vmlinux"
    else rm -f "$out/vmlinux" "$out/vmlinux.tmp"; log "no vmlinux, the outer host will boot vmlinuz"; fi
}
uptodate "$out/outer-initrd.gz" "$out/kernel-root/.pkg" "${common[@]}" "$here"/outer-init "$here"/outer.modules \
    || mkinitrd "$out/outer-initrd.gz" "$out/kernel-root" "$here/outer-init" "$here/outer.modules"
