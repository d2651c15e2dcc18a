#!/usr/bin/env bash
# SSD family only, on the GPU machine, in two parts that each fit one 10-minute device call (files under $OUT).
#   SSD_PART=time (default): build, the CUDA backward's own GPU tests, per-kernel times of one forward
#     (scripts/profile_ssd.py, CUDA vs Triton, then each run-time variant of the chunk pipeline) and the SSD benches
#     of the CUDA path against Triton and mamba_ssm (forward kernel alone, backward alone, forward, forward+backward).
#   SSD_PART=sweep: build, the Triton block-config sweeps not yet measured (the forward scan at chunk 256 with 2
#     warps, the backward kernels with fewer stages / warps; one kernel alone per config), the Triton forward and forward+backward at chunk 256 / 128 (defaults), every Triton kernel of one
#     forward / backward alone, and a profile of one Triton forward + backward. SWEEP_ALL=1: every sweep entry.
#   SSD_PART=test: build, the CUDA backend's GPU tests against the reference (default and each non-default variant),
#     and a compute-sanitizer memcheck of one forward and one backward call.
#   (Next: SSD_PART=select with the BENCH_K of bench/notes/chunked_ssd.md, "Session 10 ... Next".)
#   SSD_PART=full: build, every GPU test of tests/test_ssd_gpu.py and tests/test_ssd_fused_gpu.py (FULL_S s, 330);
#     XDIST=N: N pytest-xdist workers (405 tests: ~260 s for 192 of them at 12 workers on an H100; 10 workers there
#     to stay clear of the float64 references' memory); FULL_K: a -k piece.
#   Any part: HOST_TIME=1 / DISPATCH_TESTS=1 (see the end of this script).
#   SSD_PART=select: build, bench_ssd.py / bench_ssd_configs.py entries matching $BENCH_K, then tests/test_ssd_gpu.py GPU tests matching $TEST_K
#     (either may be empty: skipped).
#   SSD_PART=walk (written in session 36 for the next one, ~300 s): the F2 speed lab's four builds in the background
#     (scripts/lab/run_ssd_ring_lab.sh) while the library builds; the head-walk GPU tests (walk stages in every
#     variant, the ring with cp.async and TMA fills, NaN sequences, the one-launch K0 + K1); the lab's runs (F2 with
#     its fills / stores left out, cp.async and TMA rings); profiles of MK_SSD_PREP_ONE_LAUNCH 0 / 1 alternating.
#   SSD_PART=failure (~400 s with the build): the intermittent "unspecified launch failure" of F2's TMA-filled ring
#     (bench/notes/chunked_ssd_2.md, sessions 37-39; session 42: a parity wait aliasing a phase two behind, fixed by
#     two barriers a stage): the head-walk GPU tests, then scripts/stress_ssd.py --batch 20 (forwards back to back
#     behind a GPU spin: the mode that failed soonest) up to $STRESS_CALLS (12,000) calls each: session 37's defaults
#     (TMA ring, PDL, one-launch K0 + K1: failed after 340-4,020 calls in session 39), the TMA ring alone and with
#     PDL, the defaults; then F2 profiled with the cp.async / TMA ring alternating (STRESS_SHORT=1: session 37's
#     defaults twice and the TMA ring alone, no profiles). Each stress line says "N calls" or "failed, seen after N
#     calls".
#   SSD_PART=oneteam (~120 s): the lab of the fused design's output team (MK_SSD_WALK_RING_TEAMS=1: F2's ring with
#     one team of 8 warps, docs/ssd_fused_walk_design.md): its GPU walk tests, then F2 profiled with it and without,
#     alternating, two rounds ("ssd_scan_ring_kernel" lines: <bf16, 1> the one-team kernel, <bf16, 2> the default).
#   SSD_PART=anchor (written in session 45, ~500 s with the build): scripts/lab/ssd_anchor_method.py (anchors.md's
#     do_bench method: mamba_ssm and ours, z / no z), the bench's forward rows with and without z, then the GPU tests
#     of F1 as a dependent launch (MK_SSD_STATE_PDL), the one-launch prep and back-to-back forwards.
#   SSD_PART=labs (session 45, ~400 s with the build): the ring lab's builds (variants 0 / 16 / 64: F2's silu by two
#     MUFU / tanh.approx / one MUFU and Newton steps) beside the library's and their runs; profiles (--wall) with
#     MK_SSD_STATE_PDL = 0 / 1 in alternating processes, two rounds (~300 s). (Session 47 removed the side-stream K1
#     lab, MK_SSD_PREP_SIDE, that this part also profiled: bench/notes/chunked_ssd_2.md.)
#   SSD_PART=fused (~330 s with the build): the fused F1 + F2 walk lab (csrc/ssd/ssd_fused_walk_kernel.cuh, chunk 64,
#     docs/ssd_fused_walk_design.md lab step 1): its GPU tests against the reference, scripts/lab/ssd_fused_lab.py
#     (checks against the library's forward, times both alternating, kernel tables), 4,000 forwards back to back through
#     the fused walk (scripts/stress_ssd.py with MK_SSD_FUSED_WALK=1: its hand-off spins must never hang or differ),
#     then ncu of one fused walk launch (summary and per-SASS samples, read with scripts/ncu_phases.py) with the
#     in-walk C B^T and with its causal part on wgmma too (~150 s more). FUSED_STRESS=0: no stress run; FUSED_NCU:
#     the ncu variants (default "1 wg"; empty: none).
# NOBUILD=1: the library is already built in this tree (a second script in the same call).
. scripts/gpu_common.sh
# ab_prof NAME VAR LIMIT V...: profile_ssd.py (Triton pipeline, chunk 256) with VAR=V for each V in alternating
# processes, two rounds, each limited to LIMIT s; logs $OUT/prof_NAME<V>.log.
ab_prof() { local name=$1 var=$2 lim=$3; shift 3
  for i in 1 2; do
    for v in "$@"; do
      step $lim $OUT/prof_$name$v.log prof_$name$v env $var=$v python3 scripts/profile_ssd.py --impls triton \
        --chunks 256 --reps 10
    done
  done; }
