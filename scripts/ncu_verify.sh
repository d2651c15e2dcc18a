#!/usr/bin/env bash
# ncu of the verify decode path at small batch against mamba_ssm's decode kernel (GPU machine, library built):
# speed of light, occupancy, launch stats (cluster shape), warp stall reasons, scheduler and memory workload of the
# last of a few calls per case. Writes $OUT/ncu_verify.txt.
# Usage: OUT=dir bash scripts/ncu_verify.sh [cases="mamba2-1-1 mamba2-64-4"]
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/mk_out}; mkdir -p "$OUT"
F=$OUT/ncu_verify.txt
for c in ${1:-"mamba2-1-1 mamba2-64-4"}; do
  for impl in cuda mamba_ssm_decode; do
    case "$impl" in cuda) re=regex:verify;; *) re=regex:selective;; esac
    [ "$impl" = mamba_ssm_decode ] && [ "${c##*-}" != 1 ] && continue
    echo "######## $c $impl" >>"$F"
    timeout 120 ncu --clock-control none -k "$re" --launch-skip 6 --launch-count 1 \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section SchedulerStats --section MemoryWorkloadAnalysis \
      python3 scripts/profile_verify.py --one "$c" --impls "$impl" >>"$F" 2>&1
    echo "ncu $c $impl rc=$?" >>"$F"
  done
done
