#!/usr/bin/env bash
# Verify family only, on the GPU machine: build, GPU tests (automatic choice; the tensor-core kernel, the one-token
# decode kernel forced), per-kernel timings (scripts/profile_verify.py) of the automatic choice and of mamba_ssm's
# decode kernel, the verify benchmarks. Files under $OUT. NOBUILD=1: the library is already built in this tree.
# ncu of the decode path: NCU_PARTS=verify bash scripts/gpu_ncu.sh (its files packed into one archive).
# VERIFY_PROBE=1: first the block-structure streaming probe (scripts/lab/verify_stream_probe.cu: how fast 2048
# 64 KB tiles stream by block structure alone, no library) into $OUT/probe.log.
# VERIFY_PART=splitring (~400 s with the build; written in session 43 without a GPU): the lab switch
# MK_VERIFY_SPLIT_RING=1|2 (the committed ring tokens' term of y in the stream kernel, while its tile is in flight,
# instead of in the prep kernel ahead of it; 2: its ring rows loaded ahead of the tile): the verify GPU tests with
# 1 and with 2, then scripts/sweep_verify.py (b64 k2 / k4 / k8, ring 16) with 0 / 1 / 2 in alternating processes,
# two rounds; lines "ring<mode> <case> ring 16: mean ..." in $OUT/sweep_ring*.log.
. scripts/gpu_common.sh
if [ "${VERIFY_PART:-}" = splitring ]; then
  [ "${NOBUILD:-0}" = 1 ] || build 16
  step 90 $T verify_splitring1 bash -c "MK_VERIFY_SPLIT_RING=1 $P $VT"
  step 90 $T verify_splitring2 bash -c "MK_VERIFY_SPLIT_RING=2 $P $VT"
  for i in 1 2; do
    for v in 0 1 2; do
      step 40 $OUT/sweep_ring$v.log sweep_ring${v}_$i env MK_VERIFY_SPLIT_RING=$v python3 scripts/sweep_verify.py \
        --cases mamba2-64-4,mamba2-64-8,mamba2-64-2 --rings 16 --tag ring$v
    done
  done
  echo "total $(( $(date +%s) - t0 ))s" >> $L
  cat $L; grep -E "passed|failed" $T | tail -4; grep -h " ring 16:" $OUT/sweep_ring*.log
  exit 0
fi
if [ "${VERIFY_PROBE:-0}" = 1 ]; then
  step 60 $OUT/probe.log verify_probe bash -c "nvcc -O3 -std=c++17 -arch=sm_90a -o /tmp/verify_stream_probe \
    scripts/lab/verify_stream_probe.cu && /tmp/verify_stream_probe 2048 50"
fi
[ "${NOBUILD:-0}" = 1 ] || build 16
step 50 $T verify bash -c "$P $VT"
step 60 $T verify_tc bash -c "MK_VERIFY_KERNEL=tc $P $VT"
step 60 $T verify_decode bash -c "MK_VERIFY_KERNEL=decode $P $VT"
C=mamba2-1-1,mamba2-1-4,mamba2-16-1,mamba2-16-4,mamba2-64-1,mamba2-64-4,mamba2-64-8
step 30 $OUT/prof.log prof_auto python3 scripts/profile_verify.py --cases $C --impls cuda
step 30 $OUT/prof.log prof_decode_anchor python3 scripts/profile_verify.py --cases mamba2-1-1,mamba2-16-1,mamba2-64-1 --impls mamba_ssm_decode
step 50 $B verify_bench $P bench/bench_verify.py --benchmark-only -k "(bench_verify_ours and cuda and graph and not k2) or (naive and mamba2 and k4 and graph) or decode_mamba_ssm"
rm -f $OUT/*.md
echo "total $(( $(date +%s) - t0 ))s" >> $L
cat $L; grep -E "passed|failed" $T | tail -4
