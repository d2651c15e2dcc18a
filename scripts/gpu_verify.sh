#!/usr/bin/env bash
# Verify family only, on the GPU machine: build, GPU tests (automatic choice; the tensor-core kernel, the one-token
# decode kernel forced), per-kernel timings (scripts/profile_verify.py) of the automatic choice and of mamba_ssm's
# decode kernel, the verify benchmarks. Files under $OUT. NOBUILD=1: the library is already built in this tree.
# ncu of the decode path: NCU_PARTS=verify bash scripts/gpu_ncu.sh (its files packed into one archive).
# VERIFY_PROBE=1: first the block-structure streaming probe (scripts/lab/verify_stream_probe.cu: how fast 2048
# 64 KB tiles stream by block structure alone, no library) into $OUT/probe.log.
# VERIFY_PART=k1: the verify GPU tests (K1_TESTS=0: not) and the bench's one-token rows only.
# VERIFY_PART=declast: the one-token decode kernel's last-arrival lab (below) instead of the default sequence.
# VERIFY_PART=offsets: the one-token decode kernels with 32-bit base offsets against int64 (session 48).
# VERIFY_PART=tileearly: the split stream kernel's first-wave tiles before griddepcontrol.wait, A/B (session 55).
# VERIFY_PART=basetree: A/B of this tree against the checkouts at $BASE_TREES and this tree + each of $BASE_PATCHES.
# VERIFY_PART=rows: the verify GPU tests (ROWS_TESTS=0: not), the bench's verify graph rows, one tile_early A/B round.
# VERIFY_PART=prepkt: the verify GPU tests with MK_VERIFY_PREP_KT=0 (the generic prep kernel), the bench's verify
# graph rows at the default, then b64 k4 / k2 / k8 graph calls with the switch off / on, alternating, two rounds
# (sessions 56-57; the fixed-k prep kernels are the default since session 57).
. scripts/gpu_common.sh
if [ "${VERIFY_PROBE:-0}" = 1 ]; then
  step 60 $OUT/probe.log verify_probe bash -c "nvcc -O3 -std=c++17 -arch=sm_90a -o /tmp/verify_stream_probe \
    scripts/lab/verify_stream_probe.cu && /tmp/verify_stream_probe 2048 50"
fi
if [ "${VERIFY_PART:-}" = basetree ]; then
  # A/B against other checkouts of the repo ($BASE_TREES: directories, e.g. the commit before a kernel change; ~180 s
  # with one, ~290 s with four): all built at once (this tree by build(), the others in place), the verify GPU tests
  # of this tree, then b64 k4 / k2 / k8 graph calls (ring 16; AB_CASES: other sweep cases, comma-separated) of each
  # base tree and this one in turn, AB_ROUNDS (2) rounds (tags: the base trees' directory names, new), then this
  # tree's bench verify rows. BASE_PATCHES: patch files (absolute paths, -p1), each applied to a copy of this tree
  # (/tmp/base_<name>) that is added to the base trees.
  BASE_TREES=${BASE_TREES:-}
  for pf in ${BASE_PATCHES:-}; do
    d=/tmp/base_$(basename "$pf" .patch); rm -rf "$d"; mkdir -p "$d"
    tar -cf - --exclude=./build --exclude='*.so' --exclude=./bench/results/lab . | tar -xf - -C "$d"
    if (cd "$d" && patch -p1 -s < "$pf"); then
      echo "$(cat .commit 2>/dev/null)+$(basename "$pf" .patch)" > "$d/.commit"; BASE_TREES="$BASE_TREES $d"
    else echo "$pf does not apply" >> $L; fi
  done
  for d in $BASE_TREES; do
    (cd "$d" && TORCH_CUDA_ARCH_LIST=9.0a MAMBA_KERNELS_CUDA=1 MAX_JOBS=5 timeout 300 \
      python3 setup.py build_ext --inplace > /tmp/build_$(basename $d).log 2>&1; echo "$d build rc=$?" >> $L) &
  done
  build 6; wait; echo "builds done $(( $(date +%s) - t0 ))s" >> $L
  for d in $BASE_TREES; do (cd "$d" && PYTHONPATH=$d python3 -c "import mamba_kernels, mamba_kernels._backend as b; \
print('imports', mamba_kernels.__file__, b.available('cuda'))") >> $L 2>&1; done
  step 90 $T verify bash -c "$P $VT"; tail -2 $T >> $L
  SC="--cases ${AB_CASES:-mamba2-64-4,mamba2-64-2,mamba2-64-8} --rings 16"
  for i in $(seq ${AB_ROUNDS:-2}); do
    for d in $BASE_TREES; do tg=$(basename $d | tr -d .)
      step 60 $OUT/sweep.log $tg bash -c "cd $d && PYTHONPATH=$d python3 scripts/sweep_verify.py $SC --tag $tg"
    done
    step 60 $OUT/sweep.log new python3 scripts/sweep_verify.py $SC --tag new
  done
  grep -h " ring 16" $OUT/sweep.log >> $L
  step 120 $B verify_bench $P bench/bench_verify.py --benchmark-only -k "$VB"
  echo "total $(( $(date +%s) - t0 ))s" >> $L
  exit 0
