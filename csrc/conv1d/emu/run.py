"""Run the conv1d CUDA kernels on the CPU: a dev tool for machines with nvcc but no GPU.

    python csrc/conv1d/emu/run.py [--asan] [extra pytest args]

1. Copies csrc/conv1d/*.{h,cuh,cu} and csrc/common/*.h into a build folder ($CONV1D_EMU_BUILD, default
   /tmp/mamba_kernels_conv1d_emu), lowering the channel-first grid target (fwd_cf::kTargetWarps) so that the
   small test shapes see every segment length, rewriting every `kernel<<<grid, block, smem, stream>>>(args);` into
   `emu_launch(dim3(grid), dim3(block), [&] { kernel(args); });`, and the torch binding conv1d_bind_cuda.cpp
   into a CPU one (same op names, registered for the CPU dispatch key).
2. Builds them as a torch extension with g++ -std=c++20, include/ first on the include path: the kernels'
   `#include <cuda_runtime.h>` lands on the emulation (include/cuda_runtime.h).
3. Runs tests/test_conv1d.py with backend "cuda" served by the emulated ops on CPU tensors (the tests that
   need a real device are deselected). --asan builds with AddressSanitizer and preloads it, so an
   out-of-bounds read or write by a kernel aborts the run.
Kernel code is used unmodified; only the launch syntax, the grid target above and the binding's CUDA stream/guard
are rewritten.

CONV1D_EMU_DEFINES="-DMK_CONV1D_FWD_CF_IMPL=1 ..." builds a non-default variant (the performance knobs of
csrc/conv1d/conv1d_common.cuh); each define set gets its own build folder and extension name.
"""
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
CSRC = os.path.join(REPO, "csrc")


def _split_top(s):
    parts, depth, cur = [], 0, ""
    for ch in s:
        depth += ch in "(<[{"
        depth -= ch in ")>]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p.strip() for p in parts + [cur]]


def rewrite_launches(src):
    while "<<<" in src:
        i = src.index("<<<")
        j = src.index(">>>", i)
        m = re.search(r"([A-Za-z_][\w:]*(?:<[^<>;{}()]*>)?)\s*$", src[:i])
        cfg = _split_top(src[i + 3:j])
        a = j + 3
        assert src[a] == "(", "kernel launch without arguments"
        depth, k = 0, a
        while True:
            depth += src[k] == "("
            depth -= src[k] == ")"
            if depth == 0:
                break
            k += 1
        call = f"emu_launch(dim3({cfg[0]}), dim3({cfg[1]}), [&] {{ {m.group(1)}({src[a + 1:k]}); }})"
        src = src[:m.start(1)] + call + src[k + 1:]
    return src


def prepare(build):
    for sub in ("conv1d", "common"):
        os.makedirs(os.path.join(build, "src", sub), exist_ok=True)
    for f in glob.glob(os.path.join(CSRC, "common", "*.h")):
        shutil.copy(f, os.path.join(build, "src", "common"))
    for f in glob.glob(os.path.join(CSRC, "conv1d", "*.h")) + glob.glob(os.path.join(CSRC, "conv1d", "*.cuh")):
        shutil.copy(f, os.path.join(build, "src", "conv1d"))
    common = os.path.join(build, "src", "conv1d", "conv1d_common.cuh")
    c = open(common).read()
    hooks = [("static __device__ __forceinline__ void load(const T* __restrict__ p, float (&out)[N]) {", "emu_check_align(p, kWordBytes);"),
             ("static __device__ __forceinline__ void store(T* __restrict__ p, const float (&in)[N]) {", "emu_check_align(p, kWordBytes);"),
             ("  if (vec && n_valid >= N) {\n#pragma unroll\n    for (int i = 0; i < V::kWords; ++i)", None)]
    for anchor, code in hooks:
        assert anchor in c, anchor
        c = c.replace(anchor, anchor + " " + code if code else
                      "  if (vec && n_valid >= N) { emu_check_align(p, V::kWordBytes);\n#pragma unroll\n"
                      "    for (int i = 0; i < V::kWords; ++i)")
    open(common, "w").write(c)
    # The channel-first segment length depends on the grid size (fwd_cf::seg_chunks): with the production
    # target the tests' small grids would only ever see the shortest segments. A target of 8 warps gives a mix
    # (4096-long rows of the ragged tests: 2 segments of 2048; others 1024 or 4096).
    fwd = os.path.join(build, "src", "conv1d", "conv1d_fwd_kernel.cuh")
    c = open(fwd).read()
    anchor = "constexpr int64_t kTargetWarps = 16384;"
    assert anchor in c, anchor
    open(fwd, "w").write(c.replace(anchor, "constexpr int64_t kTargetWarps = 8;"))
    sources = []
    for f in glob.glob(os.path.join(CSRC, "conv1d", "*.cu")):
        out = os.path.join(build, "src", "conv1d", os.path.basename(f)[:-3] + "_emu.cpp")
        open(out, "w").write(rewrite_launches(open(f).read()))
        sources.append(out)
    b = open(os.path.join(CSRC, "conv1d", "conv1d_bind_cuda.cpp")).read()
    for a, r in [("<c10/cuda/CUDAGuard.h>", "<ATen/core/Tensor.h>"), ("<c10/cuda/CUDAStream.h>", "<ATen/core/Tensor.h>"),
                 ("const c10::cuda::CUDAGuard guard(x.device());", ""),
                 ("c10::cuda::getCurrentCUDAStream().stream()", "nullptr"),
                 ('TORCH_CHECK(x.is_cuda(), "x: expected a CUDA tensor");', 'TORCH_CHECK(x.device().is_cpu(), "emu");'),
                 ("TORCH_LIBRARY_IMPL(mamba_kernels, CUDA, m)", "TORCH_LIBRARY_IMPL(mamba_kernels, CPU, m)")]:
        assert a in b, a
        b = b.replace(a, r)
    out = os.path.join(build, "src", "conv1d", "bind_emu.cpp")
    open(out, "w").write(b)
    return sorted(sources + [out])


