#!/usr/bin/env bash
# ncu profile of one verify_m2 kernel launch (GPU machine; after the library is built). Writes to $OUT:
#   ncu_<case>_summary.txt  (speed of light, occupancy, warp stall reasons, instruction counts)
#   ncu_<case>_sass.csv     (per-SASS-instruction executed counts, for where the instructions go)
# Usage: bash scripts/ncu_verify.sh [case=mamba2-64-4] [kernel regex=verify_m2]
set -u
OUT=${OUT:-/tmp/mk_out}; mkdir -p "$OUT"
CASE=${1:-mamba2-64-4}; KRE=${2:-verify_m2}
N="ncu --clock-control none -k regex:$KRE --launch-skip 5 --launch-count 1"
timeout 120 $N --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
  --section InstructionStats --section SchedulerStats --section MemoryWorkloadAnalysis \
  python3 scripts/profile_verify.py --one "$CASE" --impls cuda > "$OUT/ncu_${CASE}_summary.txt" 2>&1
echo "ncu summary rc=$?"
timeout 120 $N --section SourceCounters --page source --print-source sass --csv \
  python3 scripts/profile_verify.py --one "$CASE" --impls cuda > "$OUT/ncu_${CASE}_sass.csv" 2>&1
echo "ncu sass rc=$?"
