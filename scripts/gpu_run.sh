#!/usr/bin/env bash
# One batch on the GPU machine: build (timed, uncontended), anchors in the background, GPU tests, benchmarks.
# Every step has its own timeout and writes straight to files under $OUT (a pipe would buffer, and a timeout
# would then lose the output). At most 8 files come back, so logs are few.
# Usage: bash scripts/gpu_run.sh "<test files or -k args>" "<bench -k expression>"
set -u
OUT=${OUT:-/tmp/mk_out}; mkdir -p "$OUT"
T_START=$(date +%s); DEADLINE=${DEADLINE:-570}   # seconds after start by which the script must be done
export MAMBA_KERNELS_COMMIT=${MAMBA_KERNELS_COMMIT:-$(cat .commit 2>/dev/null || echo unknown)}
export PYTHONUNBUFFERED=1 MAMBA_KERNELS_BENCH_DIR=${MAMBA_KERNELS_BENCH_DIR:-$PWD/bench/results}
TESTS=${1:-tests}; BENCH_K=${2:-}
T_BUILD=${T_BUILD:-300}; T_TEST=${T_TEST:-200}; T_BENCH=${T_BENCH:-200}
LOG="$OUT/run.log"
left() { echo $(( DEADLINE - ($(date +%s) - T_START) )); }
{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv; } > "$LOG" 2>&1
find ~/.cache/torch_extensions -name lock -delete 2>/dev/null  # a killed JIT build's lock stalls the next one
start_anchors() {
  if [ -d .anchors/src ] && [ "${BUILD_ANCHORS:-1}" = 1 ]; then
    setsid nohup bash scripts/build_anchors.sh .anchors/build.log > /dev/null 2>&1 < /dev/null &
  fi
}
[ "${ANCHORS_FIRST:-0}" = 1 ] && start_anchors
t0=$(date +%s)
TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0a} MAMBA_KERNELS_CUDA=1 MAX_JOBS=${MAX_JOBS:-16} \
  timeout "$T_BUILD" python3 -m pip install --no-build-isolation --no-deps --no-index -v -e . > "$OUT/build.log" 2>&1
echo "BUILD rc=$? seconds=$(( $(date +%s) - t0 )) archs=${TORCH_CUDA_ARCH_LIST:-9.0a} jobs=${MAX_JOBS:-16}" | tee -a "$LOG" "$OUT/build.log"
python3 -c "import mamba_kernels, json; print(json.dumps(mamba_kernels.backends()))" >> "$LOG" 2>&1
[ "${ANCHORS_FIRST:-0}" = 1 ] || start_anchors  # after our build, so its build time is uncontended
TO=""; python3 -c "import pytest_timeout" 2>/dev/null && TO="--timeout=${T_ONE:-90}"
t=$(( $(left) - T_BENCH - 20 )); [ $t -gt $T_TEST ] && t=$T_TEST
# TESTS is a string of pytest arguments (quoted -k/-m expressions allowed): evaluated as written.
eval "timeout $t python3 -m pytest -q -rfE $TO -p no:cacheprovider --durations=12 $TESTS" > "$OUT/tests.log" 2>&1
echo "TESTS rc=$? (limit ${t}s)" | tee -a "$LOG"
# Benchmarks of anchors that need building go last; wait (bounded) for the build when they are asked for.
t=$(( $(left) - 10 )); [ $t -gt $T_BENCH ] && t=$T_BENCH
timeout "$t" python3 -m pytest bench --benchmark-only -q -rfE -p no:cacheprovider ${BENCH_K:+-k "$BENCH_K"} \
  > "$OUT/bench.log" 2>&1
echo "BENCH rc=$? (limit ${t}s)" | tee -a "$LOG"
if [ -n "${BENCH_ANCHORS_K:-}" ]; then  # anchors that had to be built: wait for them, then time them
  while [ $(left) -gt 70 ] && ! grep -q "DONE (" .anchors/build.log 2>/dev/null; do sleep 5; done
  t=$(( $(left) - 10 ))
  timeout "$t" python3 -m pytest bench --benchmark-only -q -rfE -p no:cacheprovider -k "$BENCH_ANCHORS_K" \
    > "$OUT/bench_anchors.log" 2>&1
  echo "BENCH_ANCHORS rc=$? (limit ${t}s)" | tee -a "$LOG"
fi
cat .anchors/build.log >> "$LOG" 2>/dev/null
cp bench/results/*.jsonl bench/results/*.md "$OUT/" 2>/dev/null
tail -3 "$OUT/tests.log"; tail -2 "$OUT/bench.log"
