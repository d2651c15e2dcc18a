// Mamba-2 SSM verify step, lean kernel (CUDA headers only, no torch). Same contract and cache format as
// verify_ssm_kernel (docs/verify_step_design.md); launch_verify_ssm uses it for the Mamba-2 layout with
// power-of-two P, N whose state tile fits two passes (registers + shared memory) and 16-byte aligned rows; the general kernel remains
// the fallback (Mamba-1, the fused step, odd shapes or strides).
//
// Why a second kernel: the essential work of a (row, head) is one pass over its P x N state (k FMAs an element);
// the general kernel spent ~14x that on staging, 64-bit index division and runtime dtype dispatch (ncu on the
// H200: ~32k warp instructions per block at batch 64, 0.42 issued per cycle per scheduler). Here the input dtype
// is a template parameter, every row is whole 16-byte chunks (shifts, no division), each small input is staged by
// one cp.async per thread (nothing held in registers while the state tile streams in) and the epilogue handles 8
// (or 4) channels per thread with 16-byte loads and stores.
//
// Block = (batch row, head), 128 threads (4 warps; every per-warp fixed cost is paid by as few warps as possible):
//   1. state tile: rows [0, 4 * 128 / L) -> registers (16-byte loads, 64 values a thread), the rest (a second pass
//      of the same shape, P = 128 at N = 128 fp32) -> shared memory by cp.async; control words; x, z, B, C via
//      cp.async; dt.
//                                                                                                    barrier 1
//   2. control words (every thread); ring x, B via cp.async; state dots S_t = h0 . C_t (shuffle-reduced over the
//      L lanes of a row) while the ring lands.                                                       barrier 2
//   3. ring dt suffix sums (warp 0); dots G[e][t] = B_e . C_t, BC[t][s] = B_s . C_t (8 lanes a dot). barrier 3
//   4. y (closed form below), fold (h_c written back; h0 re-read, mostly from L2), ring / meta writes.
// With the committed ring tokens e (dt_e, x_e, B_e) and node t's path:
//   y_t[p] = rho_t (eSQ S_t[p] + sum_e wq_e G[e][t] x_e[p]) + sum_{s in path(t)} W[t][s] x_s[p] + D[p] x_t[p],
//   wq_e = dt_e exp(A sum_{e' > e} dt_e'), eSQ = exp(A sum_e dt_e), rho_t = exp(A sum_{path(t)} dt),
//   W[t][s] = dt_s exp(A sum_{s' in path(t), s' > s} dt_s') BC[t][s];  then y *= silu(z);
//   fold: h_c = eSQ h0 + sum_e wq_e x_e (x) B_e.
#pragma once
#include "verify/verify_m2_steps.cuh"

