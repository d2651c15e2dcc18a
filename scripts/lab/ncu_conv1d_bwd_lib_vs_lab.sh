#!/usr/bin/env bash
# The open question of bench/notes/causal_conv1d.md: the same channel-first backward kernel (identical SASS) runs
# 222-229 us in the torch process and 189-198 us in the lab binary, at the same instruction count and SM clock,
# with DRAM throughput 55% vs 65%. This profiles one launch of each with the memory sections side by side.
# GPU machine, after the library is built and run_conv1d_lab.sh built the `default` variant.
# Writes $OUT/ncu_bwd_lab.txt and $OUT/ncu_bwd_lib.txt.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/conv1d_lab_out}; BUILD=${LAB_BUILD:-/tmp/conv1d_lab_build}
S="--section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Chart
   --section MemoryWorkloadAnalysis_Tables --section LaunchStats --section Occupancy --section WarpStateStats
   --metrics dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_sectors_srcunit_tex_op_write.sum,lts__t_sector_hit_rate.pct,dram__cycles_elapsed.avg.per_second,smsp__inst_executed.sum"
# shellcheck disable=SC2086
LAB_REPS=3 timeout 120 ncu --clock-control none -k regex:conv1d_bwd_flat --launch-count 1 $S \
  "$BUILD/default/lab" default bwd_cf_b4 >"$OUT/ncu_bwd_lab.txt" 2>&1
echo "lab rc=$?"
# shellcheck disable=SC2086
timeout 120 ncu --clock-control none -k regex:conv1d_bwd_flat --launch-count 1 $S \
  python3 scripts/probe_conv1d_bwd.py >"$OUT/ncu_bwd_lib.txt" 2>&1
echo "lib rc=$?"
