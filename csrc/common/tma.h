// Tensor-memory-accelerator copies (sm_90: cp.async.bulk.tensor) of bf16 boxes whose shared copy is
// 128-byte-swizzled: stores (shared -> global: one instruction of one thread writes a whole box, without registers,
// and the warps that staged it go on) and loads (global -> shared, completing on an mbarrier). Why (the SSD forward
// state stage, F1): its h_in stores from registers held the data registers until the store queue drained (ncu: 54% of
// the stall samples in the store phase), and a plain bulk copy needs the global layout in shared memory, i.e.
// unswizzled rows of 256 bytes, where the stmatrix that stages them conflicts 8 ways. The swizzled box takes stmatrix
// without conflicts and the copy engine un-swizzles it.
//
// TmaDesc is the 128-byte tensor map (CUtensorMap) a kernel reads from its parameters (the kernel's parameter must be
// __grid_constant__ so that its address is the parameter's own). The CPU emulation (tests/cuda_emu, MK_CUDA_EMU)
// keeps its own description in the same bytes and copies box by box.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "common/mbarrier.h"

#if !defined(MK_CUDA_EMU)
#include <cuda.h>
#endif

namespace mamba_kernels {

struct alignas(64) TmaDesc {
  unsigned char bytes[128];
};

#if defined(MK_CUDA_EMU)
// The emulation's description: a bf16 tensor of rows x mids x cols (mid and row strides in bytes), boxes of box_rows
// x 1 x box_cols (box_cols * 2 == 128: one swizzle span a box row).
struct TmaEmuMap {
  void* base;
  uint64_t rows, mids, cols, mid_stride, row_stride;
  uint32_t box_rows, box_cols;
};
static_assert(sizeof(TmaEmuMap) <= sizeof(TmaDesc), "the emulation's map fits the descriptor");
inline long long tma_emu_stores = 0, tma_emu_loads = 0;  // emulated box copies (a driver reports them)
// Element (r, mid, c) of the emulated tensor, or nullptr past its end (where the GPU's copies clip or zero-fill).
inline char* tma_emu_at(const TmaEmuMap& m, int64_t r, int64_t mid, int64_t c) {
  if (r < 0 || r >= int64_t(m.rows) || mid < 0 || mid >= int64_t(m.mids) || c < 0 || c >= int64_t(m.cols))
    return nullptr;
  return static_cast<char*>(m.base) + r * int64_t(m.row_stride) + mid * int64_t(m.mid_stride) + c * 2;
}
#endif

// Host: `map` for loads / stores of (box_rows x 1 x 64) bf16 boxes (128-byte box rows, 128-byte swizzle) of the
// tensor at `base`: element (r, m, c) at base + r row_stride + m mid_stride + 2 c (r < rows, m < mids, c < cols; base
// and the strides multiples of 16). A matrix is mids = 1. Returns nullptr or an error.
inline const char* tma_encode_bf16(TmaDesc* map, void* base, uint64_t rows, uint64_t mids, uint64_t cols,
                                   uint64_t mid_stride, uint64_t row_stride, uint32_t box_rows) {
  constexpr uint32_t kBoxCols = 64;  // 128 bytes: the 128-byte swizzle's span
  if (reinterpret_cast<uintptr_t>(base) % 16 != 0 || row_stride % 16 != 0 || mid_stride % 16 != 0)
    return "tma: 16-byte alignment";
  if (rows >= (uint64_t(1) << 31) || mids >= (uint64_t(1) << 31) || cols >= (uint64_t(1) << 31) || rows == 0 ||
      mids == 0 || cols == 0 || box_rows == 0 || box_rows > 256 || row_stride >= (uint64_t(1) << 40) ||
      mid_stride >= (uint64_t(1) << 40))
    return "tma: sizes out of range";
#if defined(MK_CUDA_EMU)
  std::memset(map, 0, sizeof(TmaDesc));
  TmaEmuMap m{base, rows, mids, cols, mid_stride, row_stride, box_rows, kBoxCols};
  std::memcpy(map->bytes, &m, sizeof(m));
  return nullptr;
#elif !defined(CUDART_VERSION) || CUDART_VERSION < 12000
  (void)map; (void)base; (void)mids; (void)mid_stride;
  return "tma: tensor maps need a CUDA 12 build";  // (the callers keep their cp.async / register paths)
#else
  using Encode = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                              const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                              CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
  static Encode encode = [] {  // the driver's function through the runtime (no libcuda link)
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult q{};
#if CUDART_VERSION >= 12050
    const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q);
#else
    const cudaError_t e = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &fn, cudaEnableDefault, &q);
#endif
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess) fn = nullptr;
    return reinterpret_cast<Encode>(fn);
  }();
  if (encode == nullptr) return "tma: cuTensorMapEncodeTiled is not available";
  static_assert(sizeof(CUtensorMap) == sizeof(TmaDesc), "CUtensorMap is 128 bytes");
  const cuuint64_t dims[3] = {cols, mids, rows};
  const cuuint64_t strides[2] = {mid_stride, row_stride};
  const cuuint32_t box[3] = {kBoxCols, 1, box_rows};
  const cuuint32_t estr[3] = {1, 1, 1};
  const CUresult r = encode(reinterpret_cast<CUtensorMap*>(map), CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, base, dims,
                            strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? nullptr : "tma: cuTensorMapEncodeTiled failed";
#endif
}