if [ "${SSD_PART:-time}" = labs ]; then
  ( LAB_PHASE=build LAB_VARIANTS="0 16 64" LAB_TMA=1 OUT=$OUT timeout 240 bash scripts/lab/run_ssd_ring_lab.sh
    echo "ring lab build rc=$? $(( $(date +%s) - t0 ))s" >> $L ) &
  LPID=$!
fi
if [ "${SSD_PART:-time}" = walk ]; then
  ( LAB_PHASE=build OUT=$OUT timeout 240 bash scripts/lab/run_ssd_ring_lab.sh
    echo "ring lab build rc=$? $(( $(date +%s) - t0 ))s" >> $L ) &
  LPID=$!
fi
[ "${NOBUILD:-0}" = 1 ] || build 16
if [ "${SSD_PART:-time}" = walk ]; then
step 240 $T ssd_walk_tests $P tests/test_ssd_gpu.py -m gpu -k "walk_stages or nan_sequence or prep_one or back_to_back"
tail -3 $T >> $L
wait "$LPID"
step 120 $L ring_lab env LAB_PHASE=run OUT=$OUT bash scripts/lab/run_ssd_ring_lab.sh 2
cat $OUT/ssd_ring_lab.txt >> $L
ab_prof prep MK_SSD_PREP_ONE_LAUNCH 40 0 1
grep -h "us of kernels" $OUT/prof_prep0.log $OUT/prof_prep1.log >> $L
elif [ "${SSD_PART:-time}" = failure ]; then
step 240 $T ssd_walk_tests $P tests/test_ssd_gpu.py -m gpu -k "walk_stages or nan_sequence or prep_one or back_to_back"
tail -3 $T >> $L
S="python3 scripts/stress_ssd.py --calls ${STRESS_CALLS:-12000} --batch 20"
T37="MK_SSD_WALK_RING_TMA=1 MK_SSD_WALK_PDL=1 MK_SSD_PREP_ONE_LAUNCH=1"
step 70 $OUT/stress.log tma_ring_s37 env $T37 $S
step 50 $OUT/stress.log tma_ring env MK_SSD_WALK_RING_TMA=1 $S
if [ "${STRESS_SHORT:-0}" = 0 ]; then
step 50 $OUT/stress.log tma_ring_pdl env MK_SSD_WALK_RING_TMA=1 MK_SSD_WALK_PDL=1 $S
step 50 $OUT/stress.log defaults $S
fi
step 70 $OUT/stress.log tma_ring_s37_again env $T37 $S
grep -h "^stress" $OUT/stress.log >> $L
if [ "${STRESS_SHORT:-0}" = 0 ]; then
ab_prof ringtma MK_SSD_WALK_RING_TMA 40 0 1
grep -h "ssd_scan_ring\|us of kernels" $OUT/prof_ringtma0.log $OUT/prof_ringtma1.log >> $L
fi
elif [ "${SSD_PART:-time}" = oneteam ] || [ "${SSD_PART:-time}" = fused ]; then
if [ "${SSD_PART:-time}" = fused ]; then
step 120 $T fused_tests $P tests/test_ssd_fused_gpu.py -m gpu
tail -3 $T >> $L
step 90 $OUT/fused_lab.log fused_lab python3 scripts/lab/ssd_fused_lab.py
grep -h "^check\|^time\|^kernels" $OUT/fused_lab.log >> $L
if [ "${FUSED_STRESS:-1}" = 1 ]; then
step 60 $OUT/stress.log fused_stress env MK_SSD_FUSED_WALK=1 python3 scripts/stress_ssd.py --calls 4000 --batch 20
grep -h "^stress" $OUT/stress.log >> $L
fi
# ncu of one fused walk launch at shape 1, the in-walk C B^T (cb1) and with its causal part on wgmma (wg): summary,
# per-SASS samples
for cb in ${FUSED_NCU-1 wg}; do
  N="ncu --clock-control none -k regex:ssd_fused_walk_kernel --launch-skip 2 --launch-count 1"
  E="env MK_SSD_FUSED_CB=1 MK_SSD_FUSED_CAUSAL_WG=$([ $cb = wg ] && echo 1 || echo 0)"
  step 100 $OUT/ncu_fused_cb${cb}_summary.txt ncu_fused_cb$cb $E $N --section SpeedOfLight \
    --section Occupancy --section LaunchStats --section WarpStateStats --section InstructionStats \
    --section SchedulerStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
    python3 scripts/lab/ssd_fused_one.py
  step 100 $OUT/ncu_fused_cb${cb}_sass.csv ncu_fused_sass_cb$cb $E $N --section SourceCounters \
    --section WarpStateStats --page source --print-source sass --csv python3 scripts/lab/ssd_fused_one.py
