"""The verify family's CUDA kernels (csrc/verify/*.cuh), checked on CPU through an emulation of the CUDA execution
model: tests/cuda_emu/verify/verify_emu_shim.h runs a block's CUDA threads as cooperative fibers on one OS thread
(tests/cuda_emu/emu_fibers.h; barriers for __syncthreads and warp shuffles, NaN-poisoned dynamic shared memory,
16-byte alignment checks) and
verify_emu_ops.cpp puts the real launch geometry, kernels and torch binding (csrc/verify/verify_bind_cuda.cpp)
behind torch.ops.mamba_kernels._verify_step_cuda / _verify_step_fused_cuda / _conv_verify_step_cuda for CPU
tensors. verify_emu_stress.py then runs randomized multi-round sessions and compares every output and every
mutated cache tensor with python_ref.verify after each call.

The library is built once per session (g++, torch headers, the CUDA toolkit's headers for the host-side
half/bfloat16 types); each group of cases runs in its own subprocess (the ops it registers stay out of this
process) and the groups run two at a time. No GPU needed: this runs on CPU CI.
"""
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EMU = REPO / "tests" / "cuda_emu" / "verify"
STRESS = EMU / "verify_emu_stress.py"

# name: (environment, cases, expected kernel -> that kernel must have been launched). Cases: see CASES / CONV in
# verify_emu_stress.py. The lean kernel needs contiguous inputs (STRESS_CONTIG=1); EMU_LEAN_NT forces its block
# size (the launcher takes 256 threads for grids under 256 blocks, so the test grids would never see 128).
GROUPS = {
    # verify_m2tc_kernel (MK_VERIFY_KERNEL=tc: taken for every shape it serves): fp32 state with bf16 / f16 / f32
    # inputs (split tf32 operands), bf16 state, P = 16 .. 256, N = 64 / 128, k up to 16 (two token tiles), tree
    # drafts, long rings (several B . C row tiles), folds on tensor cores
    "tc": ({"STRESS_CONTIG": "1", "MK_VERIFY_KERNEL": "tc"},
           ["hot_m2", "hot_m2_k8", "lean_bf16st", "lean_f16", "acc_m2", "m2_n128", "tc_k16", "lean_2pass"], ["tc"]),
    # verify_m2tc_kernel with 4 warps at P = 128 / 256 (two / four row tiles a warp; the launcher's choice is 8)
    "tc4": ({"STRESS_CONTIG": "1", "MK_VERIFY_KERNEL": "tc", "MK_VERIFY_TC_WARPS": "4"}, ["hot_m2", "lean_2pass"],
            ["tc"]),
    # verify_m2prep_kernel + verify_m2str_kernel (MK_VERIFY_KERNEL=split: taken for every shape tc serves): the
    # same shapes as tc (stream blocks of 4 warps), padding rows, folds (ring rows staged after the epilogue), trees;
    # hot_m2_inf: an infinite x in a draft token reaches no other token's y; MK_VERIFY_TILE_EARLY=2: the stream grid's
    # blocks 0 and 1 stage their tile before griddepcontrol.wait, the rest after the record's header (on a GPU: the
    # first wave; the emulation's CUDA runtime knows no SM count, so without the switch no block is early);
    # MK_VERIFY_PREP_KT=0: the generic prep kernel for every call (group splitkt runs the default's fixed-k ones)
    "split": ({"STRESS_CONTIG": "1", "MK_VERIFY_KERNEL": "split", "MK_VERIFY_TILE_EARLY": "2",
               "MK_VERIFY_PREP_KT": "0"},
              ["hot_m2", "hot_m2_inf", "hot_m2_k8", "lean_bf16st", "lean_f16", "acc_m2", "m2_n128", "tc_k16",
               "lean_2pass"], ["split"]),
    # a device with 64 KB of shared memory a block (EMU_SMEM_OPTIN; the launch choice compares each kernel's layout
    # with the device's limit, as on an RTX GPU's 99 KB): the forced tensor-core kernel does not fit the P = N = 128
    # shapes, so the choice passes over it (to the general kernel, as MK_VERIFY_KERNEL=tc excludes the lean one)
    "small_smem": ({"STRESS_CONTIG": "1", "MK_VERIFY_KERNEL": "tc", "EMU_SMEM_OPTIN": "65536"}, ["hot_m2", "hot_m2_k8"],
                   ["general_m2"]),
    # split at the default prep choice: the prep kernel with k a template parameter for bf16 inputs, N 128, 32-bit
    # offsets and k 2 / 4 / 8 (prepkt counts those launches; other k take the generic one, which the split group
    # runs everywhere with MK_VERIFY_PREP_KT=0)
    "splitkt": ({"STRESS_CONTIG": "1", "MK_VERIFY_KERNEL": "split"},
                ["hot_m2", "hot_m2_k8", "m2_n128_tree"], ["split", "prepkt"]),
    # split with MK_VERIFY_WIDE_OFFSETS=1 (the prep kernel's int64-offset instantiation)
    "splitwide": ({"STRESS_CONTIG": "1", "MK_VERIFY_KERNEL": "split", "MK_VERIFY_WIDE_OFFSETS": "1"},
                  ["hot_m2", "hot_m2_k8", "lean_bf16st", "acc_m2", "tc_k16"], ["split"]),
    # the stream kernel with 8 warps (one m-tile a warp at P = 128)
    "split8": ({"STRESS_CONTIG": "1", "MK_VERIFY_KERNEL": "split", "MK_VERIFY_SPLIT_WARPS": "8"},
               ["hot_m2", "lean_2pass"], ["split"]),
    # verify_m2dec_kernel for every one-token call and verify_m2deck_kernel for drafts of 2 to 8 tokens, with an
    # fp32 state (the reference folds on those calls too), 4 lanes a state row: 4 (P 128) / 2 (P 64) / 1 (P 32)
    # blocks a unit, bf16 / f16 / f32 inputs, chain and tree drafts, drafts of 9 to 16 tokens in between (the lean
    # kernel: committed ring tokens and pending nodes past the staged rows, left for the general replay), padding
    # rows. The one-token kernel is the last-arrival one (the default: no cluster; the unit's last warp to count
    # itself on node 0's mask word writes its ring_B row 0, ring_dt and meta row). The blocks run in index order
    # here, so every block but the last reads the shared rows after other warps counted themselves, and a writer
    # other than the last arrival would hand later blocks the new token's rows (the cases fail then).
    "decode4": ({"STRESS_CONTIG": "1", "MK_VERIFY_KERNEL": "decode", "STRESS_DECODE_FOLD": "1",
                 "MK_VERIFY_DEC_LANES": "4"}, ["hot_m2", "hot_m2_k8", "lean_f16", "dec_f32", "dec_k12", "tc_k16"],
                ["declast", "deck"]),
    # the same with 8 lanes a state row (16 rows a block: 8 / 4 / 2 blocks a unit; the launcher's choice)
    "decode8": ({"STRESS_CONTIG": "1", "MK_VERIFY_KERNEL": "decode", "STRESS_DECODE_FOLD": "1"},
                ["hot_m2", "hot_m2_k8", "lean_f16", "dec_f32", "dec_k12", "tc_k16"], ["declast", "deck"]),
    # 16 lanes a state row (the last-arrival kernel only: 8 rows a block, up to 16 blocks a unit; drafts of 2 to 8
    # keep 8 lanes)
    "decode16": ({"STRESS_CONTIG": "1", "MK_VERIFY_KERNEL": "decode", "STRESS_DECODE_FOLD": "1",
                  "MK_VERIFY_DEC_LANES": "16"},
                 ["hot_m2", "hot_m2_k8", "lean_f16", "dec_f32", "dec_k12"], ["declast", "deck"]),
    # decode8 with MK_VERIFY_WIDE_OFFSETS=1: the one-token kernel's int64-offset instantiation (the others take the
    # 32-bit one wherever offsets_fit32 holds, i.e. in every case here)
    "decode8wide": ({"STRESS_CONTIG": "1", "MK_VERIFY_KERNEL": "decode", "STRESS_DECODE_FOLD": "1",
                     "MK_VERIFY_WIDE_OFFSETS": "1"}, ["hot_m2", "lean_f16", "dec_f32", "dec_k12"], ["declast"]),
    # the one-token kernel in clusters (MK_VERIFY_DEC_LAST=0: a unit's blocks one cluster, rank 0 writes the shared
    # rows after the cluster barrier; rank 0 runs last here), 4 and 8 lanes a row
    "decode4cluster": ({"STRESS_CONTIG": "1", "MK_VERIFY_KERNEL": "decode", "STRESS_DECODE_FOLD": "1",
                        "MK_VERIFY_DEC_LANES": "4", "MK_VERIFY_DEC_LAST": "0"},
                       ["hot_m2", "dec_f32", "dec_k12"], ["decode", "deck"]),
    "decode8cluster": ({"STRESS_CONTIG": "1", "MK_VERIFY_KERNEL": "decode", "STRESS_DECODE_FOLD": "1",
                        "MK_VERIFY_DEC_LAST": "0"},
                       ["hot_m2", "hot_m2_k8", "lean_f16", "dec_f32", "dec_k12", "tc_k16"], ["decode", "deck"]),
    # verify_m2_kernel<.., 128>: bf16 / f16 / f32 inputs; f32 and f16 state; chain and tree drafts; k up to 16;
    # ring folds; P = N = 128 with f32 state (two passes over the state tile, the second from shared memory)
    "lean128": ({"STRESS_CONTIG": "1", "EMU_LEAN_NT": "128", "MK_VERIFY_KERNEL": "lean"}, ["hot_m2", "lean_f16", "lean_f32_k16"], ["lean128"]),
    # lean128 / lean256 with MK_VERIFY_WIDE_OFFSETS=1 (the int64-offset instantiations the fp32-state cases take)
    "lean128wide": ({"STRESS_CONTIG": "1", "EMU_LEAN_NT": "128", "MK_VERIFY_KERNEL": "lean",
                     "MK_VERIFY_WIDE_OFFSETS": "1"}, ["hot_m2", "lean_f16"], ["lean128"]),
    "lean256wide": ({"STRESS_CONTIG": "1", "EMU_LEAN_NT": "256", "MK_VERIFY_KERNEL": "lean",
                     "MK_VERIFY_WIDE_OFFSETS": "1"}, ["hot_m2_k8", "acc_m2"], ["lean256"]),
    # verify_m2_kernel<.., 256>: bf16 state, tree drafts (path compaction), k = 8, P = N = 128, G = 2, long rings;
    # P = 256 (two passes at 256 threads)
    "lean256": ({"STRESS_CONTIG": "1", "EMU_LEAN_NT": "256", "MK_VERIFY_KERNEL": "lean"}, ["lean_bf16st", "hot_m2_k8", "acc_m2", "lean_2pass"],
                ["lean256"]),
    # verify_ssm_kernel<T, false> (Mamba-2 layout): strided x / B / C half the time, N or P not powers of two,
    # N = 600 (column passes), k = 31, strided state view, no D / z / dt_bias, f16 and bf16 states, long rings
    "general_m2": ({}, ["m2_basic", "m2_n128", "m2_N5", "m2_bigP", "m2_colpass", "m2_k32", "m2_view", "m2_nopt",
                        "m2_bf16st", "m2_f16st_N64", "m2_n128_tree", "acc_m2_tree", "acc_m2_bigP"], ["general_m2"]),
    # verify_m1_kernel (Mamba-1 layout, N 8 / 16, a thread a channel): fp32 / bf16 / f16 inputs, fp32 and bf16
    # states, chain and tree drafts (path compaction), G = H, idle lanes, long rings (several staged batches of ring
    # tokens), drafts longer than the 8 staged tokens
    "m1lean": ({"STRESS_CONTIG": "1"}, ["m1_basic", "m1_tree", "acc_m1", "hot_m1", "m1_lean_bf16st", "m1_lean_f16",
                                         "m1_k12"],
               ["m1lean"]),
    # the GPU's automatic choice for the Mamba-1 layout with an fp32 state (MK_VERIFY_KERNEL=decode here; the
    # reference folds on those calls too): one-token calls run verify_m1dec_kernel, longer drafts verify_m1_kernel
    # folding on every call; chain and tree drafts, drafts past the staged tokens; an A view with unaligned rows
    # (one-token calls then take verify_m1_kernel); the bf16-state case keeps the deferred fold
    "m1fold": ({"STRESS_CONTIG": "1", "MK_VERIFY_KERNEL": "decode", "STRESS_FOLD_EVERY": "1"},
               ["m1_basic", "m1_tree", "acc_m1", "hot_m1", "m1_lean_bf16st", "m1_lean_f16", "m1_k12", "m1_dec",
                "m1_dec_n8", "m1_dec_aview", "m1_dec_f32"], ["m1lean", "m1dec"]),
    # m1fold / m1lean cases with MK_VERIFY_WIDE_OFFSETS=1 (the int64-offset instantiations of verify_m1dec_kernel
    # and verify_m1_kernel)
    "m1foldwide": ({"STRESS_CONTIG": "1", "MK_VERIFY_KERNEL": "decode", "STRESS_FOLD_EVERY": "1",
                    "MK_VERIFY_WIDE_OFFSETS": "1"}, ["m1_tree", "m1_k12", "m1_dec", "m1_dec_n8", "m1_dec_f32"],
                   ["m1lean", "m1dec"]),
    "m1leanwide": ({"STRESS_CONTIG": "1", "MK_VERIFY_WIDE_OFFSETS": "1"},
                   ["m1_basic", "m1_tree", "m1_lean_bf16st", "m1_lean_f16"], ["m1lean"]),
    # verify_ssm_kernel<T, true> (Mamba-1 layout: A (d, n), dt per channel): P = 600, bf16 state, long rings
    "mamba1": ({}, ["m1_basic", "m1_tree", "m1_bf16st", "m1_bigP", "acc_m1", "acc_m1_bigP", "hot_m1"],
               ["general_m1"]),
    # verify_fused_kernel (conv window + SSM in one kernel): conv widths 2 / 4 / 8, G = 1 / 2, P = N = 128, long rings
    "fused": ({}, ["fused_g1", "fused_tree", "fused_w8", "hot_fused", "acc_fused"], ["fused"]),
    # conv_verify_kernel (standalone conv step): widths 2 / 3 / 4 / 8, dc = 700 (several channel blocks)
    "conv": ({}, ["conv_chain", "conv_tree", "conv_w8", "conv_w2"], ["conv"]),
}
COUNTS_RE = re.compile(r"emu launches: (.*)$", re.M)


