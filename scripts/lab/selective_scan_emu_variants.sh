#!/usr/bin/env bash
# CPU check of selective-scan knob variants: builds tests/cuda_emu/selective_scan_emu.cpp (the CUDA kernels,
# unmodified, emulated on the CPU, against the double-precision CPU implementation) once per variant with
# the variant's -D flags (scripts/lab/selective_scan_variants.sh), and runs all its cases. No GPU needed.
#   scripts/lab/selective_scan_emu_variants.sh                  # every variant
#   scripts/lab/selective_scan_emu_variants.sh fwd_t8 fwd_poly4  # some of them
# Variants named *_diag are skipped. Exit status 1 if any variant fails. Build dir: ${EMU_DIR:-/tmp/ss_emu}.
set -u
cd "$(dirname "$0")/../.."
. scripts/lab/selective_scan_variants.sh
DIR=${EMU_DIR:-/tmp/ss_emu}
mkdir -p "$DIR"
names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${VARIANT_NAMES[@]}")
fail=0
for v in "${names[@]}"; do
  case $v in *_diag) echo "skip $v (diagnostic: wrong results on purpose)"; continue;; esac
  if [ -z "${VARIANTS[$v]+x}" ]; then echo "unknown variant $v"; fail=1; continue; fi
  flags=${VARIANTS[$v]}
  exe="$DIR/emu_$v"
  # shellcheck disable=SC2086
  if ! g++ -std=c++20 -O1 -pthread $flags -I tests/cuda_emu -I csrc tests/cuda_emu/selective_scan_emu.cpp \
       csrc/selective_scan/selective_scan_cpu.cpp -o "$exe" 2>"$DIR/build_$v.log"; then
    echo "BUILD FAIL $v ($flags):"; tail -20 "$DIR/build_$v.log"; fail=1; continue
  fi
  if "$exe" >"$DIR/run_$v.log" 2>&1; then
    echo "ok   $v ($flags): $(grep -c '^ok' "$DIR/run_$v.log") cases"
  else
    echo "FAIL $v ($flags):"; grep -v '^ok\|^     (' "$DIR/run_$v.log" | head -20; fail=1
  fi
done
exit $fail
