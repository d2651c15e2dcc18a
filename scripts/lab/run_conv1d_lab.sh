#!/usr/bin/env bash
# conv1d speed lab: builds every variant below in parallel (nvcc, no torch), then runs each binary once.
#   OUT=/some/dir bash scripts/lab/run_conv1d_lab.sh [variant-substring] [case-substring]
# Output: $OUT/lab_conv1d.jsonl (one JSON line per variant x case, plus {"case": "_exit"} per variant),
#         $OUT/lab_conv1d_build.log (per variant: build status, ptxas registers/spills of the bf16 kernels,
#         the tail of any compiler error). Knobs are documented in csrc/conv1d/conv1d_common.cuh.
# Variants set knobs of several independent kernel families at once, to save GPU minutes; read each case with
# its own family: fwd_cf <- FWD_CF_* / FLAT_*; fwd_cl <- FWD_CL_* / CL8_* / CL_MAX_TL; bwd_cf <- BWD_CF_* / BWD_FLAT_*;
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
  "default|"
  # bisect the forward regression b328ef7 -> now (dacf092 next-piece prefetch, e230a73 rotation, 176dc98 cap 6)
  "b328like|${P}FWD_CF_PF=1 ${P}FWD_CF_ROT=0 ${P}FWD_CF_MIN_BLOCKS=5 ${P}BWD_CF_PF=1 ${P}FWD_CL_PD=0 ${P}UPD_CPT=2"
  "cfpf1|${P}FWD_CF_PF=1 ${P}BWD_CF_PF=0 ${P}CL_MAX_TL=256 ${P}UPD_CPT=4"
  "cfrot0|${P}FWD_CF_ROT=0 ${P}BWD_CF_PERSISTENT=0 ${P}CL_MAX_TL=128 ${P}UPD_THREADS=256 ${P}UPD_CPT=4"
  "cfmb5|${P}FWD_CF_MIN_BLOCKS=5 ${P}BWD_CF_GROUP=4 ${P}BWD_CF_MIN_BLOCKS=3 ${P}BWD_CL_GROUP=16 ${P}BWD_CL_MIN_BLOCKS=3 ${P}UPD_THREADS=512 ${P}UPD_CPT=4"
  "cfpf0|${P}FWD_CF_PF=0 ${P}BWD_CF_MIN_BLOCKS=3 ${P}BWD_CL_MIN_BLOCKS=3 ${P}UPD_THREADS=64 ${P}UPD_CPT=2"
  "cfg8|${P}FWD_CF_GROUP=8 ${P}FWD_CF_MIN_BLOCKS=4 ${P}BWD_CF_GROUP=1 ${P}BWD_CF_MIN_BLOCKS=5 ${P}BWD_CL_GROUP=4 ${P}UPD_THREADS=256 ${P}UPD_CPT=2"
  "cfg2|${P}FWD_CF_GROUP=2 ${P}FWD_CF_MIN_BLOCKS=8 ${P}BWD_CF_PERSISTENT=0 ${P}BWD_CF_GROUP=4 ${P}BWD_CF_MIN_BLOCKS=3 ${P}BWD_CL_GROUP=16 ${P}BWD_CL_MIN_BLOCKS=2 ${P}UPD_THREADS=256 ${P}UPD_CPT=8"
  # new kernels: flat channel-first forward (G chunks per lane up front), cl8 channel-last forward
  "flat2_cl8s8|${P}FWD_CF_IMPL=1 ${P}FLAT_G=2 ${P}FWD_CL_IMPL=1 ${P}CL8_STEPS=8"
  "flat4_cl8s16|${P}FWD_CF_IMPL=1 ${P}FLAT_G=4 ${P}FWD_CL_IMPL=1 ${P}CL8_STEPS=16"
  "flat8_cl8s12|${P}FWD_CF_IMPL=1 ${P}FLAT_G=8 ${P}FWD_CL_IMPL=1 ${P}CL8_STEPS=12"
  "flat4mb10_cl8s8mb4|${P}FWD_CF_IMPL=1 ${P}FLAT_G=4 ${P}FLAT_MIN_BLOCKS=10 ${P}FWD_CL_IMPL=1 ${P}CL8_STEPS=8 ${P}CL8_MIN_BLOCKS=4"
  "flat8mb8_cl8s16mb3|${P}FWD_CF_IMPL=1 ${P}FLAT_G=8 ${P}FLAT_MIN_BLOCKS=8 ${P}FWD_CL_IMPL=1 ${P}CL8_STEPS=16 ${P}CL8_MIN_BLOCKS=3"
  "flat2mb12_clpd6|${P}FWD_CF_IMPL=1 ${P}FLAT_G=2 ${P}FLAT_MIN_BLOCKS=12 ${P}FWD_CL_PD=6"
  # flat channel-first backward (G chunks of x and dy per lane up front) with the best forward knobs measured
  # (flat cf forward G 8, cl forward without L2 prefetch); run only these: bash scripts/lab/run_conv1d_lab.sh bwdflat
  "bwdflat2|${P}BWD_CF_IMPL=1 ${P}BWD_FLAT_G=2 ${P}FWD_CF_IMPL=1 ${P}FLAT_G=8 ${P}FWD_CL_PD=0"
  "bwdflat4|${P}BWD_CF_IMPL=1 ${P}BWD_FLAT_G=4 ${P}FWD_CF_IMPL=1 ${P}FLAT_G=8 ${P}FWD_CL_PD=0"
  "bwdflat8|${P}BWD_CF_IMPL=1 ${P}BWD_FLAT_G=8 ${P}FWD_CF_IMPL=1 ${P}FLAT_G=8 ${P}FWD_CL_PD=0"
  # against the defaults of 2026-11-29 (flat cf forward G 8, flat cf backward G 4, cl forward prefetch off):
  # bash scripts/lab/run_conv1d_lab.sh fin_
  "fin_default|"
  "fin_bwdflat2|${P}BWD_FLAT_G=2"
  "fin_bwdflat8|${P}BWD_FLAT_G=8"
  "fin_bwdseg|${P}BWD_CF_IMPL=0"
  "fin_cltl256|${P}CL_MAX_TL=256"
  "fin_cltl512|${P}CL_MAX_TL=512"
  "fin_clmb4|${P}FWD_CL_MIN_BLOCKS=4"
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
  case "$name" in *"$VFILTER"*) ;; *) continue ;; esac
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
