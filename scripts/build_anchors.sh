#!/usr/bin/env bash
# Build the compiled anchors on a GPU host (no network needed) from the sdists that scripts/fetch_anchors.sh
# unpacked into .anchors/src:
#   selective_scan_cuda  (mamba_ssm 2.3.2.post1 csrc/selective_scan; ~161 s on 16 cores, sm_90 only)
#   causal_conv1d_cuda   (causal-conv1d 1.7.0 csrc; ~447 s, one file dominates)
# with torch.utils.cpp_extension.load into .anchors/build/<name>/ (<name>.so + a BUILD_OK marker), which
# bench/anchors.py loads. The two builds run in parallel (causal_conv1d mostly waits on one nvcc process), each
# under its own `timeout`; the script always exits 0 and says in the log which ones failed.
#
#   scripts/build_anchors.sh [LOG]                      # LOG defaults to .anchors/build.log
#   setsid nohup scripts/build_anchors.sh .anchors/build.log >/dev/null 2>&1 < /dev/null &   # detached
#
# Environment: PYTHON (default python3, else python), ANCHORS_ARCH (TORCH_CUDA_ARCH_LIST, default "9.0"),
# MAX_JOBS_SCAN / MAX_JOBS_CONV (ninja jobs, default 12 / 4), TIMEOUT_SCAN / TIMEOUT_CONV (s, default 600 / 1200),
# ANCHORS_ONLY ("selective_scan_cuda" or "causal_conv1d_cuda" to build just one), ANCHORS_NVCC_EXTRA (more
# nvcc flags, e.g. "-std=c++17" if torch's default standard does not suit the sources), MAMBA_KERNELS_ANCHORS,
# MAMBA_KERNELS_ANCHORS_BUILD (default $MAMBA_KERNELS_ANCHORS/build).
#
# nvcc flags = those of the sdists' setup.py minus what a one-arch local build does not need:
#   kept:    -O3, -U__CUDA_NO_{HALF,BFLOAT16}_OPERATORS__ / _CONVERSIONS__, -U__CUDA_NO_BFLOAT162_*__,
#            --expt-relaxed-constexpr, --expt-extended-lambda, --use_fast_math, -lineinfo
#   dropped: the gencode list (sm_75..sm_121) -> TORCH_CUDA_ARCH_LIST=9.0 (torch adds sm_90 only);
#            --threads 4 (one arch: nothing to parallelise); --ptxas-options=-v (log noise);
#            -std=c++17 (mamba_ssm's setup.py): torch's cpp_extension picks the standard its headers need.
#   cxx:     -O3.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
A=${MAMBA_KERNELS_ANCHORS:-$ROOT/.anchors}
B=${MAMBA_KERNELS_ANCHORS_BUILD:-$A/build}
LOG=${1:-$A/build.log}
mkdir -p "$B" "$(dirname "$LOG")"
LOG=$(cd "$(dirname "$LOG")" && pwd)/$(basename "$LOG")
if [ -z "${PYTHON:-}" ]; then
  if command -v python3 >/dev/null 2>&1; then PYTHON=python3; else PYTHON=python; fi
fi
export TORCH_CUDA_ARCH_LIST=${ANCHORS_ARCH:-9.0}
# ninja: torch's cpp_extension needs it on PATH; fall back to the binary fetch_anchors.sh unpacked
if ! command -v ninja >/dev/null 2>&1 && [ -x "$A/site/bin/ninja" ]; then
  export PATH="$A/site/bin:$PATH"
fi

log() { echo "[$(date -u +%FT%TZ)] $*" >> "$LOG"; }

: > "$LOG"
log "build_anchors: root=$ROOT anchors=$A build=$B arch=$TORCH_CUDA_ARCH_LIST python=$PYTHON"
log "nproc=$(nproc) ninja=$(command -v ninja || echo MISSING) nvcc=$(command -v nvcc || echo "not on PATH")"
"$PYTHON" -c "import torch, torch.utils.cpp_extension as c; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'CUDA_HOME', c.CUDA_HOME)" >> "$LOG" 2>&1

# A killed build leaves a `lock` file that makes the next load() wait forever: clear stale locks and the
# per-extension caches (nothing else may be building these extensions now).
rm -rf ~/.cache/torch_extensions/*/selective_scan_cuda ~/.cache/torch_extensions/*/causal_conv1d_cuda 2>/dev/null
find ~/.cache/torch_extensions "$B" -name lock -type f -delete 2>/dev/null