done
else
step 60 $T oneteam_tests $P tests/test_ssd_gpu.py -m gpu -k "1team"
tail -3 $T >> $L
ab_prof teams MK_SSD_WALK_RING_TEAMS 25 2 1
grep -h "ssd_scan_ring_kernel\|us of kernels" $OUT/prof_teams2.log $OUT/prof_teams1.log >> $L
fi
elif [ "${SSD_PART:-time}" = anchor ]; then
# session 45's question: which configuration anchors.md's 0.694 ms is (do_bench, z / no z), and the bench's forward
# rows with and without z in the harness; then the side-stream K1 / F1-as-dependent labs' GPU tests
step 150 $OUT/anchor_method.log anchor_method python3 scripts/lab/ssd_anchor_method.py --rounds 2
grep -h "do_bench\|H[12]" $OUT/anchor_method.log >> $L
step 200 $B ssd_anchor_bench $P bench/bench_ssd.py --benchmark-only -k \
  "bench_ssd_fwd_nogate or (bench_ssd[ and fwd- and (mamba_kernels:triton or mamba_ssm))"
step 120 $T ssd_lab_tests $P tests/test_ssd_gpu.py -m gpu -k "state_pdl or prep_one or back_to_back"
tail -3 $T >> $L
elif [ "${SSD_PART:-time}" = labs ]; then
# F2's silu with one MUFU (ring lab bits 16 / 64 against 0), then F1 as a programmatic dependent of K0 + K1
# (MK_SSD_STATE_PDL), profiled in alternating processes
wait "$LPID"
step 90 $L ring_lab env LAB_PHASE=run LAB_VARIANTS="0 16 64" LAB_TMA=1 OUT=$OUT bash scripts/lab/run_ssd_ring_lab.sh 2
cat $OUT/ssd_ring_lab.txt >> $L
for i in 1 2; do for v in 0 1; do
  step 40 $OUT/prof_side.log prof_pdl$v env MK_SSD_STATE_PDL=$v \
    python3 scripts/profile_ssd.py --impls triton --chunks 256 --reps 10 --wall