namespace mamba_kernels {
namespace verify_kernels {

// Threads a block: 128 (4 warps; a P = 128, N = 128 fp32 tile in two passes) when the grid fills the GPU, 256
// (one register pass, half the work a thread: lower latency) for small grids. Measured on the H200 (fp32 state,
// h 32 p 128 n 128): 256 threads 11.6 / 84 us at b1 / b64 (k 4), 128 threads 14.4 / 82 us, b16 25.6 vs 19.8 us.
constexpr int kM2ThreadsBig = 128, kM2ThreadsSmall = 256;
constexpr int64_t kM2SmallGrid = 256;  // grids below this many blocks use kM2ThreadsSmall
constexpr int kM2Rpt = 4;  // state rows per thread

template <typename T>
struct M2Cfg {
  static constexpr int V = SV<T>::V;
  static constexpr int SPL = V == 4 ? 4 : 2;  // 16-byte segments per lane and row: 16 state values
};

// Shared memory layout: the common arrays (M2CommonLayout) plus the second pass's state rows and C as fp32.
struct M2Layout : M2CommonLayout {
  int hs;  // state rows of the second pass (uint4)
  int Cs;  // fp32 (k, N)
  int words;
};

// rows1: state rows held in shared memory (0 when the tile fits the registers); NS: 16-byte segments of a row.
__host__ __device__ __forceinline__ M2Layout m2_layout(int64_t k, int64_t P, int64_t N, int64_t R, int VI,
                                                       int64_t rows1, int64_t NS) {
  M2Layout l;
  int o = 0;
  l.hs = o; o += static_cast<int>(rows1 * NS * 4);
  o = m2_place_common(l, o, k, P, N, R, VI);
  l.Cs = o; o += up4((k > 0 ? k : 1) * N);
  l.words = o;
  return l;
}

// kO32: offsets in 32-bit arithmetic (eoff; offsets_fit32(p) holds; the launcher takes it for fp32 states).
template <typename T, typename TI, int NT, bool kO32 = false>
__global__ void __launch_bounds__(NT, NT == 128 ? 4 : 2) verify_m2_kernel(const VerifyStepParams p) {
  constexpr int V = M2Cfg<T>::V, SPL = M2Cfg<T>::SPL, RPT = kM2Rpt;
  constexpr int VI = SV<TI>::V;  // input elements per 16-byte chunk
  MK_VERIFY_DYN_SMEM(smem_f4);
  float* smf = reinterpret_cast<float*>(smem_f4);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int H = static_cast<int>(p.H);
  const int b = blockIdx.x / H, u = blockIdx.x - (blockIdx.x / H) * H;
  const int s = p.slots[eoff<kO32>(b, p.slots_stride)];
  const int k = static_cast<int>(p.k), K1 = k > 0 ? k : 1;
  const int P = static_cast<int>(p.P), N = static_cast<int>(p.N), R = static_cast<int>(p.R);
  const int PC = P / VI, NC = N / VI, lPC = ilog2(PC), lNC = ilog2(NC);  // chunks per x / B row
  TI* y = static_cast<TI*>(p.y) + eoff<kO32>(b, p.y_b, u, p.y_h);
  if (s < 0 || s >= p.S) {  // padding row: y = 0, cache untouched
    for (int i = tid; i < k * PC; i += NT) {
      const int t = i >> lPC, c = i & (PC - 1);
      *reinterpret_cast<uint4*>(y + eoff<kO32>(t, p.y_k, c * VI, 1)) = make_uint4(0u, 0u, 0u, 0u);
    }
    return;
  }
  const int NS = N / V;
  const int L = lanes_per_row(N, V, SPL);
  const int lL = ilog2(L), lir = tid & (L - 1), rg = tid >> lL, nrg = NT >> lL;
  const int rows0 = RPT * nrg;          // rows of the register pass; rows [rows0, P) are the shared-memory pass
  const bool two = P > rows0;
  const int g = u / (H / static_cast<int>(p.G));
  const M2Layout lay = m2_layout(k, P, N, R, VI, two ? rows0 : 0, NS);
  uint4* hs = reinterpret_cast<uint4*>(smf + lay.hs);  // [rr * nrg + rg][seg]: each thread reads what it copied
  const M2Smem sm = m2_smem(lay, smem_f4);
  const auto& [xs, Sd, Ds, dts, dtq, wq, G, BC, scal, smeta, spar, smask, raw_in, raw_ring] = sm;
  float* Cs = smf + lay.Cs;

  // ---- 1. state tile, control, new-token inputs ------------------------------------------------------------
  T* st = static_cast<T*>(p.state) + eoff<kO32>(s, p.st_s, u, p.st_h);
  // The RPT x SPL 16-byte segments this thread owns in pass ps (0: registers, 1: shared memory): f(rr, j, row,
  // seg, valid); slot (rr * nrg + rg) * NS + seg of hs holds pass 1's segment.
  auto tile_for = [&](int ps, auto&& f) {
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) {
      const int row = ps * rows0 + rr * nrg + rg;
#pragma unroll
      for (int j = 0; j < SPL; ++j) {
        const int seg = j * L + lir;
        f(rr, j, row, seg, row < P && seg < NS);
      }
    }
  };
  float h[RPT][SPL][V];
  tile_for(0, [&](int rr, int j, int row, int seg, bool ok) {
    if (ok) {
      SV<T>::unpack(__ldcs(reinterpret_cast<const uint4*>(st + eoff<kO32>(row, p.st_p, seg * V, 1))), h[rr][j]);
    } else {
#pragma unroll
      for (int v = 0; v < V; ++v) h[rr][j][v] = 0.f;
    }
  });
  if (two) {
    tile_for(1, [&](int rr, int, int row, int seg, bool ok) {
      if (ok) cp_async16(hs + (rr * nrg + rg) * NS + seg, st + eoff<kO32>(row, p.st_p, seg * V, 1));
    });
  }
  const int nm = 2 + static_cast<int>(p.Kmax < kMaxK ? p.Kmax : kMaxK);
  const M2Scalars sc = m2_load_scalars<TI, kO32>(p, b, u, s, tid, k, nm);
  const float Au = sc.Au;
  const float dval = (p.D != nullptr && tid < P) ? p.D[eoff<kO32>(u, p.D_h, tid, p.D_p)] : 0.f;
  // New-token chunks, tensor-major: x [0, k PC), z [.., + k PC) (if any), B [.., + k NC), C [.., + k NC).
  const int nxc = k * PC, nzc = p.z != nullptr ? k * PC : 0, nbc = k * NC;
  const int n_in = nxc + nzc + 2 * nbc;
  const TI* xb = static_cast<const TI*>(p.x) + eoff<kO32>(b, p.x_b, u, p.x_h);
  const TI* zb = p.z != nullptr ? static_cast<const TI*>(p.z) + eoff<kO32>(b, p.z_b, u, p.z_h) : nullptr;
  const TI* Bb = static_cast<const TI*>(p.B) + eoff<kO32>(b, p.B_b, g, p.B_g);
  const TI* Cb = static_cast<const TI*>(p.C) + eoff<kO32>(b, p.C_b, g, p.C_g);
  auto in_src = [&](int i) -> const TI* {
    if (i < nxc) return xb + eoff<kO32>(i >> lPC, p.x_k, (i & (PC - 1)) * VI, 1);
    i -= nxc;
    if (i < nzc) return zb + eoff<kO32>(i >> lPC, p.z_k, (i & (PC - 1)) * VI, 1);
    i -= nzc;
    if (i < nbc) return Bb + eoff<kO32>(i >> lNC, p.B_k, (i & (NC - 1)) * VI, 1);
    i -= nbc;
    return Cb + eoff<kO32>(i >> lNC, p.C_k, (i & (NC - 1)) * VI, 1);
  };
  for (int i = tid; i < n_in; i += NT) cp_async16(raw_in + i, in_src(i));
  cp_async_wait_all();
  for (int i = tid; i < n_in; i += NT) {  // this thread's own x and C chunks -> fp32 (z and B stay raw)
    if (i >= nxc && i < nxc + nzc + nbc) continue;
    float o[VI];
    SV<TI>::unpack(raw_in[i], o);
    sts_vec<VI>(i < nxc ? xs + i * VI : Cs + (i - nxc - nzc - nbc) * VI, o);
  }
  if (tid < P) Ds[tid] = dval;
  for (int i = tid + NT; i < P; i += NT) Ds[i] = p.D != nullptr ? p.D[eoff<kO32>(u, p.D_h, i, p.D_p)] : 0.f;
  m2_store_scalars(p, sc, smeta, spar, dts, tid, k, nm);
  __syncthreads();  // 1

