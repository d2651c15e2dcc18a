#!/usr/bin/env bash
# One batch on the GPU machine: build (timed), GPU tests, benchmarks. Every step has its own timeout and
# writes straight to files under $OUT (a pipe would buffer, and a timeout would then lose the output).
# Usage: bash scripts/gpu_run.sh [pytest -k expression for tests] [pytest -k expression for benches]
set -u
OUT=${OUT:-/tmp/mk_out}; mkdir -p "$OUT"
T_START=$(date +%s); DEADLINE=${DEADLINE:-560}   # seconds after start by which the script must be done
export MAMBA_KERNELS_COMMIT=${MAMBA_KERNELS_COMMIT:-$(cat .commit 2>/dev/null || echo unknown)}
export PYTHONUNBUFFERED=1 MAMBA_KERNELS_BENCH_DIR=${MAMBA_KERNELS_BENCH_DIR:-$PWD/bench/results}
TEST_K=${1:-}; BENCH_K=${2:-}
T_BUILD=${T_BUILD:-420}; T_TEST=${T_TEST:-200}; T_BENCH=${T_BENCH:-240}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$OUT/gpu.txt" 2>&1
# A killed torch JIT build leaves a lock that stalls the next one forever.
find ~/.cache/torch_extensions -name lock -delete 2>/dev/null
ANCHOR_LOG=.anchors/build.log
if [ -d .anchors/src ] && [ -f scripts/build_anchors.sh ] && [ "${BUILD_ANCHORS:-1}" = 1 ]; then
  setsid nohup bash scripts/build_anchors.sh "$ANCHOR_LOG" > /dev/null 2>&1 < /dev/null &
fi
t0=$(date +%s)
TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0a} MAMBA_KERNELS_CUDA=1 MAX_JOBS=${MAX_JOBS:-16} \
  timeout "$T_BUILD" python3 -m pip install --no-build-isolation --no-deps --no-index -e . > "$OUT/build.log" 2>&1
echo "build rc=$? seconds=$(( $(date +%s) - t0 )) archs=${TORCH_CUDA_ARCH_LIST:-9.0a}" | tee -a "$OUT/build.log"
python3 -c "import mamba_kernels, json; print(json.dumps(mamba_kernels.backends(), indent=1))" > "$OUT/backends.json" 2>&1
timeout "$T_TEST" python3 -m pytest -q -m "not slow" tests ${TEST_K:+-k "$TEST_K"} -p no:cacheprovider \
  --durations=15 > "$OUT/tests.log" 2>&1
echo "tests rc=$?" | tee -a "$OUT/tests.log"

timeout "$T_BENCH" python3 -m pytest bench --benchmark-only -q ${BENCH_K:+-k "$BENCH_K"} -p no:cacheprovider \
  --benchmark-disable-gc > "$OUT/bench.log" 2>&1
echo "bench rc=$?" | tee -a "$OUT/bench.log"
cp bench/results/*.jsonl bench/results/*.md "$OUT/" 2>/dev/null
# Wait (bounded) for the anchors building in the background.
if [ "${BUILD_ANCHORS:-1}" = 1 ] && [ -d .anchors/src ]; then
  while [ $(( $(date +%s) - T_START )) -lt $(( DEADLINE - 15 )) ]; do
    grep -q "DONE (" "$ANCHOR_LOG" 2>/dev/null && break; sleep 5
  done
fi
cp .anchors/build.log* "$OUT/" 2>/dev/null
# Bring built anchors back so later sessions can carry them instead of rebuilding (7+ minutes).
if [ "${BUILD_ANCHORS:-1}" = 1 ] && ls .anchors/build/*/BUILD_OK > /dev/null 2>&1; then
  tar -C .anchors -czf "$OUT/anchors_build.tgz" build && ls -la "$OUT/anchors_build.tgz"
fi
tail -5 "$OUT/tests.log"; tail -3 "$OUT/bench.log"
