#!/usr/bin/env bash
# conv1d speed lab: builds every variant below in parallel (nvcc, no torch), then runs each binary once.
#   OUT=/some/dir bash scripts/lab/run_conv1d_lab.sh [variant-substrings,comma-separated] [case-substring]
# Output: $OUT/lab_conv1d.jsonl (one JSON line per variant x case, plus {"case": "_exit"} per variant),
#         $OUT/lab_conv1d_build.log (per variant: build status, ptxas registers/spills of the bf16 kernels,
#         the tail of any compiler error). Knobs are documented in csrc/conv1d/conv1d_common.cuh.
# Variants set knobs of several independent kernel families at once, to save GPU minutes; read each case with
# its own family: fwd_cf <- FWD_CF_* / FLAT_*; fwd_cl <- FWD_CL_* / CL_MAX_TL; bwd_cf <- BWD_CF_* / BWD_FLAT_*;
# bwd_cl <- BWD_CL_* / CL_MAX_TL; update <- UPD_*; fwdbwd = the variant's forward + backward together.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/conv1d_lab_out}
BUILD=${LAB_BUILD:-/tmp/conv1d_lab_build}
ARCH=${LAB_ARCH:-sm_90a}
VFILTER=${1:-}
CFILTER=${2:-}
mkdir -p "$OUT" "$BUILD"
NVFLAGS="-DMK_CONV1D_LAB_MIN_INST=1 -O3 -std=c++17 --use_fast_math --expt-relaxed-constexpr -lineinfo -arch=$ARCH -I csrc"
SRCS="scripts/lab/conv1d_lab.cu csrc/conv1d/conv1d_launch.cu csrc/conv1d/conv1d_fwd_launch.cu csrc/conv1d/conv1d_bwd_launch.cu"

P=-DMK_CONV1D_
VARIANTS=(
  # the defaults (flat cf forward G 8, flat cf backward G 4, cl forward without L2 prefetch, update 256 x 2), then
  # one knob changed each; results/lab/README.md has the runs of 2026-11-29 (older variant names are explained there)
  "default|"
  "fwd_persistent|${P}FWD_CF_IMPL=0"
  "fwd_flat4|${P}FLAT_G=4"
  "fwd_mb7|${P}FLAT_MIN_BLOCKS=7"
  "fwd_mb8|${P}FLAT_MIN_BLOCKS=8"
  "bwd_flat2|${P}BWD_FLAT_G=2"
  "bwd_flat8|${P}BWD_FLAT_G=8"
  "bwd_seg|${P}BWD_CF_IMPL=0"
  "cl_tl256|${P}CL_MAX_TL=256"
  "cl_tl512|${P}CL_MAX_TL=512"
  "cl_mb4|${P}FWD_CL_MIN_BLOCKS=4"
  "cl_pd3|${P}FWD_CL_PD=3"
  "upd_128x1|${P}UPD_THREADS=128 ${P}UPD_CPT=1"
  "upd_novec|${P}UPD_VEC=0"
  "cl_mb5|${P}FWD_CL_MIN_BLOCKS=5"
  "bwd_mb5|${P}BWD_FLAT_MIN_BLOCKS=5"
  "bwd_mb8|${P}BWD_FLAT_MIN_BLOCKS=8"
  "bf16_words|${P}BF16_WORDS=1"
)

# One compile job per (variant, source), at most $LAB_JOBS (default: the core count) at a time; then one link per
# variant. A variant's defines are read from $BUILD/<name>/defs.
compile_one() {  # name, source
  local dir=$BUILD/$1 base
  base=$(basename "$2" .cu)
  # shellcheck disable=SC2046
  timeout 240 nvcc $NVFLAGS $(cat "$dir/defs") -Xptxas -v -c "$2" -o "$dir/$base.o" >"$dir/$base.log" 2>&1 ||
    { echo "compile of $2 failed or timed out (rc $?)" >>"$dir/$base.log"; rm -f "$dir/$base.o"; }
}
export -f compile_one
export BUILD NVFLAGS

t0=$(date +%s)
NAMES=()
for v in "${VARIANTS[@]}"; do
  name=${v%%|*}
  keep=0; IFS=, read -ra pats <<<"$VFILTER"; [ ${#pats[@]} = 0 ] && keep=1
  for pat in "${pats[@]}"; do case "$name" in *"$pat"*) keep=1 ;; esac; done
  [ $keep = 1 ] || continue
  rm -rf "${BUILD:?}/$name"; mkdir -p "$BUILD/$name"
  echo "${v#*|}" >"$BUILD/$name/defs"
  NAMES+=("$name")
done
for name in "${NAMES[@]}"; do for src in $SRCS; do echo "$name $src"; done; done |
  xargs -P "${LAB_JOBS:-$(nproc)}" -L 1 bash -c 'compile_one "$@"' _
for name in "${NAMES[@]}"; do
  (
    dir=$BUILD/$name; rc=0
    for src in $SRCS; do [ -f "$dir/$(basename "$src" .cu).o" ] || rc=1; done
    if [ $rc = 0 ]; then timeout 120 nvcc -arch="$ARCH" "$dir"/*.o -o "$dir/lab" >"$dir/link.log" 2>&1 || rc=1; fi
    echo $rc >"$dir/rc"
  ) &
done
wait
t1=$(date +%s)

{
  echo "build: $((t1 - t0)) s, arch $ARCH, flags $NVFLAGS"
  for v in "${VARIANTS[@]}"; do
    name=${v%%|*}; dir=$BUILD/$name
    [ -f "$dir/rc" ] || continue
    echo "== $name rc=$(cat "$dir/rc") defines: ${v#*|}"
    # ptxas: bf16 kernels only (mangled __nv_bfloat16 = 13__nv_bfloat16), registers and spills
    cat "$dir"/*.log | awk '/Compiling entry function/ {n=$0; sub(/.*function .?/, "", n); sub(/.? for .*/, "", n)}
      /bytes spill stores/ {sp=$0; sub(/.*stack frame, /, "", sp)}
      /Used [0-9]+ registers/ {r=$0; sub(/.*Used /, "", r); sub(/ registers.*/, "", r);
        if (n ~ /13__nv_bfloat16/) print "   ", n, "regs", r, sp}' | c++filt 2>/dev/null |
      sed -E 's/mamba_kernels::conv1d:://g; s/\(.*\)//' | sort -u
    if [ "$(cat "$dir/rc")" != 0 ]; then grep -h -E "error|failed" "$dir"/*.log | head -c 3000; fi
  done
} 2>&1 | head -c 200000 >"$OUT/lab_conv1d_build.log"

for v in "${VARIANTS[@]}"; do
  name=${v%%|*}; dir=$BUILD/$name
  [ -x "$dir/lab" ] || continue
  # shellcheck disable=SC2086
  timeout 60 "$dir/lab" "$name" $CFILTER >>"$OUT/lab_conv1d.jsonl" 2>>"$OUT/lab_conv1d_run.log"
  echo "{\"variant\": \"$name\", \"case\": \"_exit\", \"rc\": $?}" >>"$OUT/lab_conv1d.jsonl"
done
echo "total: $(($(date +%s) - t0)) s" >>"$OUT/lab_conv1d_build.log"