  // ---- 2. control words; ring in flight during the state dots ---------------------------------------------
  const M2Ctl ct = m2_control(p, smeta, sc.accv, R, k);
  const int c1 = ct.c1, rbo = m2_ring_b(R, PC);
  const int64_t rx0 = eoff<kO32>(s, p.rx_s, u, p.rx_h), rb0 = eoff<kO32>(s, p.rB_s, u, p.rB_h);
  const float dq = m2_stage_ring<TI, kO32>(p, ct, raw_ring, rx0, rb0, s, u, PC, NC, tid, NT);
  m2_masks(spar, smask, tid, k);
  // State dots S_t[row] = h0[row] . C_t, one token at a time (bounded registers), both passes, reduced over a
  // row's L lanes.
#pragma unroll 1
  for (int t = 0; t < k; ++t) {
    float acc[2][RPT];
#pragma unroll
    for (int rr = 0; rr < RPT; ++rr) acc[0][rr] = acc[1][rr] = 0.f;
#pragma unroll
    for (int j = 0; j < SPL; ++j) {
      const int seg = j * L + lir;
      if (seg < NS) {
        float cv[V];
        lds_vec<V>(Cs + t * N + seg * V, cv);
#pragma unroll
        for (int rr = 0; rr < RPT; ++rr)
#pragma unroll
          for (int v = 0; v < V; ++v) acc[0][rr] = fmaf(h[rr][j][v], cv[v], acc[0][rr]);
        if (two) {
#pragma unroll
          for (int rr = 0; rr < RPT; ++rr) {
            if (rows0 + rr * nrg + rg < P) {
              float hv[V];
              SV<T>::unpack(hs[(rr * nrg + rg) * NS + seg], hv);
#pragma unroll
              for (int v = 0; v < V; ++v) acc[1][rr] = fmaf(hv[v], cv[v], acc[1][rr]);
            }
          }
        }
      }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      if (off < L) {
#pragma unroll
        for (int rr = 0; rr < RPT; ++rr) {
          acc[0][rr] += __shfl_xor_sync(0xffffffffu, acc[0][rr], off);
          if (two) acc[1][rr] += __shfl_xor_sync(0xffffffffu, acc[1][rr], off);
        }
      }
    }
    if (lir == 0) {
#pragma unroll
      for (int rr = 0; rr < RPT; ++rr) {
        const int row = rr * nrg + rg;
        if (row < P) Sd[t * P + row] = acc[0][rr];
        if (two && rows0 + row < P) Sd[t * P + rows0 + row] = acc[1][rr];
      }
    }
  }
  cp_async_wait_all();  // the ring stays raw in shared memory (read through SV<TI>::unpack)
  if (tid < c1) dtq[tid] = dq;
  __syncthreads();  // 2

