# Sourced by scripts/gpu_final.sh and scripts/gpu_verify.sh (GPU machine): environment, $L/$T/$B logs, build(), pack_out(),
# step() and the verify GPU test selection. Every step has its own timeout (INT first, so pytest reports) and
# writes straight to files under $OUT: a pipe would buffer, and a timeout would then lose the output.
set -u
OUT=${OUT:-/tmp/mk_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAMBA_KERNELS_COMMIT=$(cat .commit 2>/dev/null || echo unknown) MAMBA_KERNELS_BENCH_DIR=$OUT
find ~/.cache/torch_extensions -name lock -delete 2>/dev/null  # a killed JIT build's lock stalls the next one
L=$OUT/run.log; T=$OUT/tests.log; B=$OUT/bench.log
t0=$(date +%s)
P="python3 -m pytest -q -rfE -p no:cacheprovider"
VT='tests/test_verify.py tests/test_verify_engine.py -k "cuda or graph or cupy or engine"'
# the bench's verify rows that the library commits (graph calls; the naive rollback and mamba_ssm's decode beside)
VB='(bench_verify_ours and cuda and graph and not k2) or (naive and mamba2 and k4 and graph) or decode_mamba_ssm'
# build JOBS: the library for sm_90a (the log's tail goes to $L; 280 s: beside base-tree builds it took 135-207 s).
build() {
  TORCH_CUDA_ARCH_LIST=9.0a MAMBA_KERNELS_CUDA=1 MAX_JOBS=$1 timeout 280 \
    python3 -m pip install --no-build-isolation --no-deps --no-index -e . > /tmp/build.log 2>&1
  echo "build rc=$? $(( $(date +%s) - t0 ))s" >> $L; tail -2 /tmp/build.log >> $L
}
# step LIMIT LOG NAME CMD...: run CMD with its output appended to LOG, its status and time to $L.
step() { local lim=$1 log=$2 name=$3; shift 3; local s=$(date +%s)
  echo "=== $name" >> $log; timeout -s INT $lim "$@" >> $log 2>&1; echo "$name rc=$? $(( $(date +%s) - s ))s" >> $L; }
# pack_out: every file under $OUT into $OUT/all.tgz, for ad hoc run scripts whose files might pass the 8 that a device
# call brings back (the ninth and later are dropped with no error: session 31 lost a bench run's rows that way).
pack_out() { (cd "$OUT" && tar -czf all.tgz --remove-files $(ls | grep -v '^all.tgz$')); }
