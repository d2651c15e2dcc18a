#!/usr/bin/env bash
# One end-of-session batch on the GPU machine: build, the GPU tests of every family (the verify family also with
# MK_VERIFY_KERNEL=tc, so the tensor-core kernel runs every test shape), the conv1d speed lab for the variants
# named in $LAB_VARIANTS (compiled on half the cores while the library builds), verify kernel timings, and the
# benchmarks (ours + the anchors that need no build). Every step has its own timeout and writes straight to files;
# at most 6 files stay under $OUT (8 come back). SKIP="ss ssd" (families: verify conv ss ssd) leaves out the steps of
# families a session did not touch: the whole batch takes ~560 s of the 600 s a command may run.
# ANCHOR=causal_conv1d_cuda (or selective_scan_cuda) builds that compiled anchor in the background first, unless
# .anchors/build carries it (scripts/anchor_build_pack.sh), so that the benches compare with it in the same run,
# and packs it into $OUT at the end (2 files) for the next session to carry.
. scripts/gpu_common.sh
want() { [[ " ${SKIP:-} " != *" $1 "* ]]; }
if [ -n "${ANCHOR:-}" ] && [ ! -f ".anchors/build/$ANCHOR/BUILD_OK" ]; then
  ( ANCHORS_ONLY=$ANCHOR TIMEOUT_CONV=450 TIMEOUT_SCAN=300 bash scripts/build_anchors.sh /tmp/anchors.log
    echo "anchor $ANCHOR $(tail -1 /tmp/anchors.log) $(( $(date +%s) - t0 ))s" >> $L ) &
  APID=$!
fi
if [ -n "${LAB_VARIANTS:-}" ]; then
  ( OUT=$OUT LAB_JOBS=8 timeout 200 bash scripts/lab/run_conv1d_lab.sh "$LAB_VARIANTS" > /tmp/clab.log 2>&1
    echo "conv1d lab rc=$? $(( $(date +%s) - t0 ))s" >> $L; mv $OUT/lab_conv1d_*.log /tmp/ 2>/dev/null ) &
fi
build ${MAX_JOBS:-8}
want verify && step 50 $T verify bash -c "$P $VT"
want verify && step 60 $T verify_tc bash -c "MK_VERIFY_KERNEL=tc $P $VT"
want conv && step 70 $T conv_cuda $P tests/test_conv1d.py tests/test_conv1d_gpu.py -m gpu -k "cuda"
want ss && step 150 $T ss_cuda $P tests/test_selective_scan.py tests/test_selective_scan_gpu.py -m gpu -k "cuda"
want ss && step 90 $T ss_cuda_nospec env MK_SS_LANE_SPEC=0 $P tests/test_selective_scan_gpu.py -m gpu -k "cuda and forward"
want ss && step 150 $T ss_triton $P tests/test_selective_scan.py tests/test_selective_scan_gpu.py -m gpu -k "triton"
want ssd && step 80 $T ssd $P tests/test_ssd_gpu.py -m gpu -k "(bf16 and l1000) or opcheck or sync_free"
[ -n "${APID:-}" ] && wait "$APID"  # the benches below compare with the anchor
want verify && step 30 $OUT/prof.log verify_prof python3 scripts/profile_verify.py --cases mamba2-1-4,mamba2-64-4 --impls cuda
want verify && step 50 $B verify $P bench/bench_verify.py --benchmark-only -k "$VB"
want conv && step 35 $B conv1d $P bench/bench_conv1d.py --benchmark-only -k "cuda or causal_conv1d"
want ss && step 35 $B selective_scan $P bench/bench_selective_scan.py --benchmark-only -k "cuda or mamba_ssm"
want ssd && step 170 $B ssd $P bench/bench_ssd.py --benchmark-only -k "(bench_ssd and not configs and not bench_ssd_kernels and not small and not fla) or legacy"
wait
[ -n "${APID:-}" ] && [ -f ".anchors/build/$ANCHOR/BUILD_OK" ] && bash scripts/anchor_build_pack.sh pack "$ANCHOR" $OUT >> $L 2>&1
rm -f $OUT/*.md
echo "total $(( $(date +%s) - t0 ))s" >> $L
cat $L; grep -E "passed|failed" $T | tail -8