fi
[ "${NOBUILD:-0}" = 1 ] || build 16
# ab_sweep VAR TAG VALUE...: b64 k4 / k2 / k8 graph calls (ring 16) with VAR=VALUE for each VALUE in alternating
# processes, two rounds; the result lines (tagged TAG VALUE) into $L.
ab_sweep() { local var=$1 tag=$2; shift 2
  for i in 1 2; do for v in "$@"; do
    step 60 $OUT/sweep.log $tag$v env $var=$v python3 scripts/sweep_verify.py \
      --cases mamba2-64-4,mamba2-64-2,mamba2-64-8 --rings 16 --tag $tag$v
  done; done
  grep -h "^$tag" $OUT/sweep.log >> $L; }
if [ "${VERIFY_PART:-}" = declast ]; then
  # session 45's lab (~250 s with the build; DECLAST_SHORT=1: without the first test run): the one-token decode
  # kernel without a cluster (MK_VERIFY_DEC_LAST=1, the default since: the unit's last warp writes its shared rows)
  # against the cluster kernel (=0). The verify GPU tests (the decode test runs both variants), every
  # one-token call forced through the decode kernels with the lab on, then b1 / b4 k1 graph calls and kernel
  # times with it off / on (8 lanes a row) / on with 16 lanes in alternating processes (two rounds) beside
  # mamba_ssm's decode kernel.
  [ "${DECLAST_SHORT:-0}" = 1 ] || step 60 $T verify bash -c "$P $VT"
  step 60 $T verify_decode_last bash -c "MK_VERIFY_KERNEL=decode MK_VERIFY_DEC_LAST=1 $P $VT"
  tail -3 $T >> $L
  for i in 1 2; do for v in "0 8" "1 8" "1 16"; do set -- $v
    step 40 $OUT/declast.log declast$1_$2 env MK_VERIFY_DEC_LAST=$1 MK_VERIFY_DEC_LANES=$2 python3 \
      scripts/sweep_verify.py --cases mamba2-1-1,mamba2-4-1 --rings 16 --calls 400 --tag declast$1_lanes$2
  done; done
  step 30 $OUT/declast.log prof_decode_anchor python3 scripts/profile_verify.py --cases mamba2-1-1,mamba2-4-1 \
    --impls mamba_ssm_decode
  grep -h "declast\|us\b" $OUT/declast.log >> $L
  echo "total $(( $(date +%s) - t0 ))s" >> $L
  exit 0
fi
if [ "${VERIFY_PART:-}" = offsets ]; then
  # session 48 (~250 s with the build): the kernels' 32-bit offsets (eoff / offsets_fit32: the one-token decode
  # kernels, verify_m1_kernel, the split pair's prep kernel) against their int64 instantiations
  # (MK_VERIFY_WIDE_OFFSETS=1): the verify GPU tests, then graph calls and kernel times of OFFSETS_CASES (default:
  # the one-token cases), 1 / 0 alternating, two rounds, and mamba_ssm's decode kernel at the one-token cases.
  OC=${OFFSETS_CASES:-mamba1-1-1,mamba1-16-1,mamba1-64-1,mamba2-1-1,mamba2-4-1}
  step 90 $T verify bash -c "$P $VT"
  tail -3 $T >> $L
  for i in 1 2; do for v in 1 0; do
    step 60 $OUT/offsets.log wide$v env MK_VERIFY_WIDE_OFFSETS=$v python3 scripts/sweep_verify.py \
      --cases $OC --rings 16 --calls 400 --tag wide$v
  done; done
  step 40 $OUT/offsets.log prof_decode_anchor python3 scripts/profile_verify.py \
    --cases mamba1-1-1,mamba1-16-1,mamba1-64-1,mamba2-1-1,mamba2-4-1 --impls mamba_ssm_decode
  grep -h "wide\|us\b" $OUT/offsets.log >> $L
  # OFFSETS_BENCH=1: then the bench's graph rows (ours, the naive rollback, mamba_ssm's decode) into $OUT
  [ "${OFFSETS_BENCH:-0}" = 1 ] && step 200 $B verify_bench $P bench/bench_verify.py --benchmark-only -k \
    "(bench_verify_ours and cuda and graph) or (naive and graph) or decode_mamba_ssm"
  echo "total $(( $(date +%s) - t0 ))s" >> $L
  exit 0
