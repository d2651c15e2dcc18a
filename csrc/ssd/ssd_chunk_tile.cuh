// Device pieces of the chunk-parallel CUDA SSD forward (ssd_chunk_kernel.cuh), no torch: 8 warps a CTA, one
// 64-token tile x 64 channels (p block) x n <= 128 at a time. The fused kernel (ssd_fwd_kernel.cuh) keeps the
// 4-warp pieces of ssd_common.cuh; these are separate because the 4-warp split needs 255 registers and spills in
// the chunk scan (state 64 + S 32 + Y 32 accumulators a lane).
//
// Warp w = (r = w % 4, hh = w / 4). Who owns what (m16n8 accumulator layout, lane (g, q) = (lane / 4, lane % 4)):
//   state h (64 channels x 16 nk columns, fp32, mma accumulators): channels 16r.., columns 64hh..64hh+63: 32 floats
//   S = C B^T (64 x 64, causal): rows 16r.., 16-column blocks kb <= r with kb % 2 == hh (at most 2): 16 floats; the
//       masked, decayed S goes to shared memory once (bf16 / fp32 tile type) and is read back as A fragments
//   Y (64 tokens x 64 channels): rows 16r.., channels 32hh..32hh+31: 16 floats, staged fp32 in shared memory for
//       the epilogue (+ D x, ypre, gate) with 16-byte global loads / stores (8 channels a thread)
// bf16 tiles: every fragment comes from ldmatrix.x4 (rows 16 bytes apart in banks: row pitch = 16 * k + 16 bytes,
// so the 8 row addresses of a matrix hit distinct 16-byte bank groups); fp32 tiles (fp32 / fp16 inputs, 3xTF32):
// scalar fragment loads (Frag<float>).
// Decays: a = in-tile inclusive cumsum of dt' A (two 32-token halves, cum_at), every factor exp(a_t - a_s) with
// s <= t or exp(a_last - a_s) (<= 1, never exp(large) * exp(-large)).
#pragma once
#include "ssd/ssd_common.cuh"