done; done
grep -h "^===\|us of kernels\|a forward call\|_ssd_c\|ssd_state\|ssd_scan" $OUT/prof_side.log >> $L
elif [ "${SSD_PART:-time}" = time ]; then
step 75 $T ssd_cuda_bwd $P tests/test_ssd_gpu.py -m gpu -k "gpu_cuda_backward_runs_the_kernel or opcheck_bwd_cuda or cuda_forward"
step 60 $OUT/prof.log ssd_prof python3 scripts/profile_ssd.py --impls cuda,triton --chunks 256
step 60 $OUT/prof.log ssd_prof_bwd python3 scripts/profile_ssd.py --impls triton --chunks 256 --bwd --reps 5
# A/B of the chunk pipeline's run-time variants (ssd_chunk_kernel.cuh, chunk_knobs(); read once a process): the
# state hand-over instead of the separate state pass, and 2 / 4 heads of a group a scan CTA (C B^T shared).
step 30 $OUT/prof.log ssd_prof_ho1 env MK_SSD_HANDOVER=1 python3 scripts/profile_ssd.py --impls cuda --chunks 256
step 30 $OUT/prof.log ssd_prof_sh2 env MK_SSD_SCAN_HEADS=2 python3 scripts/profile_ssd.py --impls cuda --chunks 256
step 30 $OUT/prof.log ssd_prof_sh4 env MK_SSD_SCAN_HEADS=4 python3 scripts/profile_ssd.py --impls cuda --chunks 256
step 30 $OUT/prof.log ssd_prof_sh4_ho1 env MK_SSD_HANDOVER=1 MK_SSD_SCAN_HEADS=4 python3 scripts/profile_ssd.py \
  --impls cuda --chunks 256
step 220 $B ssd_bench $P bench/bench_ssd.py --benchmark-only -k \
  "(cuda_fwd_kernel and mamba_kernels:cuda- and 256) or bench_ssd_cuda_bwd or (bench_ssd[ and (mamba_kernels:cuda- or (fwd- and (triton or mamba_ssm))))"
elif [ "${SSD_PART}" = full ]; then
# session 46: the whole SSD GPU suite (every CUDA / Triton test of tests/test_ssd_gpu.py and the fused walk lab's),
# 405 tests at ~5 s each (~30 min: more than one call; session 46's 270 s ran 56); FULL_S caps it (INT first, so
# pytest still reports what ran). To cover it over several calls, give each call a FULL_K piece (a -k expression).
# XDIST=N (session 47): N pytest-xdist workers (on the device image; the tests' time is mostly Triton compiles on the
# host's 16 cores); -rA lists every passed test's id in the log's summary.
X=""; [ "${XDIST:-0}" -gt 0 ] && X="-rA -p xdist -n $XDIST"
step ${FULL_S:-330} $T ssd_full $P $X --durations=12 tests/test_ssd_gpu.py tests/test_ssd_fused_gpu.py -m gpu \
  ${FULL_K:+-k "$FULL_K"}