fi
if [ "${VERIFY_PART:-}" = tileearly ]; then
  # session 55 (~200 s with the build): the split stream kernel's first blocks stage their tile before
  # griddepcontrol.wait (MK_VERIFY_TILE_EARLY=n|all; the default since: 2 an SM): the verify GPU tests with all blocks
  # early, then b64 k2 / k4 / k8 graph calls (ring 16) with 0 / 264 (two 132-SM waves) / all in alternating
  # processes, two rounds.
  step 60 $T verify bash -c "MK_VERIFY_TILE_EARLY=all $P $VT"
  tail -2 $T >> $L
  ab_sweep MK_VERIFY_TILE_EARLY early 0 264 all
  echo "total $(( $(date +%s) - t0 ))s" >> $L
  exit 0
fi
if [ "${VERIFY_PART:-}" = prepkt ]; then
  # (~190 s with the build) the prep kernel with k a template parameter (bf16, N 128, 32-bit offsets, k 2 / 4 / 8)
  # against the generic one
  step 60 $T verify bash -c "MK_VERIFY_PREP_KT=0 $P $VT"
  tail -2 $T >> $L
  step 60 $B verify_bench $P bench/bench_verify.py --benchmark-only -k "$VB"
  ab_sweep MK_VERIFY_PREP_KT prepkt 0 1
  echo "total $(( $(date +%s) - t0 ))s" >> $L
  exit 0
fi
if [ "${VERIFY_PART:-}" = rows ]; then
  # (~200 s with the build) the verify GPU tests (ROWS_TESTS=0: not), the bench's verify graph rows (the day's rows),
  # then b64 k2 / k4 / k8 graph calls (ring 16) of the default and of MK_VERIFY_TILE_EARLY=0, one round.
  if [ "${ROWS_TESTS:-1}" = 1 ]; then step 60 $T verify bash -c "$P $VT"; tail -2 $T >> $L; fi
  step 60 $B verify_bench $P bench/bench_verify.py --benchmark-only -k "$VB"
  step 30 $OUT/sweep.log early_default python3 scripts/sweep_verify.py --cases mamba2-64-4,mamba2-64-2,mamba2-64-8 \
    --rings 16 --tag early_default
  step 30 $OUT/sweep.log early0 env MK_VERIFY_TILE_EARLY=0 python3 scripts/sweep_verify.py \
    --cases mamba2-64-4,mamba2-64-2,mamba2-64-8 --rings 16 --tag early0
  grep -h "early" $OUT/sweep.log >> $L
  echo "total $(( $(date +%s) - t0 ))s" >> $L
  exit 0
fi
if [ "${VERIFY_PART:-}" = k1 ]; then
  # session 46 (~150 s without the build): the verify GPU tests, then the bench's one-token rows (ours eager and in
  # a graph, both layouts) beside mamba_ssm's decode kernel, with the decode kernel without a cluster the default.
  [ "${K1_TESTS:-1}" = 1 ] && step 60 $T verify bash -c "$P $VT"
  step 90 $B verify_bench_k1 $P bench/bench_verify.py --benchmark-only -k \
    "(bench_verify_ours and cuda and k1) or decode_mamba_ssm"
  echo "total $(( $(date +%s) - t0 ))s" >> $L
  exit 0
fi
step 50 $T verify bash -c "$P $VT"
step 60 $T verify_tc bash -c "MK_VERIFY_KERNEL=tc $P $VT"
step 60 $T verify_decode bash -c "MK_VERIFY_KERNEL=decode $P $VT"
C=mamba2-1-1,mamba2-1-4,mamba2-16-1,mamba2-16-4,mamba2-64-1,mamba2-64-4,mamba2-64-8
step 30 $OUT/prof.log prof_auto python3 scripts/profile_verify.py --cases $C --impls cuda
step 30 $OUT/prof.log prof_decode_anchor python3 scripts/profile_verify.py --cases mamba2-1-1,mamba2-16-1,mamba2-64-1 --impls mamba_ssm_decode
step 50 $B verify_bench $P bench/bench_verify.py --benchmark-only -k "$VB"
rm -f $OUT/*.md
echo "total $(( $(date +%s) - t0 ))s" >> $L
cat $L; grep -E "passed|failed" $T | tail -4