namespace mamba_kernels {
namespace ssd_cuda {

constexpr int kCWarps = 8;
constexpr int kCThreads = 32 * kCWarps;

// Two floats in one 8-byte access (float2 without depending on the CUDA vector types: the CPU emulation lacks it).
struct alignas(8) F2 {
  float x, y;
};

__device__ __forceinline__ float bits_f(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
#endif
}

// ------------------------------------------------------------------------------------------ fragment loaders
// CLd<E>::a       A (16 x 16), A[m][k] = base[m * ld + k]
// CLd<E>::b_nk    two n8 B tiles, B[k][c] = base[c * ld + k] (c 0..7 -> b0, 8..15 -> b1)
// CLd<E>::b_kn    two n8 B tiles, B[k][c] = base[k * ld + c]
// CLd<E>::at_w    A (16 x 16), A[m][k] = base[k * ld + m] * w(k), w = (w(2q), w(2q+1), w(2q+8), w(2q+9))
template <typename E> struct CLd {
  using F = Frag<E>;
  using A = typename F::A;
  using B = typename F::B;
  static __device__ __forceinline__ A a(const E* base, int ld) {
    const int lane = threadIdx.x & 31;
    return F::a_rows(base, ld, lane >> 2, lane & 3);
  }
  static __device__ __forceinline__ void b_nk(B& b0, B& b1, const E* base, int ld) {
    const int lane = threadIdx.x & 31;
    b0 = F::b_cols(base, ld, lane >> 2, lane & 3);
    b1 = F::b_cols(base + 8 * ld, ld, lane >> 2, lane & 3);
  }
  static __device__ __forceinline__ void b_kn(B& b0, B& b1, const E* base, int ld) {
    const int lane = threadIdx.x & 31;
    b_rows2<E>(b0, b1, base, ld, lane >> 2, lane & 3);
  }
  static __device__ __forceinline__ A at_w(const E* base, int ld, const float (&w)[4]) {
    const int lane = threadIdx.x & 31;
    return a_t_weighted<E>(base + 2 * (lane & 3) * ld + (lane >> 2), ld, w[0], w[1], w[2], w[3]);
  }
};

template <> struct CLd<__nv_bfloat16> {
  using E = __nv_bfloat16;
  using A = Frag<E>::A;
  using B = Frag<E>::B;
  // matrices (rows 0-7, k 0-7) (rows 8-15, k 0-7) (rows 0-7, k 8-15) (rows 8-15, k 8-15) = a0..a3
  static __device__ __forceinline__ A a(const E* base, int ld) {
    const int l = threadIdx.x & 31;
    A f;
    ldsm_x4(f.r, base + ((l & 7) + 8 * ((l >> 3) & 1)) * ld + 8 * (l >> 4));
    return f;
  }
  // matrices (c 0-7, k 0-7) (c 0-7, k 8-15) (c 8-15, k 0-7) (c 8-15, k 8-15) = b0.r0, b0.r1, b1.r0, b1.r1
  static __device__ __forceinline__ void b_nk(B& b0, B& b1, const E* base, int ld) {
    const int l = threadIdx.x & 31;
    uint32_t r[4];
    ldsm_x4(r, base + ((l & 7) + 8 * (l >> 4)) * ld + 8 * ((l >> 3) & 1));
    b0.r[0] = r[0]; b0.r[1] = r[1];
    b1.r[0] = r[2]; b1.r[1] = r[3];
  }
  static __device__ __forceinline__ void b_kn(B& b0, B& b1, const E* base, int ld) {
    const int lane = threadIdx.x & 31;
    b_rows2<E>(b0, b1, base, ld, lane >> 2, lane & 3);
  }
  // transposed matrices (k 0-7, m 0-7) (k 0-7, m 8-15) (k 8-15, m 0-7) (k 8-15, m 8-15) = a0..a3, then each bf16
  // scaled by its token's weight in fp32 and rounded once
  static __device__ __forceinline__ A at_w(const E* base, int ld, const float (&w)[4]) {
    const int l = threadIdx.x & 31, m = l >> 3;
    uint32_t r[4];
    ldsm_x4_trans(r, base + ((l & 7) + 8 * (m >> 1)) * ld + 8 * (m & 1));
    A f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float wl = w[i < 2 ? 0 : 2], wh = w[i < 2 ? 1 : 3];
      f.r[i] = pack_bf16(bits_f(r[i] << 16) * wl, bits_f(r[i] & 0xffff0000u) * wh);
    }
    return f;
  }
};

// Two neighbouring values (even column) into a tile row: one 32-bit (bf16) or 64-bit (fp32) store.
__device__ __forceinline__ void st_pair(__nv_bfloat16* d, float a, float b) {
  *reinterpret_cast<uint32_t*>(d) = pack_bf16(a, b);
}
__device__ __forceinline__ void st_pair(float* d, float a, float b) { *reinterpret_cast<F2*>(d) = F2{a, b}; }

// ------------------------------------------------------------------------------------------ shared memory
// Scan kernel: x (64 x ldx), B, C (64 x ldn), h (64 channels x ldn, operand copy of the state), S (64 x ldx),
// Y staging (64 x ldy fp32), dt' and half-tile cumsums (2 x 64 fp32). bf16, n = 128: 86.5 KB (2 CTAs an SM).
// State kernel: two buffers of x, B, dt' / cumsum (double buffering): 2 x 26.6 KB at bf16, n = 128.
struct CLayout {
  int ldx, ldn, ldy, nk;
  int64_t off_b, off_c, off_h, off_s, off_y, off_f, bytes;
  int64_t st_b, st_f, st_buf, st_bytes;
};

template <typename E>
__host__ __device__ inline CLayout chunk_layout(int64_t n) {
  CLayout s;
  const int pad = 16 / int(sizeof(E));
  s.nk = int((n + 15) / 16);
  s.ldx = kBP + pad;
  s.ldn = 16 * s.nk + pad;
  s.ldy = kBP + 4;
  const int64_t es = int64_t(sizeof(E)), xb = int64_t(kTile) * s.ldx * es, nb = int64_t(kTile) * s.ldn * es;
  s.off_b = xb;
  s.off_c = s.off_b + nb;
  s.off_h = s.off_c + nb;
  s.off_s = s.off_h + int64_t(kBP) * s.ldn * es;
  s.off_y = s.off_s + xb;
  s.off_f = s.off_y + int64_t(kTile) * s.ldy * 4;
  s.bytes = s.off_f + 2 * kTile * 4;
  s.st_b = xb;
  s.st_f = xb + nb;
  s.st_buf = s.st_f + 2 * kTile * 4;
  s.st_bytes = 2 * s.st_buf;
  return s;
}

// One CTA's tiles and fixed coordinates (global bases at (row, token 0, head / group, ch0)).
template <typename in_t>
struct CCtx {
  using E = typename TileType<in_t>::E;
  E *xs, *bs, *cs, *hs, *ss;
  float *ys, *dts, *acum;
  int ldx, ldn, ldy, nk, n, nch, ch0;
  int64_t head;
  float A, bias;
  const in_t *xg, *bg, *cg, *zg;
};

template <typename in_t>
__device__ __forceinline__ CCtx<in_t> make_cctx(const SsdFwdCudaParams& p, void* smem_v, int64_t row, int64_t head,
                                                int ch0) {
  using E = typename TileType<in_t>::E;
  char* smem = static_cast<char*>(smem_v);
  const CLayout L = chunk_layout<E>(p.dstate);
  CCtx<in_t> c;
  c.xs = reinterpret_cast<E*>(smem);
  c.bs = reinterpret_cast<E*>(smem + L.off_b);
  c.cs = reinterpret_cast<E*>(smem + L.off_c);
  c.hs = reinterpret_cast<E*>(smem + L.off_h);
  c.ss = reinterpret_cast<E*>(smem + L.off_s);
  c.ys = reinterpret_cast<float*>(smem + L.off_y);
  c.dts = reinterpret_cast<float*>(smem + L.off_f);
  c.acum = c.dts + kTile;
  c.ldx = L.ldx;
  c.ldn = L.ldn;
  c.ldy = L.ldy;
  c.nk = L.nk;
  set_head_fields<in_t>(c, p, row, head, ch0);
  return c;
}

// The state kernel's buffer `buf` (x, B, dt' / cumsum; no C / h / S / Y).
template <typename in_t>
__device__ __forceinline__ void cctx_state_buf(CCtx<in_t>& c, void* smem_v, int buf) {
  using E = typename TileType<in_t>::E;
  const CLayout L = chunk_layout<E>(c.n);
  char* b = static_cast<char*>(smem_v) + buf * L.st_buf;
  c.xs = reinterpret_cast<E*>(b);
  c.bs = reinterpret_cast<E*>(b + L.st_b);
  c.dts = reinterpret_cast<float*>(b + L.st_f);
  c.acum = c.dts + kTile;
}

template <typename in_t>
__device__ __forceinline__ float ccum(const CCtx<in_t>& c, int t) {
  return c.acum[t] + (t >= 32 ? c.acum[31] : 0.f);
}

// ------------------------------------------------------------------------------------------ tile loads
// Issues the copies of x, B (and C) of tl tokens from t0 (16-byte cp.async where rows allow, zero past tl / p / n;
// synchronous scalar loads else) and writes dt' and its half-tile cumsums (warps 0-1, shuffle scan; dt' = 0 past
// tl: decay 1, no input). The caller commits, waits and syncs.
template <typename in_t>
__device__ __forceinline__ void c_issue_tile(const SsdFwdCudaParams& p, const CCtx<in_t>& c, int64_t row, int64_t t0,
                                             int tl, bool need_c) {
  using E = typename TileType<in_t>::E;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int nfull = 16 * c.nk;
  bool done = false;
  if constexpr (SameT<in_t, E>::value) {
    if (p.vec16) {
      constexpr int VE = 16 / int(sizeof(E));
      constexpr int xc = kBP / VE;
      for (int i = tid; i < kTile * xc; i += kCThreads) {
        const int t = i / xc, cc = (i % xc) * VE;
        E* dx = c.xs + t * c.ldx + cc;
        if (t < tl && cc < c.nch) cp_async16(dx, c.xg + (t0 + t) * p.x_l_stride + cc); else zero16(dx);
      }
      const int bc = nfull / VE;
      for (int i = tid; i < kTile * bc; i += kCThreads) {
        const int t = i / bc, cc = (i % bc) * VE;
        const bool ok = t < tl && cc < c.n;
        E* db = c.bs + t * c.ldn + cc;
        if (ok) cp_async16(db, c.bg + (t0 + t) * p.B_l_stride + cc); else zero16(db);
        if (need_c) {
          E* dc = c.cs + t * c.ldn + cc;
          if (ok) cp_async16(dc, c.cg + (t0 + t) * p.C_l_stride + cc); else zero16(dc);
        }
      }
      done = true;
    }
  }
  if (!done) {
    for (int i = tid; i < kTile * kBP; i += kCThreads) {
      const int t = i / kBP, cc = i % kBP;
      c.xs[t * c.ldx + cc] = from_f<E>(t < tl && cc < c.nch ? to_f(c.xg[(t0 + t) * p.x_l_stride + cc]) : 0.f);
    }
    for (int i = tid; i < kTile * nfull; i += kCThreads) {
      const int t = i / nfull, cc = i % nfull;
      const bool ok = t < tl && cc < c.n;
      c.bs[t * c.ldn + cc] = from_f<E>(ok ? to_f(c.bg[(t0 + t) * p.B_l_stride + cc]) : 0.f);
      if (need_c) c.cs[t * c.ldn + cc] = from_f<E>(ok ? to_f(c.cg[(t0 + t) * p.C_l_stride + cc]) : 0.f);
    }
  }
  if (warp < 2) {
    const int t = 32 * warp + lane;
    float d = 0.f;
    if (t < tl) {
      const int64_t o = row * p.dt_batch_stride + (t0 + t) * p.dt_l_stride + c.head * p.dt_head_stride;
      d = (p.dt_f32 ? static_cast<const float*>(p.dt)[o] : to_f(static_cast<const in_t*>(p.dt)[o])) + c.bias;
      if (p.dt_softplus) d = d <= 20.f ? log1pf(expf(d)) : d;
      if (p.has_dt_limit) d = fminf(fmaxf(d, p.dt_min), p.dt_max);
    }
    float a = d * c.A;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const float v = __shfl_up_sync(0xffffffffu, a, o);
      if (lane >= o) a += v;
    }
    c.dts[t] = d;
    c.acum[t] = a;
  }
}

