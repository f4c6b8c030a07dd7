#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Cross-compile every guest test program for one architecture.
#   tests/guest/build.sh ARCH OUTDIR   ->   OUTDIR/ARCH/<name>
# Static (-static) so no -L/sysroot is needed under QEMU; -O2 -g keeps symbols.
# A program is rebuilt only when its source (or this script) is newer.
set -euo pipefail

usage() { echo "usage: $0 ARCH OUTDIR   (ARCH: ${!TRIPLE[*]})" >&2; exit 2; }

# ARCH -> Debian cross triple; the compiler is <triple>-gcc from the Debian
# package gcc-<triple> plus the libc package in PKG_LIBC.
declare -A TRIPLE=(
    [mips]=mips-linux-gnu
    [mipsel]=mipsel-linux-gnu
    [arm]=arm-linux-gnueabihf
    [aarch64]=aarch64-linux-gnu
    [ppc]=powerpc-linux-gnu
    [ppc64le]=powerpc64le-linux-gnu
    [riscv64]=riscv64-linux-gnu
    [x86_64]=x86_64-linux-gnu
)
declare -A PKG_LIBC=(
    [mips]=libc6-dev-mips-cross
    [mipsel]=libc6-dev-mipsel-cross
    [arm]=libc6-dev-armhf-cross
    [aarch64]=libc6-dev-arm64-cross
    [ppc]=libc6-dev-powerpc-cross
    [ppc64le]=libc6-dev-ppc64el-cross
    [riscv64]=libc6-dev-riscv64-cross
    [x86_64]=libc6-dev-amd64-cross
)
# extra flags per program
declare -A LDEXTRA=([threads]=-pthread [attacks]=-pthread)

[[ $# -eq 2 ]] || usage
arch=$1
outdir=$2
[[ -n ${TRIPLE[$arch]+x} ]] || { echo "build.sh: unknown ARCH '$arch' (known: ${!TRIPLE[*]})" >&2; exit 2; }
triple=${TRIPLE[$arch]}
cc=${CC:-$triple-gcc}
if [[ $arch == x86_64 && -z ${CC:-} ]] && ! command -v "$cc" >/dev/null 2>&1 \
   && [[ $(uname -m) == x86_64 ]]; then
    cc=gcc # native build on an x86-64 host
fi
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "build.sh: cross compiler $cc not found: install gcc-$triple ${PKG_LIBC[$arch]}" >&2
    exit 1
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dest=$outdir/$arch
mkdir -p "$dest"
CFLAGS=(-std=gnu99 -O2 -g -static -Wall -Wno-unused-result)

built=0
for src in "$here"/*.c; do
    name=$(basename "$src" .c)
    out=$dest/$name
    if [[ -e $out && $out -nt $src && $out -nt ${BASH_SOURCE[0]} ]]; then
        continue
    fi
    # shellcheck disable=SC2086 # LDEXTRA entries are single words
    "$cc" "${CFLAGS[@]}" -o "$out.tmp" "$src" ${LDEXTRA[$name]:-}
    mv -f "$out.tmp" "$out"
    built=$((built + 1))
done
echo "build.sh: $arch: $built built, programs in $dest"