MAMBA_SRC=$(ls -d "$A"/src/mamba_ssm-* 2>/dev/null | tail -1)
CONV_SRC=$(ls -d "$A"/src/causal_conv1d-* 2>/dev/null | tail -1)

# build_one NAME TIMEOUT JOBS SRCDIR INCLUDE_DIR SOURCES...   (stdout/stderr -> $LOG.NAME)
build_one() {
  local name=$1 tmo=$2 jobs=$3 srcdir=$4 inc=$5
  shift 5
  local slog="$LOG.$name" t0 rc
  rm -f "$B/$name/BUILD_OK"
  if [ -z "$srcdir" ] || [ ! -d "$srcdir" ]; then
    log "$name: FAILED (no sources under $A/src: run scripts/fetch_anchors.sh and carry .anchors/src)"
    return 0
  fi
  t0=$(date +%s)
  log "$name: start (timeout ${tmo}s, MAX_JOBS=$jobs, log $slog)"
  (cd "$srcdir" && MAX_JOBS=$jobs timeout "$tmo" "$PYTHON" - "$name" "$B/$name" "$inc" "$@" > "$slog" 2>&1 <<'EOF'
import os, sys, time
import torch
from torch.utils.cpp_extension import load

name, build, inc, sources = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
os.makedirs(build, exist_ok=True)
nvcc = ["-O3",
        "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
        "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
        "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
        "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math", "-lineinfo"]
nvcc += os.environ.get("ANCHORS_NVCC_EXTRA", "").split()
t = time.time()
mod = load(name=name, sources=[os.path.abspath(s) for s in sources], extra_cflags=["-O3"],
           extra_cuda_cflags=nvcc, extra_include_paths=[os.path.abspath(inc)], build_directory=build,
           verbose=True)
print(f"BUILT {name} in {time.time() - t:.1f} s: {mod.__file__}", flush=True)
EOF
  )
  rc=$?
  local dt=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ] && ls "$B/$name/$name"*.so >/dev/null 2>&1; then
    date -u +%FT%TZ > "$B/$name/BUILD_OK"
    log "$name: OK in ${dt}s -> $(ls "$B/$name/$name"*.so)"
  elif [ $rc -eq 124 ]; then
    log "$name: FAILED: timed out after ${dt}s (TIMEOUT=$tmo); tail of $slog:"
    tail -n 20 "$slog" >> "$LOG"
  else
    log "$name: FAILED (rc=$rc) after ${dt}s; tail of $slog:"
    tail -n 30 "$slog" >> "$LOG"
  fi
  return 0
}

ONLY=${ANCHORS_ONLY:-}
pids=()
if [ -z "$ONLY" ] || [ "$ONLY" = causal_conv1d_cuda ]; then
  build_one causal_conv1d_cuda "${TIMEOUT_CONV:-1200}" "${MAX_JOBS_CONV:-4}" "$CONV_SRC" "$CONV_SRC/csrc" \
    csrc/causal_conv1d.cpp csrc/causal_conv1d_fwd.cu csrc/causal_conv1d_bwd.cu csrc/causal_conv1d_update.cu &
  pids+=($!)
fi
if [ -z "$ONLY" ] || [ "$ONLY" = selective_scan_cuda ]; then
  build_one selective_scan_cuda "${TIMEOUT_SCAN:-600}" "${MAX_JOBS_SCAN:-12}" "$MAMBA_SRC" \
    "$MAMBA_SRC/csrc/selective_scan" \
    csrc/selective_scan/selective_scan.cpp \
    csrc/selective_scan/selective_scan_fwd_fp32.cu csrc/selective_scan/selective_scan_fwd_fp16.cu \
    csrc/selective_scan/selective_scan_fwd_bf16.cu \
    csrc/selective_scan/selective_scan_bwd_fp32_real.cu csrc/selective_scan/selective_scan_bwd_fp32_complex.cu \
    csrc/selective_scan/selective_scan_bwd_fp16_real.cu csrc/selective_scan/selective_scan_bwd_fp16_complex.cu \
    csrc/selective_scan/selective_scan_bwd_bf16_real.cu csrc/selective_scan/selective_scan_bwd_bf16_complex.cu &
  pids+=($!)
fi
for p in "${pids[@]}"; do wait "$p"; done
ok=$(ls "$B"/*/BUILD_OK 2>/dev/null | wc -l)
log "build_anchors: DONE ($ok built)"
exit 0