// ------------------------------------------------------------------------------------------ state accumulator
// hacc[j][e]: channel 16r + g (e < 2) or 16r + g + 8, column 64hh + 8j + 2q + (e & 1). src / dst: fp32 rows of n
// floats from channel ch0 (src nullable: zero). Column pairs by 8-byte accesses when n is even.
__device__ __forceinline__ void c_state_load(float (&hacc)[8][4], const float* src, int nch, int n) {
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int r0 = 16 * (w & 3) + g, c0 = 64 * (w >> 2) + 2 * q;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int h2 = 0; h2 < 2; ++h2) {
      const int r = r0 + 8 * h2, cc = c0 + 8 * j;
      float v0 = 0.f, v1 = 0.f;
      if (src && r < nch && cc < n) {
        const float* s = src + int64_t(r) * n + cc;
        if ((n & 1) == 0) {
          const F2 t = *reinterpret_cast<const F2*>(s);
          v0 = t.x; v1 = t.y;
        } else {
          v0 = s[0];
          v1 = cc + 1 < n ? s[1] : 0.f;
        }
      }
      hacc[j][2 * h2] = v0;
      hacc[j][2 * h2 + 1] = v1;
    }
  }
}
__device__ __forceinline__ void c_state_store(const float (&hacc)[8][4], float* dst, int nch, int n) {
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int r0 = 16 * (w & 3) + g, c0 = 64 * (w >> 2) + 2 * q;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int h2 = 0; h2 < 2; ++h2) {
      const int r = r0 + 8 * h2, cc = c0 + 8 * j;
      if (r < nch && cc < n) {
        float* d = dst + int64_t(r) * n + cc;
        if ((n & 1) == 0) {
          *reinterpret_cast<F2*>(d) = F2{hacc[j][2 * h2], hacc[j][2 * h2 + 1]};
        } else {
          d[0] = hacc[j][2 * h2];
          if (cc + 1 < n) d[1] = hacc[j][2 * h2 + 1];
        }
      }
    }
  }
}
// Operand copy of the state (all 64 rows, columns 0..16 nk - 1) in c.hs; the caller syncs before readers.
template <typename in_t>
__device__ __forceinline__ void c_state_to_smem(const float (&hacc)[8][4], const CCtx<in_t>& c) {
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
  const int r0 = 16 * (w & 3) + g, c0 = 64 * (w >> 2) + 2 * q;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    if (64 * (w >> 2) + 8 * j < 16 * c.nk) {
      st_pair(c.hs + r0 * c.ldn + c0 + 8 * j, hacc[j][0], hacc[j][1]);
      st_pair(c.hs + (r0 + 8) * c.ldn + c0 + 8 * j, hacc[j][2], hacc[j][3]);
    }
  }
}

