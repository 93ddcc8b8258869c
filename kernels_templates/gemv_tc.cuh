// Decode GEMMs on tensor cores for 1..32 activation rows: y[b, n] = sum_k W[n, k] x[b, k].
// Still bound by streaming W once per step; the point of the tensor cores is issue slots:
// a CUDA-core dot product spends B FMAs (plus conversions) per weight, which at B >= 8 is
// more instructions than the memory system leaves time for, while one mma.m16n8k16 covers
// 256 weights for 8 rows. The runtime uses them only where they measured fastest (5..8 rows;
// GpuExecutorOptions::tc_max_rows); at 16-32 rows cuBLAS is faster (docs/performance.md).
//
// Fragments straight from global memory, no shared-memory staging and no re-layout of W
// (prefill's cuBLAS reads the same row-major matrices). A dot product does not care about
// the order of k as long as W and x use the same one, so lane (g = lane / 4, c = lane % 4)
// loads 16 contiguous bytes, k in [u*32 + 8c, u*32 + 8c + 8), of weight rows g and g + 8 and
// of activation row g, and the mma's logical k slots {2c, 2c+1, 2c+8, 2c+9} take physical
// k {8c, 8c+1, 8c+2, 8c+3} in the first mma and {8c+4, ..., 8c+7} in the second. Four
// lanes cover 64 contiguous bytes of a row: whole 32-byte sectors.
//
//   A (16x16) = 16 weight rows x 16 k    B (16x8) = 16 k x 8 activation rows
//   C (16x8)  = 16 outputs x 8 rows: lane holds (row g, cols 2c, 2c+1), (row g+8, same cols)
//
// A tile is 16 outputs (MODE 2: gate rows n0..n0+7 as A rows 0..7 and their up rows as
// A rows 8..15, so one lane holds both halves of a SwiGLU output). Narrow matrices have too
// few tiles to keep enough loads in flight, so S warps of a block split K of one tile and
// add their partial sums through shared memory in a fixed order (deterministic; each row's
// result does not depend on the other rows of the batch). S is fixed per matrix at compile
// time, not per batch size, so batch composition cannot change a row's rounding.
//
//   MODE 0: y = W x (fp32)   MODE 1: y += W x (fused residual add)
//   MODE 2: yh[b, n] = silu(g) * u, g = row n of W, u = row n + N (16-bit out)
// Launch (gemv_tc_plan.cuh): grid = qw_tc_blocks(tiles, S), block = qw_tc_warps_per_block(S)
// * 32 threads, no dynamic shared memory; tiles = qw_tc_tiles(N, MODE == 2); B in 1..8*NT.

template <int NT, int P>
struct QwTcGroup {
  uint4 w[P][2];
  uint4 x[P][NT];
};

template <int K, int MODE, int NT, int S>
__device__ __forceinline__ void gemv_tc_impl(const wt* __restrict__ W, const wt* __restrict__ X,
                                             float* __restrict__ y, wt* __restrict__ yh, int N,
                                             int B) {
  constexpr int WPB = qw_tc_warps_per_block(S);
  constexpr int TPB = WPB / S;
  constexpr int UNITS = (K + 31) / 32;
  // Units per pipeline group: loads of one group are in flight while the previous computes.
  constexpr int P = NT >= 4 ? 1 : 2;
  static_assert(K % 8 == 0, "K must be a multiple of 8");
  constexpr int kRowsPerTile = MODE == 2 ? 8 : 16;

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, c = lane & 3;
  const int tile = blockIdx.x * TPB + warp / S;
  const int split = warp % S;
  const int n0 = tile * kRowsPerTile;

  long long r_lo, r_hi;
  if constexpr (MODE == 2) {
    const int n = min(n0 + g, N - 1);
    r_lo = n;
    r_hi = (long long)N + n;
  } else {
    r_lo = min(n0 + g, N - 1);
    r_hi = min(n0 + g + 8, N - 1);
  }
  const wt* wlo = W + r_lo * K + 8 * c;
  const wt* whi = W + r_hi * K + 8 * c;
  const wt* xr[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) xr[j] = X + (long long)min(g + 8 * j, B - 1) * K + 8 * c;

  const int u_begin = split * UNITS / S, u_end = (split + 1) * UNITS / S;
  const bool active = n0 < N;

  float acc[NT][4];
#pragma unroll
  for (int j = 0; j < NT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;

  // Weights (constant data) and activations of one group; the first group's weights go out
  // before the PDL wait, its activations after.
  auto load_w = [&](QwTcGroup<NT, P>& gr, int u0) {
#pragma unroll
    for (int p = 0; p < P; ++p) {
      const int k = (u0 + p) * 32;
      const bool ok = u0 + p < u_end && (K % 32 == 0 || k + 8 * c < K);
      if (ok) {
        gr.w[p][0] = ld_stream16(wlo + k);
        gr.w[p][1] = ld_stream16(whi + k);
      } else {
        gr.w[p][0] = gr.w[p][1] = make_uint4(0, 0, 0, 0);
      }
    }
  };
  auto load_x = [&](QwTcGroup<NT, P>& gr, int u0) {
#pragma unroll
    for (int p = 0; p < P; ++p) {
      const int k = (u0 + p) * 32;
      const bool ok = u0 + p < u_end && (K % 32 == 0 || k + 8 * c < K);
#pragma unroll
      for (int j = 0; j < NT; ++j) gr.x[p][j] = ok ? ldg16(xr[j] + k) : make_uint4(0, 0, 0, 0);
    }
  };
  auto compute = [&](const QwTcGroup<NT, P>& gr) {
#pragma unroll
    for (int p = 0; p < P; ++p) {
      const uint4 a = gr.w[p][0], b = gr.w[p][1];
      const u32 a1[4] = {a.x, b.x, a.y, b.y};
      const u32 a2[4] = {a.z, b.z, a.w, b.w};
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        const u32 b1[2] = {gr.x[p][j].x, gr.x[p][j].y};
        const u32 b2[2] = {gr.x[p][j].z, gr.x[p][j].w};
        mma16816(acc[j], a1, b1);
        mma16816(acc[j], a2, b2);
      }
    }
  };

  QwTcGroup<NT, P> cur, nxt;
  if (active) load_w(cur, u_begin);
  qw_pdl_trigger();
  qw_pdl_wait();
  if (active) {
    load_x(cur, u_begin);
#pragma unroll 1
    for (int u = u_begin; u < u_end; u += P) {
      if (u + P < u_end) {
        load_w(nxt, u + P);
        load_x(nxt, u + P);
      }
      compute(cur);
      cur = nxt;
    }
  }

  if constexpr (S > 1) {
    __shared__ float part[WPB][NT][4][32];
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) part[warp][j][e][lane] = acc[j][e];
    __syncthreads();
    if (split != 0) return;
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float s = part[warp][j][e][lane];
        for (int t = 1; t < S; ++t) s += part[warp + t][j][e][lane];
        acc[j][e] = s;
      }
  }
  if (!active) return;

