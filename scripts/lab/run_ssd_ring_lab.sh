#!/usr/bin/env bash
# F2 speed lab (GPU machine, no torch needed): builds scripts/lab/ssd_ring_lab.cu once a variant of MK_SSD_RING_LAB
# (0 the library's kernel, 1 no fill copies, 2 no output stores, 3 neither; see the .cu) in parallel, then runs the
# variants in alternating rounds: the ring with cp.async and with TMA fills (and, for variant 0, the one-stage
# ping-pong) at shape 1.
#   OUT=/some/dir bash scripts/lab/run_ssd_ring_lab.sh [rounds=2]
# LAB_PHASE=build | run (default: both): the builds only (e.g. beside the library's build), or the runs only.
# LAB_VARIANTS (default "0 1 2 3"; bit 2 = 4: the causal product balanced across a team's warps), LAB_TMA (default
# "0 1": the ring's fills by cp.async / TMA) select what is built and run.
# Output: $OUT/ssd_ring_lab.txt (one line a run: "lab <N> ring <R> tma <T>: F2 <us> us"; variant 0 first checks
# that the ring agrees with the ping-pong), $OUT/ssd_ring_lab_build.log (ptxas registers / spills of the ring
# kernels per variant).
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/ssd_ring_lab_out}; BUILD=${LAB_BUILD:-/tmp/ssd_ring_lab_build}
mkdir -p "$OUT" "$BUILD"
F="-O3 -std=c++17 --use_fast_math --expt-relaxed-constexpr -lineinfo -gencode=arch=compute_90a,code=sm_90a"
F="$F -DMK_BUILT_SM90A -I csrc -Xptxas -v"
PHASE=${LAB_PHASE:-all}
if [ "$PHASE" != run ]; then
for v in ${LAB_VARIANTS:-0 1 2 3}; do
  (timeout 300 nvcc $F -DMK_SSD_RING_LAB=$v scripts/lab/ssd_ring_lab.cu -o "$BUILD/lab$v" > "$BUILD/build$v.log" 2>&1
   echo "variant $v build rc=$?" >> "$BUILD/status.log") &
done
wait
for v in ${LAB_VARIANTS:-0 1 2 3}; do
  { grep "variant $v " "$BUILD/status.log"
    grep -A2 "ssd_scan_ring" "$BUILD/build$v.log" | grep -E "spill|registers"; } >> "$OUT/ssd_ring_lab_build.log"
done
fi
[ "$PHASE" = build ] && exit 0
export LAB_REF="$BUILD/ref_out.bin"  # variant 0's TMA-ring output: the diets' outputs are compared with it
rm -f "$LAB_REF"
for r in $(seq "${1:-2}"); do
  [ -x "$BUILD/lab0" ] && timeout 60 "$BUILD/lab0" 0 >> "$OUT/ssd_ring_lab.txt" 2>&1
  for v in ${LAB_VARIANTS:-0 1 2 3}; do
    for t in ${LAB_TMA:-0 1}; do timeout 60 "$BUILD/lab$v" 1 $t >> "$OUT/ssd_ring_lab.txt" 2>&1; done
  done
done