// ------------------------------------------------------------------------------------------ state update
// h = exp(a_last) h + (x o w)^T B over the tile's k16 token steps, w_s = exp(a_last - a_s) dt'_s. Returns a_last.
template <typename in_t>
__device__ __forceinline__ float c_update(float (&hacc)[8][4], const CCtx<in_t>& c, int tl) {
  using E = typename TileType<in_t>::E;
  using L = CLd<E>;
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, q = lane & 3, r = w & 3, hh = w >> 2;
  const float a_last = ccum(c, kTile - 1);
  const float dl = expf(a_last);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    hacc[j][0] *= dl; hacc[j][1] *= dl; hacc[j][2] *= dl; hacc[j][3] *= dl;
  }
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    if (16 * kk < tl) {
      const int s0 = 16 * kk + 2 * q;
      const float wv[4] = {expf(a_last - ccum(c, s0)) * c.dts[s0], expf(a_last - ccum(c, s0 + 1)) * c.dts[s0 + 1],
                           expf(a_last - ccum(c, s0 + 8)) * c.dts[s0 + 8],
                           expf(a_last - ccum(c, s0 + 9)) * c.dts[s0 + 9]};
      const typename L::A fa = L::at_w(c.xs + 16 * kk * c.ldx + 16 * r, c.ldx, wv);
#pragma unroll
      for (int j = 0; j < 8; j += 2) {
        if (64 * hh + 8 * j < 16 * c.nk) {
          typename L::B b0, b1;
          L::b_kn(b0, b1, c.bs + 16 * kk * c.ldn + 64 * hh + 8 * j, c.ldn);
          Frag<E>::mma(hacc[j], fa, b0);
          Frag<E>::mma(hacc[j + 1], fa, b1);
        }
      }
    }
  }
  return a_last;
}