def build(build_dir, asan):
    sys.path.insert(0, REPO)
    from torch.utils.cpp_extension import load
    sources = prepare(build_dir)
    san = ["-fsanitize=address", "-fno-omit-frame-pointer"] if asan else []
    name = "conv1d_emu_asan" if asan else "conv1d_emu"
    defines = os.environ.get("CONV1D_EMU_DEFINES", "").split()
    bad = [d for d in defines if not d.startswith("-D")]
    assert not bad, f"CONV1D_EMU_DEFINES takes only -D flags, got {bad}"
    if defines:
        name += "_" + hashlib.sha1(" ".join(defines).encode()).hexdigest()[:10]
    tdir = os.path.join(build_dir, name)
    os.makedirs(tdir, exist_ok=True)
    load(name=name, sources=sources, extra_include_paths=[os.path.join(HERE, "include"), os.path.join(build_dir, "src")],
         extra_cflags=["-std=c++20", "-O1", "-g0", "-pthread", "-Wno-unknown-pragmas"] + san + defines,
         extra_ldflags=["-pthread"] + san, is_python_module=False, build_directory=tdir, verbose=False)
    return os.path.join(tdir, name + ".so")


TEST_PRELUDE = '''import os, sys, types
import torch
torch.ops.load_library(os.environ["CONV1D_EMU_SO"])
sys.modules["mamba_kernels._cuda"] = types.ModuleType("mamba_kernels._cuda")  # the emulated ops stand in
import mamba_kernels._backend as _b
_orig_resolve = _b.resolve
_b.resolve = lambda backend, device, supported=_b.BACKENDS: (
    backend if backend == "cuda" else _orig_resolve(backend, device, supported))
'''


def write_tests(build_dir):
    s = open(os.path.join(REPO, "tests", "test_conv1d.py")).read()
    subs = [('BACKENDS = ["ref", "cpu", "triton", pytest.param("cuda", marks=pytest.mark.gpu)]', 'BACKENDS = ["cuda"]'),
            ('@pytest.mark.parametrize("backend", ["ref", "cpu", pytest.param("cuda", marks=pytest.mark.gpu)])',
             '@pytest.mark.parametrize("backend", ["cuda"])'),
            ('def _device(backend):\n', 'def _device(backend):\n    return "cpu"\n'),
            ('def _skip_unless(backend):\n', 'def _skip_unless(backend):\n    if backend == "cuda":\n        return "cpu"\n')]
    for a, r in subs:
        assert a in s, a
        s = s.replace(a, r)
    path = os.path.join(build_dir, "test_conv1d_emu.py")
    open(path, "w").write(TEST_PRELUDE + s)
    return path


def main():
    asan = "--asan" in sys.argv
    extra = [a for a in sys.argv[1:] if a != "--asan"]
    if asan and "libasan" not in os.environ.get("LD_PRELOAD", ""):
        # the sanitizer runtime must be loaded first: re-run this script (build and tests) under it
        lib = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
        env = dict(os.environ, LD_PRELOAD=lib, ASAN_OPTIONS="detect_leaks=0")
        sys.exit(subprocess.run([sys.executable] + sys.argv, env=env).returncode)
    build_dir = os.environ.get("CONV1D_EMU_BUILD", "/tmp/mamba_kernels_conv1d_emu")
    so = build(build_dir, asan)
    test = write_tests(build_dir)
    env = dict(os.environ, CONV1D_EMU_SO=so)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test, "--rootdir", REPO,
           "-c", os.path.join(REPO, "pytest.ini"),
           "-k", "not gpu_ and not Reference and not BadInput and not gradcheck and not compile"] + extra
    sys.exit(subprocess.run(cmd, env=env, cwd=REPO).returncode)


if __name__ == "__main__":
    main()
