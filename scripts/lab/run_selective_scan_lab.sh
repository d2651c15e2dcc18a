#!/usr/bin/env bash
# GPU speed lab of the selective scan (no torch): compiles scripts/lab/selective_scan_lab.cu once per knob
# variant (scripts/lab/selective_scan_variants.sh) IN PARALLEL, then runs each binary (3 cases, timed, checked
# against naive fp32 references), appending one JSON line per (variant, case) to $OUT/lab_selective_scan.jsonl.
#   OUT=/some/dir scripts/lab/run_selective_scan_lab.sh [variant ...]      (default: all variants)
# Env: REPS (timed reps per measurement, >= 20; 30), SS_LAB_CASE (run one case by name), NVCC (nvcc),
# ARCH (sm_90a). Compile errors and each kernel's ptxas register/spill line: $OUT/lab_selective_scan_build.log.
# A variant "head" (the kernels of git HEAD, when git is available) is added when LAB_HEAD=1.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUT=${OUT:-/tmp/selective_scan_lab_out}
mkdir -p "$OUT"
REPS=${REPS:-30}
NVCC=${NVCC:-nvcc}
ARCH=${ARCH:-sm_90a}
. scripts/lab/selective_scan_variants.sh
names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${VARIANT_NAMES[@]}")
BUILD=$(mktemp -d /tmp/ss_lab_build.XXXXXX)
JSON="$OUT/lab_selective_scan.jsonl"
BLOG="$OUT/lab_selective_scan_build.log"
NVFLAGS="-O3 -std=c++17 -arch=$ARCH --use_fast_math --expt-relaxed-constexpr -lineinfo -Xptxas -v -diag-suppress 607"
t_start=$(date +%s)


if [ "${LAB_HEAD:-0}" = 1 ] && git -C "$ROOT" rev-parse HEAD >/dev/null 2>&1; then
  mkdir -p "$BUILD/head/csrc/selective_scan" "$BUILD/head/csrc/common"
  for f in selective_scan.h selective_scan_fwd_kernel.cuh selective_scan_bwd_kernel.cuh; do
    git -C "$ROOT" show "HEAD:csrc/selective_scan/$f" > "$BUILD/head/csrc/selective_scan/$f"
  done
  cp "$ROOT"/csrc/common/*.h "$BUILD/head/csrc/common/"
  VARIANTS[head]=""
  names=(head "${names[@]}")
fi

for v in "${names[@]}"; do
  if [ -z "${VARIANTS[$v]+x}" ]; then echo "unknown variant $v" >> "$BLOG"; continue; fi
  inc="$ROOT/csrc"; [ "$v" = head ] && inc="$BUILD/head/csrc"
  # shellcheck disable=SC2086
  ( timeout 240 "$NVCC" $NVFLAGS ${VARIANTS[$v]} -I "$inc" "$ROOT/scripts/lab/selective_scan_lab.cu" \
      -o "$BUILD/lab_$v" > "$BUILD/build_$v.log" 2>&1; echo $? > "$BUILD/rc_$v" ) &
done
wait
for v in "${names[@]}"; do
  [ -f "$BUILD/rc_$v" ] || continue
  rc=$(cat "$BUILD/rc_$v")
  echo "== $v [${VARIANTS[$v]}] nvcc rc=$rc" >> "$BLOG"
  if [ "$rc" != 0 ]; then
    tail -c 4000 "$BUILD/build_$v.log" >> "$BLOG"
  else
    grep -A3 -E "Compiling entry function '.*selective_scan_(fwd|bwd)_kernelI13__nv_bfloat16Lb1ELb1E" \
      "$BUILD/build_$v.log" | grep -E "Compiling|registers|spill" | sed -e 's/.*selective_scan_\(...\)_kernel.*/  \1:/' >> "$BLOG"
  fi
done
echo "build: $(( $(date +%s) - t_start )) s" >> "$BLOG"

run_one() {  # name label
  local v=$1 label=$2 rc
  [ -x "$BUILD/lab_$v" ] || { echo "{\"variant\": \"$label\", \"error\": \"no binary (build failed)\"}" >> "$JSON"; return; }
  timeout 60 "$BUILD/lab_$v" "$label" "$REPS" >> "$JSON" 2>> "$OUT/lab_selective_scan_run.log"
  rc=$?
  [ $rc = 0 ] || echo "{\"variant\": \"$label\", \"error\": \"exit $rc (1: a check failed; 124: timeout; see lab_selective_scan_run.log)\"}" >> "$JSON"
}
for v in "${names[@]}"; do
  run_one "$v" "$v"
done
if [ -x "$BUILD/lab_default" ]; then run_one default default_again; fi
echo "total: $(( $(date +%s) - t_start )) s" >> "$BLOG"
rm -rf "$BUILD"