// ------------------------------------------------------------------------------------------ output pieces
// Raw C B^T cache of the head-group scan (MK_SSD_SCAN_HEADS = H > 1: one CTA walks H heads of one group over the
// same chunk, and C B^T does not depend on the head, only its decay mask does). Each lane keeps its own accumulator
// values of the warp's causal blocks (10 of the 16 16 x 16 blocks of a 64 x 64 tile), one word a value pair in the
// tile type (bf16 pair in 32 bits, fp32 pair in 64), lane-consecutive: conflict-free, and a lane only ever reads
// what it wrote itself (no barrier needed between the write and the reads of later heads beyond the tile barriers).
// Size a tile: 10 blocks x 4 pairs x 32 lanes words = 5 KB (bf16) / 10 KB (fp32); at Q = 256, 20 / 40 KB.
template <typename E> struct CbWord { using T = uint32_t; };
template <> struct CbWord<float> { using T = F2; };
constexpr int kCbBlocks = 10;
__device__ __forceinline__ void cb_put(uint32_t* d, float& a, float& b) {  // stores and rounds a, b as stored
  *d = pack_bf16(a, b);
  a = bits_f(*d << 16);
  b = bits_f(*d & 0xffff0000u);
}
__device__ __forceinline__ void cb_put(F2* d, float& a, float& b) { *d = F2{a, b}; }
__device__ __forceinline__ void cb_get(const uint32_t* s, float& a, float& b) {
  a = bits_f(*s << 16);
  b = bits_f(*s & 0xffff0000u);
}
__device__ __forceinline__ void cb_get(const F2* s, float& a, float& b) { a = s->x; b = s->y; }

