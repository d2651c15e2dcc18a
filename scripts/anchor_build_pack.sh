#!/usr/bin/env bash
# Keep a compiled anchor (scripts/build_anchors.sh's .anchors/build/<name>/<name>.so, built against the GPU host's
# torch) between GPU sessions, so that later sessions carry it instead of rebuilding it (causal_conv1d_cuda: 313-447 s
# of device time). A device call brings back at most 8 files of 16 MiB each, so the library travels gzipped in parts.
#   GPU host:  scripts/anchor_build_pack.sh pack NAME OUTDIR     # OUTDIR/NAME.so.gz.part00, part01, ... (15 MiB each)
#   here:      scripts/anchor_build_pack.sh unpack NAME INDIR    # -> .anchors/build/NAME/NAME.so + BUILD_OK
# then name ".anchors/build" in the device call's carry list (it replaces the host's .anchors/build).
set -eu
cd "$(dirname "$0")/.."
mode=$1 name=$2 dir=$3
B=${MAMBA_KERNELS_ANCHORS_BUILD:-.anchors/build}
case $mode in
  pack)
    so=$B/$name/$name.so
    [ -f "$B/$name/BUILD_OK" ] || { echo "no finished build at $so" >&2; exit 1; }
    tmp=$(mktemp)
    cp "$so" "$tmp"
    strip --strip-debug "$tmp" 2>/dev/null || true
    gzip -c "$tmp" | split -b 15M -d - "$dir/$name.so.gz.part"
    rm -f "$tmp"
    ls -l "$dir/$name.so.gz.part"* ;;
  unpack)
    mkdir -p "$B/$name"
    cat "$dir/$name.so.gz.part"* | gunzip > "$B/$name/$name.so"
    touch "$B/$name/BUILD_OK"
    ls -l "$B/$name" ;;
  *) echo "usage: $0 pack|unpack NAME DIR" >&2; exit 2 ;;
esac
