#!/usr/bin/env bash
# One end-of-session batch on the GPU machine: build, the GPU tests of every family, the benchmarks (ours + the
# anchors that need no build). At most 6 files under $OUT; every step has
# its own timeout and writes straight to files (see scripts/gpu_run.sh for the reasons).
set -u
OUT=${OUT:-/tmp/mk_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAMBA_KERNELS_COMMIT=$(cat .commit 2>/dev/null || echo unknown) MAMBA_KERNELS_BENCH_DIR=$OUT
find ~/.cache/torch_extensions -name lock -delete 2>/dev/null
L=$OUT/run.log; T=$OUT/tests.log; B=$OUT/bench.log
t0=$(date +%s)
TORCH_CUDA_ARCH_LIST=9.0a MAMBA_KERNELS_CUDA=1 MAX_JOBS=16 timeout 150 \
  python3 -m pip install --no-build-isolation --no-deps --no-index -e . > $OUT/build.log 2>&1
echo "build rc=$? $(( $(date +%s) - t0 ))s" > $L
P="python3 -m pytest -q -rfE -p no:cacheprovider"
step() { local lim=$1 log=$2 name=$3; shift 3; local s=$(date +%s)
  echo "=== $name" >> $log; timeout -s INT $lim "$@" >> $log 2>&1; echo "$name rc=$? $(( $(date +%s) - s ))s" >> $L; }
step 40 $T verify $P tests/test_verify.py tests/test_verify_engine.py -k "cuda or graph or cupy or engine"
step 50 $T conv_ss_cuda $P tests/test_conv1d.py tests/test_selective_scan.py -m gpu -k "cuda"
step 40 $T ssd $P tests/test_ssd.py -m gpu -k "(bf16 and l1000) or opcheck or sync_free"
step 50 $B verify $P bench/bench_verify.py --benchmark-only -k "(bench_verify_ours and cuda and graph and not k2) or (naive and mamba2 and k4 and graph) or decode_mamba_ssm"
step 35 $B conv1d $P bench/bench_conv1d.py --benchmark-only -k "cuda or causal_conv1d"
step 35 $B selective_scan $P bench/bench_selective_scan.py --benchmark-only -k "cuda or mamba_ssm"
step 60 $B ssd $P bench/bench_ssd.py --benchmark-only -k "(bench_ssd and not configs and not bench_ssd_kernels and not small and not fla) or legacy"
echo "total $(( $(date +%s) - t0 ))s" >> $L
cat $L; grep -E "passed|failed" $T | tail -8