// S = C B^T on the warp's causal 16-column blocks, masked (s <= t) and scaled by exp(a_t - a_s) dt'_s, into c.ss.
// kCache false: plain. kCache (head-group scan), first: C B^T by mma, stored to cb (this tile's cache), then used
// rounded as stored (so every head of the group sees the same values); not first: C B^T read from cb. first is a
// run-time value so the scan kernel's head loop holds one copy of the tile walk (two copies spill more).
template <typename in_t, bool kCache = false>
__device__ __forceinline__ void c_s_phase(const CCtx<in_t>& c,
                                          typename CbWord<typename TileType<in_t>::E>::T* cb = nullptr,
                                          bool first = true) {
  using E = typename TileType<in_t>::E;
  using L = CLd<E>;
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3, r = w & 3, hh = w >> 2;
  float s[2][2][4];
#pragma unroll
  for (int u = 0; u < 2; ++u)
#pragma unroll
    for (int i = 0; i < 2; ++i) s[u][i][0] = s[u][i][1] = s[u][i][2] = s[u][i][3] = 0.f;
  if (!kCache || first) {
    for (int kk = 0; kk < c.nk; ++kk) {
      const typename L::A fa = L::a(c.cs + 16 * r * c.ldn + 16 * kk, c.ldn);
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        const int kb = hh + 2 * u;
        if (kb <= r) {
          typename L::B b0, b1;
          L::b_nk(b0, b1, c.bs + 16 * kb * c.ldn + 16 * kk, c.ldn);
          Frag<E>::mma(s[u][0], fa, b0);
          Frag<E>::mma(s[u][1], fa, b1);
        }
      }
    }
  }
  if constexpr (kCache) {
    // block slot of (warp, u): warps' causal block counts 1 1 2 2 0 1 1 2, prefix sums 0 1 2 4 6 6 7 8 (nibbles)
    const int pre = int((0x87664210u >> (4 * w)) & 15u);
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      if (hh + 2 * u <= r) {
#pragma unroll
        for (int k = 0; k < 4; ++k) {  // (i, h2) pairs
          auto* d = cb + (int64_t(pre + u) * 4 + k) * 32 + lane;
          if (first) cb_put(d, s[u][k >> 1][2 * (k & 1)], s[u][k >> 1][2 * (k & 1) + 1]);
          else cb_get(d, s[u][k >> 1][2 * (k & 1)], s[u][k >> 1][2 * (k & 1) + 1]);
        }
      }
    }
  }
  const int t0 = 16 * r + g;
  const float at[2] = {ccum(c, t0), ccum(c, t0 + 8)};