def _tail(text, n=6000):
    return text if len(text) <= n else "...\n" + text[-n:]


def _cuda_include():
    cands = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        cands.append(Path(nvcc).resolve().parent.parent / "include")
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            cands.append(Path(os.environ[var]) / "include")
    cands.append(Path("/usr/local/cuda/include"))
    for c in cands:
        if (c / "cuda_runtime.h").is_file() and (c / "cuda_bf16.h").is_file():
            return c
    return None


def _build(out_dir):
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        pytest.skip("verify CUDA emulation: no C++ compiler (g++ or $CXX) found")
    torch_dir = Path(torch.__file__).resolve().parent
    if not (torch_dir / "include" / "torch" / "library.h").is_file():
        pytest.skip(f"verify CUDA emulation: torch headers missing under {torch_dir / 'include'}")
    cuda_inc = _cuda_include()
    if cuda_inc is None:
        pytest.skip("verify CUDA emulation: CUDA headers (cuda_runtime.h, cuda_bf16.h) not found next to nvcc, "
                    "in $CUDA_HOME/include or /usr/local/cuda/include")
    lib = out_dir / "libverify_emu.so"
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    cmd = [cxx, "-std=c++20", "-O1", "-shared", "-fPIC", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
           f"-I{EMU}", f"-I{REPO / 'csrc'}", f"-I{torch_dir / 'include'}",
           f"-I{torch_dir / 'include' / 'torch' / 'csrc' / 'api' / 'include'}", f"-I{cuda_inc}",
           str(EMU / "verify_emu_ops.cpp"), "-o", str(lib), f"-L{torch_dir / 'lib'}", "-lc10", "-ltorch_cpu",
           "-ltorch", f"-Wl,-rpath,{torch_dir / 'lib'}", "-pthread"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"building the verify CUDA emulation failed (rc {r.returncode}):\n{' '.join(cmd)}\n"
                    f"{_tail(r.stdout + r.stderr)}", pytrace=False)
    return lib


