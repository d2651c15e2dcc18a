#!/usr/bin/env bash
# ncu profile of one verify kernel launch per (case, impl) (GPU machine; after the library is built): our kernel
# (impl cuda) and, at k = 1, mamba_ssm's decode kernel (impl mamba_ssm_decode) for comparison. Writes to $OUT:
#   ncu_<case>_<impl>_summary.txt  (speed of light, occupancy, launch stats incl. cluster shape, warp stall
#                                   reasons, instruction counts, scheduler, memory workload)
#   ncu_<case>_<impl>_sass.csv     (per-SASS-instruction executed counts, for where the instructions go)
# Usage: bash scripts/ncu_verify.sh [cases="mamba2-1-1 mamba2-64-4"] [impls="cuda mamba_ssm_decode"]
# NCU_VERIFY_LAUNCHES=2: two consecutive launches (the split pair: prep and stream kernel of one call);
# NCU_VERIFY_SKIP (default 6): launches skipped first (14 with the pair at k 4: the 7th call, where every unit folds).
# NCU_VERIFY_TAG: appended to the file names (ncu_<case>_<impl><tag>_*), so that two runs of one case can sit side by
# side (gpu_ncu.sh's NCU_VERIFY_FOLD=1: the folding call as _fold).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/mk_out}; mkdir -p "$OUT"
for c in ${1:-mamba2-1-1 mamba2-64-4}; do
  for impl in ${2:-cuda mamba_ssm_decode}; do
    [ "$impl" = mamba_ssm_decode ] && [ "${c##*-}" != 1 ] && continue  # its decode kernel is one token
    case "$impl" in cuda) kre=verify;; *) kre=selective;; esac
    N="ncu --clock-control none -k regex:$kre --launch-skip ${NCU_VERIFY_SKIP:-6} --launch-count ${NCU_VERIFY_LAUNCHES:-1}"
    P="python3 scripts/profile_verify.py --one $c --impls $impl"
    timeout 120 $N --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section InstructionStats --section SchedulerStats --section MemoryWorkloadAnalysis \
      $P > "$OUT/ncu_${c}_${impl}${NCU_VERIFY_TAG:-}_summary.txt" 2>&1
    echo "ncu $c $impl summary rc=$?"
    timeout 120 $N --section SourceCounters --page source --print-source sass --csv \
      $P > "$OUT/ncu_${c}_${impl}${NCU_VERIFY_TAG:-}_sass.csv" 2>&1
    echo "ncu $c $impl sass rc=$?"
  done
done
