"""The open conv1d backward question (bench/notes/causal_conv1d.md: the channel-first backward, same SASS, runs ~190 us in the
lab binary and ~228 us in the torch process), one step further. Uses the lab's build of the backward behind a C
entry point (scripts/lab/conv1d_bwd_capi.cu, loaded by ctypes):
  --no-torch  a Python process that never imports torch: the C side allocates (cudaMalloc), fills and times;
  default     the torch process: the same standalone timing, then the library's build (torch op) and the lab's
              build on the same torch tensors, alternating, with a check that both give identical dx.
Both print the device / context settings that could differ between the processes.
GPU machine: python3 scripts/lab/probe_conv1d_bwd_capi.py path/to/libconv1d_bwd_capi.so [--no-torch]
"""
import ctypes
import sys

B, D, L, W = 4, 6144, 4096, 4


def load(so_path):
    lib = ctypes.CDLL(so_path)
    i64, vp = ctypes.c_int64, ctypes.c_void_p
    lib.mk_lab_bwd_cf_partials.argtypes = [i64, i64, i64, ctypes.c_int]
    lib.mk_lab_bwd_cf_partials.restype = i64
    lib.mk_lab_bwd_cf.argtypes = [vp] * 9 + [i64, i64, i64, ctypes.c_int, ctypes.c_int, vp]
    lib.mk_lab_bwd_cf.restype = ctypes.c_int
    lib.mk_lab_bwd_cf_standalone.argtypes = [i64, i64, i64, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_float,
                                             ctypes.POINTER(ctypes.c_float)]
    lib.mk_lab_bwd_cf_standalone.restype = ctypes.c_int
    lib.mk_lab_settings.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return lib


def standalone(lib, tag):
    buf = ctypes.create_string_buffer(512)
    lib.mk_lab_settings(buf, 512)
    print(f"[{tag}] settings: {buf.value.decode()}", flush=True)
    for w_dtype, wscale in ((1, 1.0), (0, 0.5), (0, 1.0), (1, 0.5), (1, 0.05), (1, 4.0)):
        us = ctypes.c_float()
        rc = lib.mk_lab_bwd_cf_standalone(B, D, L, 7, 20, w_dtype, wscale, ctypes.byref(us))
        print(f"[{tag}] lab build, own cudaMalloc buffers, {'bf16' if w_dtype else 'fp32'} weights in "
              f"(-{wscale}, {wscale}), 20 back-to-back: {us.value:7.1f} us (rc {rc})", flush=True)


def with_torch(lib):
    import torch

    import mamba_kernels._cuda  # noqa: F401
    sys.path.insert(0, __file__.rsplit("/", 2)[0])
    from _gpu_timing import batch_time_us

    bf16 = torch.bfloat16
    torch.zeros(1, device="cuda")  # context
    standalone(lib, "torch process")
    x = torch.empty(B, D, L, device="cuda", dtype=bf16).uniform_(-1, 1)
    dy = torch.empty_like(x).uniform_(-1, 1)
    dx_lib, dx_lab = torch.empty_like(x), torch.empty_like(x)
    wt = (torch.randn(D, W, device="cuda") / 2).to(bf16)
    bias = torch.randn(D, device="cuda").to(bf16)
    dw, db = torch.empty_like(wt), torch.empty_like(bias)
    rows = lib.mk_lab_bwd_cf_partials(B, D, L, W)
    dwp = torch.empty(rows, D, W, device="cuda")
    dbp = torch.empty(rows, D, device="cuda")
    op = torch.ops.mamba_kernels._conv1d_bwd_cuda

    def run_lib():
        op(x, wt, bias, None, None, dy, None, dx_lib, dw, db, None, True, False)

    def run_lab():
        rc = lib.mk_lab_bwd_cf(x.data_ptr(), dy.data_ptr(), dx_lab.data_ptr(), wt.data_ptr(), bias.data_ptr(),
                               dw.data_ptr(), db.data_ptr(), dwp.data_ptr(), dbp.data_ptr(), B, D, L, W, 1,
                               torch.cuda.current_stream().cuda_stream)
        if rc:
            raise RuntimeError("lab launcher error")

    run_lib()
    run_lab()
    torch.cuda.synchronize()
    print("dx identical:", torch.equal(dx_lib, dx_lab), "partial rows:", rows, flush=True)
    for r in range(3):
        print(f"round {r}: library build {batch_time_us(run_lib):7.1f} us, lab build {batch_time_us(run_lab):7.1f} us",
              flush=True)
    standalone(lib, "torch process, again")


if __name__ == "__main__":
    lib = load(sys.argv[1])
    if "--no-torch" in sys.argv:
        standalone(lib, "no torch")
    else:
        with_torch(lib)