def _run_group(lib, name):
    env_extra, cases, _ = GROUPS[name]
    env = dict(os.environ, **env_extra)
    for var in ("STRESS_CONTIG", "EMU_LEAN_NT", "MK_VERIFY_KERNEL", "MK_VERIFY_TC_WARPS", "MK_VERIFY_DEC_LANES",
                "STRESS_DECODE_FOLD", "STRESS_FOLD_EVERY", "MK_VERIFY_SPLIT_WARPS", "EMU_SMEM_OPTIN",
                "MK_VERIFY_DEC_LAST", "MK_VERIFY_WIDE_OFFSETS"):
        if var not in env_extra:
            env.pop(var, None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, str(STRESS), "--lib", str(lib), *cases]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    shown = " ".join(f"{k}={v}" for k, v in env_extra.items())
    return r, f"{shown} {' '.join(cmd)}".strip()


@pytest.fixture(scope="module")
def emu_lib(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("verify_cuda_emu"))


@pytest.fixture(scope="module")
def group_runs(request, emu_lib):
    """Builds the library, then starts every selected group (two subprocesses at a time); name -> future."""
    lib = emu_lib
    selected = [it.callspec.params["group"] for it in request.session.items
                if it.originalname == "test_verify_cuda_kernels_emulated" and hasattr(it, "callspec")]
    workers = max(1, min(2, os.cpu_count() or 1))
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    futures = {name: pool.submit(_run_group, lib, name) for name in GROUPS if name in selected}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("group", list(GROUPS))
def test_verify_cuda_kernels_emulated(group_runs, group):
    r, cmd = group_runs[group].result()
    out = r.stdout + r.stderr
    msg = f"verify CUDA emulation, group {group}: `{cmd}` (rc {r.returncode}); output tail:\n{_tail(out)}"
    if r.returncode != 0:
        pytest.fail(msg, pytrace=False)
    _, cases, kernels = GROUPS[group]
    passed = re.findall(r"^PASS (\S+)", r.stdout, re.M)
    assert passed == cases, f"cases that passed: {passed}\n{msg}"
    m = COUNTS_RE.search(r.stderr)
    assert m, "no launch-count line ('emu launches: ...') at exit\n" + msg
    counts = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    for kern in kernels:
        assert counts.get(kern, 0) > 0, f"kernel {kern} never launched: {counts}\n{msg}"
    if group in ("decode4", "decode8", "decode16"):  # every one-token decode launch is the last-arrival kernel
        assert counts["decode"] == 0, f"{counts}\n{msg}"
    if group in ("decode4cluster", "decode8cluster"):  # and here the cluster kernel
        assert counts["declast"] == 0, f"{counts}\n{msg}"
    if group.startswith("lean") and group.endswith("wide"):  # the fp32-state lean launches took the int64 offsets
        assert counts["wide"] > 0, f"{counts}\n{msg}"
    elif group.endswith("wide"):  # every launch of a kernel with both instantiations took the int64 offsets
        # (these groups' lean launches, drafts longer than the decode kernels take, all have fp32 states)
        both = counts["declast"] + counts["m1dec"] + counts["m1lean"] + counts["split"] + counts["lean128"] + \
            counts["lean256"]
        assert counts["wide"] == both > 0, f"{counts}\n{msg}"
    elif group in ("decode4", "decode8", "m1fold", "m1lean", "split", "splitkt", "lean128", "lean256"):
        assert counts["wide"] == 0, f"{counts}\n{msg}"  # with the 32-bit ones available, no launch took int64
    # every SSM launch of these contiguous shapes is a Mamba-1 lean kernel
    if group in ("m1lean", "m1fold", "m1leanwide", "m1foldwide"):
        assert counts["general_m1"] == 0, f"{counts}\n{msg}"
    if group in ("m1lean", "m1leanwide"):  # the emulation takes the one-token kernel only under MK_VERIFY_KERNEL=decode
        assert counts["m1dec"] == 0, f"{counts}\n{msg}"
    if group == "split":  # MK_VERIFY_PREP_KT=0: no fixed-k prep launch
        assert counts["prepkt"] == 0, f"{counts}\n{msg}"
    if group == "small_smem":  # the tensor-core layout (~80 KB here) is over the emulated device's 64 KB
        assert counts["tc"] == 0 and counts["split"] == 0, f"{counts}\n{msg}"
    # every SSM launch of these shapes is the forced kernel
    if group in ("tc", "tc4", "split", "split8", "splitwide", "splitkt"):
        assert counts["lean128"] == counts["lean256"] == counts["general_m2"] == 0, f"{counts}\n{msg}"
    if group in ("lean128", "lean128wide"):  # every SSM launch of these contiguous power-of-two shapes: lean, 128
        assert counts["lean256"] == counts["general_m2"] == 0, f"{counts}\n{msg}"
    if group in ("lean256", "lean256wide"):
        assert counts["lean128"] == counts["general_m2"] == 0, f"{counts}\n{msg}"


