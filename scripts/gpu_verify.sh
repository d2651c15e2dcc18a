#!/usr/bin/env bash
# Verify family only, on the GPU machine: build, GPU tests (automatic choice and MK_VERIFY_KERNEL=tc), per-kernel
# timings (scripts/profile_verify.py) of the tensor-core and the lean kernel, the verify benchmarks. Files under $OUT.
set -u
OUT=${OUT:-/tmp/mk_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAMBA_KERNELS_COMMIT=$(cat .commit 2>/dev/null || echo unknown) MAMBA_KERNELS_BENCH_DIR=$OUT
find ~/.cache/torch_extensions -name lock -delete 2>/dev/null
L=$OUT/run.log; T=$OUT/tests.log; t0=$(date +%s)
TORCH_CUDA_ARCH_LIST=9.0a MAMBA_KERNELS_CUDA=1 MAX_JOBS=16 timeout 150 \
  python3 -m pip install --no-build-isolation --no-deps --no-index -e . > /tmp/build.log 2>&1
echo "build rc=$? $(( $(date +%s) - t0 ))s" >> $L; tail -2 /tmp/build.log >> $L
P="python3 -m pytest -q -rfE -p no:cacheprovider"
step() { local lim=$1 log=$2 name=$3; shift 3; local s=$(date +%s)
  echo "=== $name" >> $log; timeout -s INT $lim "$@" >> $log 2>&1; echo "$name rc=$? $(( $(date +%s) - s ))s" >> $L; }
VT='tests/test_verify.py tests/test_verify_engine.py -k "cuda or graph or cupy or engine"'
step 50 $T verify bash -c "$P $VT"
step 60 $T verify_tc bash -c "MK_VERIFY_KERNEL=tc $P $VT"
C=mamba2-1-4,mamba2-16-4,mamba2-64-1,mamba2-64-4,mamba2-64-8
for kk in tc lean; do step 30 $OUT/prof.log prof_$kk env MK_VERIFY_KERNEL=$kk python3 scripts/profile_verify.py --cases $C --impls cuda; done
step 50 $OUT/bench.log verify_bench $P bench/bench_verify.py --benchmark-only -k "(bench_verify_ours and cuda and graph and not k2) or (naive and mamba2 and k4 and graph) or decode_mamba_ssm"
rm -f $OUT/*.md
echo "total $(( $(date +%s) - t0 ))s" >> $L
cat $L; grep -E "passed|failed" $T | tail -4