#pragma unroll
  for (int j = 0; j < NT; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // batch column 2c + h of n-tile j
      const int b = 8 * j + 2 * c + h;
      if (b >= B) continue;
      if constexpr (MODE == 2) {
        const int n = n0 + g;
        if (n < N) {
          const float gv = acc[j][h], uv = acc[j][2 + h];
          yh[(long long)b * N + n] = from_f32(gv / (1.f + expf(-gv)) * uv);
        }
      } else {
        float* yb = y + (long long)b * N;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int n = n0 + g + 8 * half;
          if (n >= N) continue;
          const float v = acc[j][2 * half + h];
          if constexpr (MODE == 1) {
            yb[n] += v;
          } else {
            yb[n] = v;
          }
        }
      }
    }
}

#define QW_TC_INST(name, K, MODE, NT, S)                                                      \
  extern "C" __global__ void __launch_bounds__(QW_TC_WARPS * 32, NT == 1 ? 3 : 2)             \
      name##_n##NT(const wt* __restrict__ W, const wt* __restrict__ x, float* __restrict__ y, \
                   wt* __restrict__ yh, int N, int B) {                                       \
    gemv_tc_impl<K, MODE, NT, S>(W, x, y, yh, N, B);                                          \
  }
#define QW_TC_ALL_NT(name, K, MODE, S) \
  QW_TC_INST(name, K, MODE, 1, S)      \
  QW_TC_INST(name, K, MODE, 2, S)      \
  QW_TC_INST(name, K, MODE, 4, S)

// The runtime computes the same splits from the same constants (gemv_tc_plan.cuh).
constexpr int kTcSplitQkv = qw_tc_split(
    qw_tc_tiles((qwc::kQHeads + 2 * qwc::kKvHeads) * qwc::kHeadDim, false), qwc::kHidden);
constexpr int kTcSplitO =
    qw_tc_split(qw_tc_tiles(qwc::kHidden, false), qwc::kQHeads* qwc::kHeadDim);
constexpr int kTcSplitGateUp = qw_tc_split(qw_tc_tiles(qwc::kInter, true), qwc::kHidden);
constexpr int kTcSplitDown = qw_tc_split(qw_tc_tiles(qwc::kHidden, false), qwc::kInter);
constexpr int kTcSplitLmHead = qw_tc_split(qw_tc_tiles(qwc::kVocab, false), qwc::kHidden);

QW_TC_ALL_NT(tc_qkv, qwc::kHidden, 0, kTcSplitQkv)
QW_TC_ALL_NT(tc_o_res, qwc::kQHeads* qwc::kHeadDim, 1, kTcSplitO)
QW_TC_ALL_NT(tc_gate_up_swiglu, qwc::kHidden, 2, kTcSplitGateUp)
QW_TC_ALL_NT(tc_down_res, qwc::kInter, 1, kTcSplitDown)
QW_TC_ALL_NT(tc_lm_head, qwc::kHidden, 0, kTcSplitLmHead)
