#!/usr/bin/env bash
# ncu summaries of the conv1d kernels of one speed-lab build (GPU machine; after run_conv1d_lab.sh built the
# variant). Writes $OUT/ncu_conv1d_<variant>.txt: speed of light, occupancy, launch stats, warp stall reasons,
# scheduler and memory workload per kernel launch, for the first conv1d kernels of each case below.
# Usage: OUT=dir bash scripts/lab/ncu_conv1d_lab.sh [variant=default] [cases="bwd_cf_b4:4 fwd_cl_b4:1 update_b64:1"]
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/conv1d_lab_out}; BUILD=${LAB_BUILD:-/tmp/conv1d_lab_build}
V=${1:-default}; CASES=${2:-"bwd_cf_b4:4 fwd_cl_b4:1 fwd_cf_b4:1 update_b64:1"}
F=$OUT/ncu_conv1d_$V.txt
for c in $CASES; do
  name=${c%%:*}; n=${c##*:}
  echo "######## $name (first $n conv1d launches)" >>"$F"
  LAB_REPS=3 timeout 90 ncu --clock-control none -k regex:conv1d --launch-count "$n" \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --section SchedulerStats --section MemoryWorkloadAnalysis --metrics smsp__inst_executed.sum,sm__cycles_elapsed.avg.per_second \
    "$BUILD/$V/lab" "$V" "$name" >>"$F" 2>&1
  echo "ncu $name rc=$?" >>"$F"
done
