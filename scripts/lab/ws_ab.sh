#!/usr/bin/env bash
# GPU machine (~400 s with the build, ~550 with WS_BENCH=1): verify_m2ws_kernel's variants and the prep kernel's ring
# lab against the split pair. The verify GPU tests (the automatic choice; the split pair with MK_VERIFY_PREP_RING=all;
# ws forced under each variant of WS_AB), then b64 k2 / k4 / k8 graph calls and kernel times (scripts/sweep_verify.py)
# of the automatic choice, of the pair with MK_VERIFY_PREP_RING=all and of ws under each variant, alternating,
# WS_ROUNDS rounds (2), then ws_stamps.py at b64 k4 under each variant of WS_AB_STAMPS. A variant is NAME:ENV=V[,ENV=V]
# (WS_AB: p0 / p1 MK_VERIFY_WS_PIPE=0 / 1, e0 / e1 MK_VERIFY_WS_EARLY=1 with PIPE 0 / 1; WS_AB_STAMPS: p0 and e0).
# WS_BENCH=1: then the verify bench's graph rows (bench/bench_verify.py) into $OUT. Files under $OUT; NOBUILD=1: the
# library is already built. (Session 52's runs also switched MK_VERIFY_WS_AHEAD and MK_VERIFY_WS_STG, since removed:
# bench/results/lab/verify-ws-prep-ahead-2026-12-06.)
. scripts/gpu_common.sh
[ "${NOBUILD:-0}" = 1 ] || build 16
AB=${WS_AB:-p0:MK_VERIFY_WS_PIPE=0 p1:MK_VERIFY_WS_PIPE=1 e0:MK_VERIFY_WS_EARLY=1 e1:MK_VERIFY_WS_EARLY=1,MK_VERIFY_WS_PIPE=1}
envs() { echo "${1#*:}" | tr ',' ' '; }  # NAME:A=1,B=2 -> "A=1 B=2"
step 90 $OUT/tests_default.log verify_default bash -c "$P $VT"
step 90 $T verify_split_ringall bash -c "MK_VERIFY_KERNEL=split MK_VERIFY_PREP_RING=all $P $VT"
for v in $AB; do
  step 100 $T verify_ws_${v%%:*} bash -c "env MK_VERIFY_KERNEL=ws $(envs $v) $P $VT"
done
C=${WS_CASES:-mamba2-64-4,mamba2-64-2,mamba2-64-8}
sweep() { step 45 $OUT/ws.log $1 env "${@:2}" python3 scripts/sweep_verify.py --cases $C --rings 16 --calls 840 --tag $1; }
for i in $(seq ${WS_ROUNDS:-2}); do
  sweep auto MK_VERIFY_KERNEL=auto
  sweep ringall MK_VERIFY_KERNEL=auto MK_VERIFY_PREP_RING=all
  for v in $AB; do sweep ws_${v%%:*} MK_VERIFY_KERNEL=ws $(envs $v); done
done
for v in ${WS_AB_STAMPS:-p0:MK_VERIFY_WS_PIPE=0 e0:MK_VERIFY_WS_EARLY=1}; do
  step 70 $OUT/stamps.log stamps_${v%%:*} env $(envs $v) python3 scripts/lab/ws_stamps.py --case mamba2-64-4 \
    --calls 14 --pairs 3
done
[ "${WS_BENCH:-0}" = 1 ] && step 150 $B verify_bench $P bench/bench_verify.py --benchmark-only -k \
  "(bench_verify_ours and cuda and graph and not k2) or (naive and mamba2 and k4 and graph) or decode_mamba_ssm"
nvidia-smi --query-gpu=name --format=csv >> $L
echo "total $(( $(date +%s) - t0 ))s" >> $L
