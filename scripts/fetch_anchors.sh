#!/usr/bin/env bash
# Fetch the comparison baselines ("anchors") for bench/ into a git-ignored folder that can travel to a GPU host
# without network. Run on a machine with network to PyPI (any CPU machine is fine; nothing is compiled here).
#
#   scripts/fetch_anchors.sh            # -> .anchors/{dist,src,site}
#   MAMBA_KERNELS_ANCHORS=/some/dir scripts/fetch_anchors.sh
#
# Result:
#   .anchors/dist/   the downloaded sdists and wheels as PyPI serves them (needed only here; no need to carry)
#   .anchors/src/    mamba_ssm-2.3.2.post1/ and causal_conv1d-1.7.0/ unpacked (Python + csrc/, tests/ removed)
#   .anchors/site/   pure-Python wheels unpacked, appended to sys.path by bench/anchors.py when a package is
#                    not installed: fla-core 0.6.0 (fla.ops.*), einops, and the ninja binary in site/bin (used by
#                    scripts/build_anchors.sh only when `ninja` is not on PATH)
# On the GPU host carry .anchors/src and .anchors/site (not .anchors/ as a whole: that would replace
# .anchors/build, where scripts/build_anchors.sh puts the compiled extensions).
#
# The sdists' setup.py files import torch and query nvcc while pip prepares their metadata; with
# MAMBA_SKIP_CUDA_BUILD / CAUSAL_CONV1D_SKIP_CUDA_BUILD set they skip all of that (without them pip download
# fails here with "InvalidVersion: None" because there is no CUDA toolkit version to parse).
set -euo pipefail
cd "$(dirname "$0")/.."
A=${MAMBA_KERNELS_ANCHORS:-$PWD/.anchors}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
MAMBA_SSM=mamba_ssm==2.3.2.post1
CAUSAL_CONV1D=causal_conv1d==1.7.0
FLA_CORE=fla-core==0.6.0
FLA=flash-linear-attention==0.6.0
EINOPS=einops==0.8.2
NINJA=ninja

mkdir -p "$A/dist" "$A/src" "$A/site"

echo "== sdists: $MAMBA_SSM $CAUSAL_CONV1D"
MAMBA_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE \
  "$PYTHON" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
  "$MAMBA_SSM" "$CAUSAL_CONV1D" -d "$A/dist"

echo "== wheels: $FLA_CORE $FLA $EINOPS $NINJA"
"$PYTHON" -m pip download -q --no-deps "$FLA_CORE" "$FLA" "$EINOPS" -d "$A/dist"
# ninja: a manylinux x86_64 binary wheel (the GPU host is x86_64 Linux); any Python 3 can use it.
"$PYTHON" -m pip download -q --no-deps --only-binary :all: --platform manylinux2014_x86_64 \
  --python-version 3.11 "$NINJA" -d "$A/dist"

echo "== unpack sdists into $A/src"
for tgz in "$A"/dist/mamba_ssm-*.tar.gz "$A"/dist/causal_conv1d-*.tar.gz; do
  name=$(basename "$tgz" .tar.gz)
  rm -rf "${A:?}/src/$name"
  tar xzf "$tgz" -C "$A/src"
  # tests and packaging metadata are not needed to import or build
  rm -rf "$A/src/$name/tests" "$A/src/$name"/*.egg-info
done

echo "== unpack wheels into $A/site"
rm -rf "${A:?}/site"
mkdir -p "$A/site"
"$PYTHON" - "$A" <<'EOF'
import glob, os, sys, zipfile
a = sys.argv[1]
# flash-linear-attention (fla.layers / fla.models) needs transformers and is not needed for the ops:
# keep its wheel in dist/ only and unpack fla-core (fla.ops, fla.modules, fla.utils).
for pat in ("fla_core-*.whl", "einops-*.whl", "ninja-*.whl"):
    for whl in glob.glob(os.path.join(a, "dist", pat)):
        with zipfile.ZipFile(whl) as z:
            z.extractall(os.path.join(a, "site"))
        print("unpacked", os.path.basename(whl))
# wheel scripts (the ninja binary) -> site/bin; zipfile drops the executable bit, restore it
os.makedirs(os.path.join(a, "site", "bin"), exist_ok=True)
for exe in glob.glob(os.path.join(a, "site", "*.data", "scripts", "*")):
    dst = os.path.join(a, "site", "bin", os.path.basename(exe))
    os.replace(exe, dst)
    os.chmod(dst, 0o755)
EOF
find "$A/site" -name "__pycache__" -prune -exec rm -rf {} +

echo "== sizes"
du -sh "$A/dist" "$A/src" "$A/site"
echo "to carry to the GPU host: $(du -shc "$A/src" "$A/site" | tail -1 | cut -f1) (.anchors/src + .anchors/site)"
