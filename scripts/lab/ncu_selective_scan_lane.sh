#!/usr/bin/env bash
# ncu of the selective-scan kernels (GPU machine, no torch): builds the lab binary (scripts/lab/selective_scan_lab.cu,
# production knobs unless NVFLAGS_EXTRA) and profiles one launch of each kernel in KERNELS (default: the state-lane
# forward and the time-parallel forward; also selective_scan_bwd_kernel) at one case, writing to $OUT:
# ncu_ss_<kernel>_summary.txt (speed of light, occupancy, warp stall reasons, instruction and scheduler stats) and
# ncu_ss_<kernel>_sass.csv (per-SASS samples; read with scripts/ncu_phases.py).
# Usage: [KERNELS="..."] bash scripts/lab/ncu_selective_scan_lane.sh [case, default b2-d4096-n16-l4096]
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/mk_out}; mkdir -p "$OUT"
CASE=${1:-b2-d4096-n16-l4096}
nvcc -O3 -std=c++17 -arch=sm_90a --use_fast_math --expt-relaxed-constexpr -lineinfo ${NVFLAGS_EXTRA:-} -I csrc \
  scripts/lab/selective_scan_lab.cu -o /tmp/ss_lab_ncu > /tmp/ss_lab_ncu_build.log 2>&1 || { tail -20 /tmp/ss_lab_ncu_build.log; exit 1; }
for k in ${KERNELS:-selective_scan_fwd_lane_kernel selective_scan_fwd_kernel}; do
  N="ncu --clock-control none -k regex:$k --launch-skip 3 --launch-count 1"
  F=""; [ $k = selective_scan_fwd_kernel ] && F=scan  # the time-parallel forward runs only when forced
  MK_SS_FWD_KERNEL=$F SS_LAB_CASE=$CASE timeout 150 $N --section SpeedOfLight --section Occupancy --section LaunchStats \
    --section WarpStateStats --section InstructionStats --section SchedulerStats --section ComputeWorkloadAnalysis \
    /tmp/ss_lab_ncu ncu 20 > "$OUT/ncu_ss_${k}_summary.txt" 2>&1
  echo "ncu $k summary rc=$?"
  MK_SS_FWD_KERNEL=$F SS_LAB_CASE=$CASE timeout 150 $N --section SourceCounters --page source --print-source sass --csv \
    /tmp/ss_lab_ncu ncu 20 > "$OUT/ncu_ss_${k}_sass.csv" 2>&1
  echo "ncu $k sass rc=$?"
done