  // ---- 3. ring weights (warp 0), dots G[e][t] and BC[t][s] (8 lanes a dot) ---------------------------------
  if (warp == 0) m2_ring_weights(dtq, wq, scal, c1, Au, lane);
  {
    const int gl = lane & 7, ng = c1 * k, njobs = ng + k * (k + 1) / 2;
    for (int j0 = warp * 4; j0 < njobs; j0 += NT / 8) {  // trip count uniform per warp (the shuffles need it)
      const int j = j0 + (lane >> 3);
      const uint4* va = raw_in;
      const float* vc = Cs;
      int dst = -1;
      if (j < ng) {
        const int e = j / k, t = j - e * k;
        va = raw_ring + rbo + e * NC;
        vc = Cs + t * N;
        dst = lay.G + e * K1 + t;
      } else if (j < njobs) {
        const int pi = j - ng;
        int t = 0;
        while ((t + 1) * (t + 2) / 2 <= pi) ++t;
        const int sn = pi - t * (t + 1) / 2;
        va = raw_in + nxc + nzc + sn * NC;
        vc = Cs + t * N;
        dst = lay.BC + t * K1 + sn;
      }
      float d = 0.f;
      if (dst >= 0) {
        for (int ci = gl; ci < NC; ci += 8) {
          float xv[VI], cv[VI];
          SV<TI>::unpack(va[ci], xv);
          lds_vec<VI>(vc + ci * VI, cv);
#pragma unroll
          for (int v = 0; v < VI; ++v) d = fmaf(xv[v], cv[v], d);
        }
      }
      d += __shfl_xor_sync(0xffffffffu, d, 4);
      d += __shfl_xor_sync(0xffffffffu, d, 2);
      d += __shfl_xor_sync(0xffffffffu, d, 1);
      if (gl == 0 && dst >= 0) smf[dst] = d;
    }
  }
  __syncthreads();  // 3