#pragma unroll
  for (int u = 0; u < 2; ++u) {
    const int kb = hh + 2 * u;
    if (kb <= r) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int sc = 16 * kb + 8 * i + 2 * q;
        const float as0 = ccum(c, sc), as1 = ccum(c, sc + 1), d0 = c.dts[sc], d1 = c.dts[sc + 1];
#pragma unroll
        for (int h2 = 0; h2 < 2; ++h2) {
          const int t = t0 + 8 * h2;
          const float v0 = sc <= t ? s[u][i][2 * h2] * expf(at[h2] - as0) * d0 : 0.f;
          const float v1 = sc + 1 <= t ? s[u][i][2 * h2 + 1] * expf(at[h2] - as1) * d1 : 0.f;
          st_pair(c.ss + t * c.ldx + sc, v0, v1);
        }
      }
    }
  }
}

// Y = exp(a_t) C h^T + S x on the warp's 16 rows x 32 channels, staged fp32 in c.ys.
template <typename in_t>
__device__ __forceinline__ void c_y_phase(const CCtx<in_t>& c) {
  using E = typename TileType<in_t>::E;
  using L = CLd<E>;
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3, r = w & 3, hh = w >> 2;
  float y[4][4];
#pragma unroll
  for (int j = 0; j < 4; ++j) y[j][0] = y[j][1] = y[j][2] = y[j][3] = 0.f;
  for (int kk = 0; kk < c.nk; ++kk) {
    const typename L::A fa = L::a(c.cs + 16 * r * c.ldn + 16 * kk, c.ldn);
    typename L::B b0, b1, b2, b3;
    L::b_nk(b0, b1, c.hs + 32 * hh * c.ldn + 16 * kk, c.ldn);
    L::b_nk(b2, b3, c.hs + (32 * hh + 16) * c.ldn + 16 * kk, c.ldn);
    Frag<E>::mma(y[0], fa, b0);
    Frag<E>::mma(y[1], fa, b1);
    Frag<E>::mma(y[2], fa, b2);
    Frag<E>::mma(y[3], fa, b3);
  }
  const int t0 = 16 * r + g;
  const float e0 = expf(ccum(c, t0)), e1 = expf(ccum(c, t0 + 8));
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    y[j][0] *= e0; y[j][1] *= e0;
    y[j][2] *= e1; y[j][3] *= e1;
  }
  for (int kb = 0; kb <= r; ++kb) {
    const typename L::A fa = L::a(c.ss + 16 * r * c.ldx + 16 * kb, c.ldx);
    typename L::B b0, b1, b2, b3;
    L::b_kn(b0, b1, c.xs + 16 * kb * c.ldx + 32 * hh, c.ldx);
    L::b_kn(b2, b3, c.xs + 16 * kb * c.ldx + 32 * hh + 16, c.ldx);
    Frag<E>::mma(y[0], fa, b0);
    Frag<E>::mma(y[1], fa, b1);
    Frag<E>::mma(y[2], fa, b2);
    Frag<E>::mma(y[3], fa, b3);
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int cc = 32 * hh + 8 * j + 2 * q;
    *reinterpret_cast<F2*>(c.ys + t0 * c.ldy + cc) = F2{y[j][0], y[j][1]};
    *reinterpret_cast<F2*>(c.ys + (t0 + 8) * c.ldy + cc) = F2{y[j][2], y[j][3]};
  }
}