// Device: the box at (row, mid, col) of the tensor <- the 128-byte-swizzled box at `ssrc` (1024-byte aligned; box row
// r's 16-byte chunk j at r * 128 + ((j ^ r) & 7) * 16, as sw128_offset). The staging threads' shared-memory writes
// must be made visible to the async proxy first (fence_proxy_async, then a barrier). Rows / columns past the tensor
// are not written.
__device__ __forceinline__ void tma_store_box(const TmaDesc* map, const void* ssrc, int row, int mid, int col) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(ssrc));
  asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];\n" ::"l"(map),
               "r"(s), "r"(col), "r"(mid), "r"(row)
               : "memory");
#elif defined(MK_CUDA_EMU)
  TmaEmuMap m;
  std::memcpy(&m, map->bytes, sizeof(m));
  ++tma_emu_stores;
  const char* src = static_cast<const char*>(ssrc);
  for (uint32_t r = 0; r < m.box_rows; ++r)
    for (uint32_t j = 0; j < 8; ++j)  // 16-byte chunks of the box row (8 bf16 each)
      if (char* dst = tma_emu_at(m, row + int64_t(r), mid, col + int64_t(j) * 8))
        std::memcpy(dst, src + r * 128 + ((j ^ r) & 7) * 16, 16);
#else
  (void)map; (void)ssrc; (void)row; (void)mid; (void)col;
  __trap();
#endif
}
// Device: the box at (row, mid, col) of the tensor -> the 128-byte-swizzled box at `sdst` (1024-byte aligned; the
// layout tma_store_box reads), completing the box's bytes as transactions on the shared-memory barrier `bar` (mbar_*
// below); elements past the tensor are zeros (and count). Issued by one thread; readers wait on `bar`.
__device__ __forceinline__ void tma_load_box(const TmaDesc* map, void* sdst, uint64_t* bar, int row, int mid,
                                             int col) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(sdst));
  const unsigned b = static_cast<unsigned>(__cvta_generic_to_shared(bar));
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], [%2];\n"
      ::"r"(d), "l"(map), "r"(b), "r"(col), "r"(mid), "r"(row)
      : "memory");
#elif defined(MK_CUDA_EMU)
  TmaEmuMap m;
  std::memcpy(&m, map->bytes, sizeof(m));
  ++tma_emu_loads;
  char* dst = static_cast<char*>(sdst);
  cuda_emu::defer_copy([m, dst, bar, row, mid, col] {  // lands later, out of order (cuda_emu::mbar_wait)
    for (uint32_t r = 0; r < m.box_rows; ++r)
      for (uint32_t j = 0; j < 8; ++j) {  // 16-byte chunks of the box row; past the tensor: zeros
        char* d = dst + r * 128 + ((j ^ r) & 7) * 16;
        if (const char* src = tma_emu_at(m, row + int64_t(r), mid, col + int64_t(j) * 8)) std::memcpy(d, src, 16);
        else std::memset(d, 0, 16);
      }
    cuda_emu::mbar_complete_tx(bar, m.box_rows * 128u);
  });
#else
  (void)map; (void)sdst; (void)bar; (void)row; (void)mid; (void)col;
  __trap();
#endif
}

// Shared-memory transaction barriers for the loads above (mbar_init / mbar_expect_tx / mbar_arrive / mbar_wait):
// common/mbarrier.h.

// Bulk groups (tma_commit / tma_wait_read / tma_wait_all): common/mbarrier.h.

}  // namespace mamba_kernels