def test_offsets_fit32_bounds(emu_lib):
    """The host check behind the one-token decode kernels' 32-bit offsets (offsets_fit32 in
    csrc/verify/verify_offsets.cuh): every offset any kernel forms must stay under 2^30, so a state pool of S
    slots at slot stride st_s takes the 32-bit kernels only while (S - 1) st_s + the rest of a slot is below it."""
    import ctypes

    lib = ctypes.CDLL(str(emu_lib))
    fn = lib.emu_offsets_fit32
    fn.argtypes, fn.restype = [ctypes.c_longlong, ctypes.c_longlong, ctypes.c_longlong], ctypes.c_int
    slot = 4 * 8 * 16  # H P N of the probe's layer
    assert fn(3, slot, 1) == 1
    assert fn(3, (1 << 29) - slot, 1) == 1  # 2 (2^29 - 512) + 511 < 2^30
    assert fn(3, 1 << 29, 1) == 0  # 2^30 + 511
    assert fn(1 << 14, 1 << 16, 1) == 1  # (2^14 - 1) 2^16 + 511
    assert fn(1 << 14 | 1, 1 << 16, 1) == 0
    assert fn(2, -(1 << 30), 1) == 0  # magnitudes count
    assert fn(1, 1 << 40, 1) == 1  # one slot: its stride is never multiplied
    assert fn(3, slot, 1 << 28) == 1  # parents (batch 2, Kmax 4): 4 + 3 2^28 < 2^30
    assert fn(3, slot, 1 << 29) == 0  # every tensor the kernels address counts, the parents too


def test_decode_kernels_grid(emu_lib):
    """The one-token decode kernels take a (blocks of a batch row, batch rows) grid, so no block divides its index:
    they serve batches up to the grid's y limit (65535) and pools of at least one slot (a padding row reads slot
    0's rows and writes only y); past either the launcher picks another kernel instead of a bad launch."""
    import ctypes

    lib = ctypes.CDLL(str(emu_lib))
    fn = lib.emu_decode_launch
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong,
                               ctypes.POINTER(ctypes.c_longlong)], None

    def launch(m1, batch, S):
        out = (ctypes.c_longlong * 3)()
        fn(m1, batch, S, out)
        return tuple(out)

    # Mamba-1: a block a unit (H 4); Mamba-2: 8 lanes a row, 16 rows a block, 8 blocks a unit (P 128)
    assert launch(1, 3, 5) == (1, 4, 3)
    assert launch(1, 65535, 70000) == (1, 4, 65535)
    assert launch(1, 65536, 70000)[0] == 0
    assert launch(1, 3, 0)[0] == 0
    assert launch(0, 3, 5) == (2, 32, 3)  # (Mamba-2 takes it only under kM2SmallGrid units: no large batch)
    assert launch(0, 3, 0)[0] == 0
