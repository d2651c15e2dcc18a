#!/usr/bin/env bash
# GPU machine, session 52 (~400 s with the build): verify_m2ws_kernel's lab switches against the split pair. The verify
# GPU tests (the automatic choice; ws forced under each setting in WS_AB_TESTS, its variables joined by commas), then
# b64 k2 / k4 / k8 graph calls and kernel times (scripts/sweep_verify.py) of the automatic choice and of ws under each
# "ahead:pipe:stg" triple in WS_AB (MK_VERIFY_WS_AHEAD / _PIPE / _STG), alternating, WS_ROUNDS rounds (2), then
# ws_stamps.py at b64 k4 under each triple in WS_AB_STAMPS. Files under $OUT; NOBUILD=1: the library is built.
. scripts/gpu_common.sh
[ "${NOBUILD:-0}" = 1 ] || build 16
step 90 $OUT/tests_default.log verify_default bash -c "$P $VT"
for e in ${WS_AB_TESTS:-MK_VERIFY_WS_PIPE=0 MK_VERIFY_WS_PIPE=1,MK_VERIFY_WS_STG=1}; do
  step 150 $T verify_ws_$e bash -c "MK_VERIFY_KERNEL=ws $(echo $e | tr , ' ') $P $VT"
done
for i in $(seq ${WS_ROUNDS:-2}); do
  step 45 $OUT/ws.log auto env MK_VERIFY_KERNEL=auto python3 scripts/sweep_verify.py \
    --cases ${WS_CASES:-mamba2-64-4,mamba2-64-2,mamba2-64-8} --rings 16 --calls 840 --tag auto
  for v in ${WS_AB:-1:0:0 0:0:0 1:1:0 1:0:1 1:1:1}; do set -- $(echo $v | tr : ' ')
    step 45 $OUT/ws.log ws_a$1_p$2_s$3 env MK_VERIFY_KERNEL=ws MK_VERIFY_WS_AHEAD=$1 MK_VERIFY_WS_PIPE=$2 \
      MK_VERIFY_WS_STG=$3 python3 scripts/sweep_verify.py --cases ${WS_CASES:-mamba2-64-4,mamba2-64-2,mamba2-64-8} \
      --rings 16 --calls 840 --tag ws_ahead$1_pipe$2_stg$3
  done
done
for v in ${WS_AB_STAMPS:-1:0:0 1:1:1}; do set -- $(echo $v | tr : ' ')
  step 70 $OUT/stamps.log stamps_a$1_p$2_s$3 env MK_VERIFY_WS_AHEAD=$1 MK_VERIFY_WS_PIPE=$2 MK_VERIFY_WS_STG=$3 \
    python3 scripts/lab/ws_stamps.py --case mamba2-64-4 --calls 14 --pairs 3
done
nvidia-smi --query-gpu=name --format=csv >> $L
echo "total $(( $(date +%s) - t0 ))s" >> $L
