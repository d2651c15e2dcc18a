#!/usr/bin/env bash
# One device call of ncu diagnostics (files under $OUT): build, then the SSD Triton kernels that dominate the
# issue-4 shapes (scripts/ncu_ssd.sh) and the verify decode path at b1 k1 against mamba_ssm's decode kernel
# (scripts/ncu_verify.sh), packed into $OUT/ncu.tgz. NCU_PARTS picks: "ssd verify" (default); NCU_VERIFY_CASES the
# verify cases (default "mamba2-1-1"; "mamba2-64-4" for the split pair at b64 k4, with NCU_VERIFY_LAUNCHES=2: its prep
# and stream kernels); NCU_VERIFY_FOLD=1: then the same cases' folding call (NCU_VERIFY_SKIP=14, files tagged _fold).
. scripts/gpu_common.sh
[ "${NOBUILD:-0}" = 1 ] || build 16
for part in ${NCU_PARTS:-ssd verify}; do
  case $part in
    ssd) step 330 $L ncu_ssd bash scripts/ncu_ssd.sh b4-l4096-h80-p64-n128-g1
         step 80 $L ncu_ssd2 bash scripts/ncu_ssd.sh b2-l4096-h32-p128-n128-g32 _ssd_chunk_scan_kernel;;
    verify) step 200 $L ncu_verify bash scripts/ncu_verify.sh "${NCU_VERIFY_CASES:-mamba2-1-1}"
            [ "${NCU_VERIFY_FOLD:-0}" = 1 ] && step 200 $L ncu_verify_fold env NCU_VERIFY_SKIP=14 NCU_VERIFY_TAG=_fold \
              bash scripts/ncu_verify.sh "${NCU_VERIFY_CASES:-mamba2-1-1}" cuda;;
  esac
done
# at most 8 files come back from a device call: the ncu files travel as one archive
(cd $OUT && tar czf ncu.tgz ncu_* && rm -f ncu_*)
echo "ncu total $(( $(date +%s) - t0 ))s" >> $L