  // ---- 4. y, ring writes, fold, tree compaction, meta ------------------------------------------------------------
  m2_outputs<TI, kO32>(p, ct, sm, y, k, P, N, R, Au, rx0, rb0, s, u, tid, NT);
  const float eSQ = scal[0];
  if (ct.fold) {  // h_c = eSQ h0 + sum_e (wq_e x_e) (x) B_e, written back in the state dtype
    // Pass 0 re-reads h0 (mostly from L2) rather than keeping it live since step 1 (a fold is one call in
    // ~R / accepted); pass 1 reads it from shared memory.
#pragma unroll 1
    for (int ps = 0; ps < (two ? 2 : 1); ++ps) {
      const int r0 = ps * rows0;
      tile_for(ps, [&](int rr, int j, int row, int seg, bool ok) {
        if (ok) {
          const uint4 raw = ps == 0 ? *reinterpret_cast<const uint4*>(st + eoff<kO32>(row, p.st_p, seg * V, 1))
                                    : hs[(rr * nrg + rg) * NS + seg];
          SV<T>::unpack(raw, h[rr][j]);
        } else {
#pragma unroll
          for (int v = 0; v < V; ++v) h[rr][j][v] = 0.f;
        }
#pragma unroll
        for (int v = 0; v < V; ++v) h[rr][j][v] *= eSQ;
      });
      for (int e = 0; e < c1; ++e) {
        const float w = wq[e];
        float ux[RPT];
#pragma unroll
        for (int rr = 0; rr < RPT; ++rr) {
          const int row = r0 + rr * nrg + rg;
          ux[rr] = row < P ? w * SV<TI>::to_f(reinterpret_cast<const TI*>(raw_ring + e * PC)[row]) : 0.f;
        }
#pragma unroll
        for (int j = 0; j < SPL; ++j) {
          const int seg = j * L + lir;
          if (seg < NS) {
            float bv[V];
            const TI* bsrc = reinterpret_cast<const TI*>(raw_ring + rbo + e * NC) + seg * V;
#pragma unroll
            for (int v = 0; v < V; ++v) bv[v] = SV<TI>::to_f(bsrc[v]);
#pragma unroll
            for (int rr = 0; rr < RPT; ++rr)
#pragma unroll
              for (int v = 0; v < V; ++v) h[rr][j][v] = fmaf(ux[rr], bv[v], h[rr][j][v]);
          }
        }
      }
      tile_for(ps, [&](int rr, int j, int row, int seg, bool ok) {
        if (ok) __stcs(reinterpret_cast<uint4*>(st + eoff<kO32>(row, p.st_p, seg * V, 1)), SV<T>::pack(h[rr][j]));
      });
    }
  }
  m2_finish<TI, kO32>(p, ct, sm, k, P, N, rx0, rb0, s, u, tid, NT);
}

// Whether the lean kernel serves these parameters (else the general verify_ssm_kernel): m2_io_fits; P, N powers
// of two with whole 16-byte input chunks; the state tile in two passes of NT threads x 4 rows x 16 values
// (registers, then shared memory); ring length <= NT; shared memory within bounds.
template <typename T>
inline bool m2_fits(const VerifyStepParams& p, int NT, size_t* smem) {
  constexpr int V = SV<T>::V, SPL = M2Cfg<T>::SPL;
  const int VI = p.in_dtype == DType::kFloat32 ? 4 : 8;
  if (!m2_io_fits(p, V, VI)) return false;
  auto pow2 = [](int64_t v) { return v > 0 && (v & (v - 1)) == 0; };
  if (!pow2(p.P) || !pow2(p.N) || p.P < VI || p.N < VI || p.N < V || p.N > 32 * SPL * V) return false;
  const int L = lanes_per_row(p.N, V, SPL);
  const int64_t rows0 = static_cast<int64_t>(kM2Rpt) * (NT / L);
  if (p.P > 2 * rows0 || p.R > NT || p.k * p.P > 4096) return false;
  const size_t bytes =
      static_cast<size_t>(m2_layout(p.k, p.P, p.N, p.R, VI, p.P > rows0 ? rows0 : 0, p.N / V).words) * 4;
  if (bytes > 100 * 1024) return false;
  *smem = bytes;
  return true;
}

}  // namespace verify_kernels
}  // namespace mamba_kernels
