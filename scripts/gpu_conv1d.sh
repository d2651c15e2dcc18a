#!/usr/bin/env bash
# A conv1d-only batch on the GPU machine: the speed lab for the variants in $LAB_VARIANTS (comma-separated
# substrings, default "default") on half the cores while the library builds, the conv1d GPU tests, the conv1d
# benchmarks, then ncu summaries of the lab's default build (bwd_cf_b4, fwd_cl_b4). Files under $OUT as in
# gpu_final.sh.
. scripts/gpu_common.sh
( OUT=$OUT LAB_JOBS=8 timeout 200 bash scripts/lab/run_conv1d_lab.sh "${LAB_VARIANTS:-default}" > /tmp/clab.log 2>&1
  echo "conv1d lab rc=$? $(( $(date +%s) - t0 ))s" >> $L ) &
build ${MAX_JOBS:-8}
step 90 $T conv_cuda $P tests/test_conv1d.py tests/test_conv1d_gpu.py -m gpu -k "cuda"
wait
step 60 $B conv1d $P bench/bench_conv1d.py --benchmark-only -k "cuda or causal_conv1d"
[ -x /tmp/conv1d_lab_build/default/lab ] && step 120 $L ncu bash scripts/lab/ncu_conv1d_lab.sh default "bwd_cf_b4:1 fwd_cl_b4:1"
rm -f $OUT/*.md; mv $OUT/lab_conv1d_run.log /tmp/ 2>/dev/null
echo "total $(( $(date +%s) - t0 ))s" >> $L
cat $L; grep -E "passed|failed" $T | tail -8