elif [ "${SSD_PART}" = select ]; then
[ -n "${BENCH_K:-}" ] && step ${BENCH_S:-200} $B ssd_select_bench $P bench/bench_ssd.py bench/bench_ssd_configs.py --benchmark-only \
  -k "$BENCH_K"
[ -n "${TEST_K:-}" ] && step ${TEST_S:-200} $T ssd_select_tests $P -v tests/test_ssd_gpu.py -m gpu -k "$TEST_K"
elif [ "${SSD_PART}" = sweep ]; then
if [ "${SWEEP_ALL:-0}" = 1 ]; then F="chunk_scan_configs or state_fwd_configs"; W="bwd_configs"
else F="chunk_scan_configs and Q256 and (default or w2)"; W="bwd_configs and (default or st1 or st2)"; fi
step 150 $B ssd_sweep_fwd $P bench/bench_ssd_configs.py --benchmark-only -k "$F"
step 180 $B ssd_sweep_bwd $P bench/bench_ssd_configs.py --benchmark-only -k "$W"
step 120 $B ssd_chunks $P bench/bench_ssd.py bench/bench_ssd_configs.py --benchmark-only -k \
  "(triton_chunk and 128) or (bench_ssd[ and triton) or bench_ssd_kernels"
# every kernel of one Triton forward + backward through autograd (torch's zero fills / sums / casts included)
step 60 $OUT/prof.log ssd_prof_bwd python3 scripts/profile_ssd.py --impls triton --chunks 256 --bwd --reps 5
else
step 200 $T ssd_cuda $P --durations=8 tests/test_ssd_gpu.py -m gpu -k "gpu_vs_ref and cuda"
step 60 $T ssd_cuda_ho1 env MK_SSD_HANDOVER=1 $P tests/test_ssd_gpu.py -m gpu -k "gpu_vs_ref and cuda and bf16"
step 60 $T ssd_cuda_sh2 env MK_SSD_SCAN_HEADS=2 $P tests/test_ssd_gpu.py -m gpu -k "gpu_vs_ref and cuda and bf16"
step 60 $T ssd_cuda_sh4 env MK_SSD_SCAN_HEADS=4 $P tests/test_ssd_gpu.py -m gpu -k "gpu_vs_ref and cuda and bf16"
# Test ids are e.g. [dense-bf16] / [bf16]: select by those, or the sanitizer runs nothing.
step 90 $OUT/sanitizer.log ssd_sanitizer compute-sanitizer --tool memcheck --print-limit 5 python3 -m pytest -q \
  -p no:cacheprovider tests/test_ssd_gpu.py -m gpu -k "(gpu_cuda_backward_runs_the_kernel and dense-bf16) or (strided_inputs and bf16)"
fi
# any part: HOST_TIME=1 the eager forward's host time by piece; DISPATCH_TESTS=1 tests/test_dispatch.py's GPU cases
# (the eager path past the custom ops, session 47)
[ "${HOST_TIME:-0}" = 1 ] && step 60 $OUT/host.log ssd_host_time python3 scripts/lab/ssd_host_time.py
[ "${DISPATCH_TESTS:-0}" = 1 ] && step 150 $T dispatch_tests $P tests/test_dispatch.py -m gpu && tail -2 $T >> $L
echo "ssd total $(( $(date +%s) - t0 ))s" >> $L
if [ "${SSD_PART:-time}" = walk ] || [ "${SSD_PART:-time}" = failure ] || [ "${SSD_PART:-time}" = oneteam ] ||
   [ "${SSD_PART:-time}" = fused ] || [ "${SSD_PART:-time}" = anchor ] || [ "${SSD_PART:-time}" = labs ]; then
  pack_out; fi  # (all files as $OUT/all.tgz: run.log inside)
