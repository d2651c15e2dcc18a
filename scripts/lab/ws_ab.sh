#!/usr/bin/env bash
# GPU machine (~350 s with the build, ~500 with WS_BENCH=1): verify_m2ws_kernel and the prep kernel's ring lab against
# the split pair. The verify GPU tests (the automatic choice; the split pair with MK_VERIFY_PREP_RING=all; ws forced
# with MK_VERIFY_WS_PIPE at each value in WS_AB), then b64 k2 / k4 / k8 graph calls and kernel times
# (scripts/sweep_verify.py) of the automatic choice, of the pair with MK_VERIFY_PREP_RING=all (session 53) and of ws
# at each MK_VERIFY_WS_PIPE value in WS_AB ("0 1"), alternating, WS_ROUNDS rounds (2), then ws_stamps.py at b64 k4 for
# each value in WS_AB_STAMPS ("0"). WS_BENCH=1: then the verify bench's graph rows (bench/bench_verify.py) into $OUT.
# Files under $OUT; NOBUILD=1: the library is already built. (Session 52's runs also switched MK_VERIFY_WS_AHEAD and
# MK_VERIFY_WS_STG, since removed: bench/results/lab/verify-ws-prep-ahead-2026-12-06.)
. scripts/gpu_common.sh
[ "${NOBUILD:-0}" = 1 ] || build 16
step 90 $OUT/tests_default.log verify_default bash -c "$P $VT"
step 90 $T verify_split_ringall bash -c "MK_VERIFY_KERNEL=split MK_VERIFY_PREP_RING=all $P $VT"
for v in ${WS_AB:-0 1}; do
  step 150 $T verify_ws_pipe$v bash -c "MK_VERIFY_KERNEL=ws MK_VERIFY_WS_PIPE=$v $P $VT"
done
C=${WS_CASES:-mamba2-64-4,mamba2-64-2,mamba2-64-8}
for i in $(seq ${WS_ROUNDS:-2}); do
  step 45 $OUT/ws.log auto env MK_VERIFY_KERNEL=auto python3 scripts/sweep_verify.py --cases $C --rings 16 \
    --calls 840 --tag auto
  step 45 $OUT/ws.log ringall env MK_VERIFY_KERNEL=auto MK_VERIFY_PREP_RING=all python3 scripts/sweep_verify.py \
    --cases $C --rings 16 --calls 840 --tag ringall
  for v in ${WS_AB:-0 1}; do
    step 45 $OUT/ws.log ws_pipe$v env MK_VERIFY_KERNEL=ws MK_VERIFY_WS_PIPE=$v python3 scripts/sweep_verify.py \
      --cases $C --rings 16 --calls 840 --tag ws_pipe$v
  done
done
for v in ${WS_AB_STAMPS:-0}; do
  step 70 $OUT/stamps.log stamps_pipe$v env MK_VERIFY_WS_PIPE=$v python3 scripts/lab/ws_stamps.py \
    --case mamba2-64-4 --calls 14 --pairs 3
done
[ "${WS_BENCH:-0}" = 1 ] && step 150 $B verify_bench $P bench/bench_verify.py --benchmark-only -k \
  "(bench_verify_ours and cuda and graph and not k2) or (naive and mamba2 and k4 and graph) or decode_mamba_ssm"
nvidia-smi --query-gpu=name --format=csv >> $L
echo "total $(( $(date +%s) - t0 ))s" >> $L