// 8 elements of the input type: one (bf16 / fp16) or two (fp32) 16-byte accesses.
template <typename T> struct alignas(16) V8 {
  T v[8];
  __device__ __forceinline__ void load(const T* s) {
#pragma unroll
    for (int i = 0; i < int(sizeof(T)) / 2; ++i)
      reinterpret_cast<uint4*>(v)[i] = reinterpret_cast<const uint4*>(s)[i];
  }
  __device__ __forceinline__ void store(T* d) const {
#pragma unroll
    for (int i = 0; i < int(sizeof(T)) / 2; ++i)
      reinterpret_cast<uint4*>(d)[i] = reinterpret_cast<const uint4*>(v)[i];
  }
};

// Epilogue of the tile: thread i handles tokens (i + 256 k) / 8, channels 8 ((i + 256 k) % 8).. of the staged Y:
// + D x, ypre, * silu(z), store. vec: 16-byte global accesses (8 channels in range), z from zr (loaded by
// c_prefetch_z); else element by element.
template <typename in_t>
__device__ __forceinline__ void c_prefetch_z(const SsdFwdCudaParams& p, const CCtx<in_t>& c, int64_t t0, int tl,
                                             bool vec, V8<in_t> (&zr)[2]) {
  if (!p.z || !vec) return;
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const int gi = threadIdx.x + kCThreads * k, t = gi >> 3, c8 = (gi & 7) * 8;
    if (t < tl && c8 < c.nch) zr[k].load(c.zg + (t0 + t) * p.z_l_stride + c8);
  }
}

template <typename in_t>
__device__ __forceinline__ void c_out_pass(const SsdFwdCudaParams& p, const CCtx<in_t>& c, int64_t row, int64_t t0,
                                           int tl, bool vec, const V8<in_t> (&zr)[2]) {
#pragma unroll
  for (int k = 0; k < 2; ++k) {
    const int gi = threadIdx.x + kCThreads * k, t = gi >> 3, c8 = (gi & 7) * 8;
    if (t >= tl || c8 >= c.nch) continue;
    float v[8];
    const float4 y0 = *reinterpret_cast<const float4*>(c.ys + t * c.ldy + c8);
    const float4 y1 = *reinterpret_cast<const float4*>(c.ys + t * c.ldy + c8 + 4);
    v[0] = y0.x; v[1] = y0.y; v[2] = y0.z; v[3] = y0.w;
    v[4] = y1.x; v[5] = y1.y; v[6] = y1.z; v[7] = y1.w;
    if (p.D) {
#pragma unroll
      for (int i = 0; i < 8; ++i)
        if (c8 + i < c.nch)
          v[i] += p.D[p.D_per_channel ? c.head * p.headdim + c.ch0 + c8 + i : c.head] * to_f(c.xs[t * c.ldx + c8 + i]);
    }
    const int64_t oo = row * p.out_batch_stride + (t0 + t) * p.out_l_stride + c.head * p.out_head_stride + c.ch0 + c8;
    in_t* out = static_cast<in_t*>(p.out) + oo;
    in_t* yp = p.ypre ? static_cast<in_t*>(p.ypre) + oo : nullptr;
    if (vec) {
      V8<in_t> o;
      if (p.z) {
        if (yp) {
#pragma unroll
          for (int i = 0; i < 8; ++i) o.v[i] = from_f<in_t>(v[i]);
          o.store(yp);
        }
#pragma unroll
        for (int i = 0; i < 8; ++i) v[i] *= silu_f(to_f(zr[k].v[i]));
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) o.v[i] = from_f<in_t>(v[i]);
      o.store(out);
    } else {
      for (int i = 0; i < 8 && c8 + i < c.nch; ++i) {
        float vi = v[i];
        if (p.z) {
          if (yp) yp[i] = from_f<in_t>(vi);
          vi *= silu_f(to_f(c.zg[(t0 + t) * p.z_l_stride + c8 + i]));
        }
        out[i] = from_f<in_t>(vi);
      }
    }
  }
}

}  // namespace ssd_cuda
}  // namespace mamba_kernels
