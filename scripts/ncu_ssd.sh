#!/usr/bin/env bash
# ncu profile of single chunked-SSD Triton kernel launches (GPU machine; after the library is built): where a
# kernel's time goes (occupancy, warp stall reasons, scheduler issue, memory workload) and its per-SASS stall
# samples. Writes to $OUT:
#   ncu_ssd_<shape>_<kernel>_summary.txt, ncu_ssd_<shape>_<kernel>_sass.csv
# Usage: bash scripts/ncu_ssd.sh [shape=b4-l4096-h80-p64-n128-g1] [kernels="_ssd_chunk_scan_kernel ..."]
# Backward kernels (names with bwd) are profiled inside a forward + backward.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/mk_out}; mkdir -p "$OUT"
shape=${1:-b4-l4096-h80-p64-n128-g1}
for kn in ${2:-_ssd_chunk_scan_kernel _ssd_state_fwd_kernel _ssd_bwd_dx_kernel}; do
  bwd=""; case "$kn" in *bwd*) bwd=--bwd;; esac
  N="ncu --clock-control none -k regex:$kn\$ --launch-skip 3 --launch-count 1"
  P="python3 scripts/profile_ssd.py --one $shape --impls triton $bwd"
  timeout 150 $N --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    --section InstructionStats --section SchedulerStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
    $P > "$OUT/ncu_ssd_${shape}_${kn}_summary.txt" 2>&1
  echo "ncu ssd $shape $kn summary rc=$?"
  timeout 150 $N --section SourceCounters --section WarpStateStats --page source --print-source sass --csv \
    $P > "$OUT/ncu_ssd_${shape}_${kn}_sass.csv" 2>&1
  echo "ncu ssd $shape $kn sass rc=$?"
done
