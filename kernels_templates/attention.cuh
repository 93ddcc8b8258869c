// Attention: QKV bias + RoPE (plain or YaRN, through the inv_freq table and mscale) +
// paged-KV write, then paged attention (GQA-aware, flash-decoding split along the keys).
//
// Paged KV cache, per layer: k and v each [num_blocks][kKvHeads][kBlockTokens][kHeadDim].
// A token's slot is phys_block * kBlockTokens + offset; block tables map a sequence's
// logical block i to its physical block.

#define QW_D qwc::kHeadDim
#define QW_BT qwc::kBlockTokens
#define QW_G (qwc::kQHeads / qwc::kKvHeads)
#define QW_QKV_COLS ((qwc::kQHeads + 2 * qwc::kKvHeads) * qwc::kHeadDim)

// qkv: [rows, QW_QKV_COLS] fp32 GEMM output (no bias). Writes q (fp32, rotated, [rows,
// kQHeads, D]) and k, v (16-bit) into the cache at slots[r]. inv_freq: [D/2].
// cos/sin = cos/sin(pos * inv_freq[i]) * mscale, rotate_half convention (HF Qwen2).
extern "C" __global__ void qkv_rope_kv(const float* __restrict__ qkv, const wt* __restrict__ bias,
                                       const int* __restrict__ positions,
                                       const long long* __restrict__ slots,
                                       const float* __restrict__ inv_freq, float mscale,
                                       float* __restrict__ q_out, wt* __restrict__ kc,
                                       wt* __restrict__ vc, int rows) {
  const int r = blockIdx.x;
  if (r >= rows) return;
  const float* in = qkv + (long long)r * QW_QKV_COLS;
  const float pos = float(positions[r]);
  const long long slot = slots[r];
  const long long blk = slot / QW_BT, off = slot - blk * QW_BT;
  constexpr int half = QW_D / 2;
  // Rotary pairs of q and k heads.
  for (int i = threadIdx.x; i < (qwc::kQHeads + qwc::kKvHeads) * half; i += blockDim.x) {
    const int h = i / half, j = i - h * half;
    const int c0 = h * QW_D + j, c1 = c0 + half;
    const float x0 = in[c0] + to_f32(bias[c0]);
    const float x1 = in[c1] + to_f32(bias[c1]);
    float s, c;
    sincosf(pos * inv_freq[j], &s, &c);
    c *= mscale;
    s *= mscale;
    const float y0 = x0 * c - x1 * s;
    const float y1 = x1 * c + x0 * s;
    if (h < qwc::kQHeads) {
      float* qo = q_out + ((long long)r * qwc::kQHeads + h) * QW_D;
      qo[j] = y0;
      qo[j + half] = y1;
    } else {
      const int kh = h - qwc::kQHeads;
      wt* ko = kc + ((blk * qwc::kKvHeads + kh) * QW_BT + off) * QW_D;
      ko[j] = from_f32(y0);
      ko[j + half] = from_f32(y1);
    }
  }
  for (int i = threadIdx.x; i < qwc::kKvHeads * QW_D; i += blockDim.x) {
    const int kh = i / QW_D, d = i - kh * QW_D;
    const int c = (qwc::kQHeads + qwc::kKvHeads) * QW_D + i;
    vc[((blk * qwc::kKvHeads + kh) * QW_BT + off) * QW_D + d] = from_f32(in[c] + to_f32(bias[c]));
  }
}

#define QW_ATT_WARPS 4
#define QW_DPL (QW_D / 32)

// One block per (query row, kv head, split z of nsplit: z-th part of this row's keys). Each warp takes whole KV blocks (one key per
// lane), the group's QW_G query heads share every K/V load. Softmax in fp32 (base 2).
// nsplit == 1: writes out (16-bit, [rows, kQHeads, D]) directly. nsplit > 1: writes partial
// (unnormalised o, max, sum) for attention_combine.
extern "C" __global__ void __launch_bounds__(QW_ATT_WARPS * 32)
attention_paged(const float* __restrict__ q, const wt* __restrict__ kc, const wt* __restrict__ vc,
                const int* __restrict__ row_seq, const int* __restrict__ positions,
                const int* __restrict__ block_tables, int bt_stride, int nsplit, float scale_log2, wt* __restrict__ out, float* __restrict__ part_o,
                float* __restrict__ part_ml) {
  static_assert(QW_D % 32 == 0 && QW_D % 8 == 0, "head_dim must be a multiple of 32");
  static_assert(QW_BT == 32, "one KV block per warp iteration: 32 tokens");
  const int r = blockIdx.x, kh = blockIdx.y, z = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __shared__ float qs[QW_G][QW_D];
  __shared__ float ps[QW_ATT_WARPS][QW_G][QW_BT];
  __shared__ float sm_ml[QW_ATT_WARPS][QW_G][2];
  __shared__ float sm_o[QW_ATT_WARPS][QW_G][QW_D];

  const float* qr = q + ((long long)r * qwc::kQHeads + kh * QW_G) * QW_D;
  for (int i = threadIdx.x; i < QW_G * QW_D; i += blockDim.x) (&qs[0][0])[i] = qr[i] * scale_log2;
  __syncthreads();

  const int pos = positions[r];
  const int nblk = pos / QW_BT + 1;
  const int bps = (nblk + nsplit - 1) / nsplit;  // each row splits its own context
  const int b0 = z * bps;
  const int b1 = min(b0 + bps, nblk);
  const int* table = block_tables + (long long)row_seq[r] * bt_stride;

  float m[QW_G], l[QW_G], acc[QW_G][QW_DPL];
#pragma unroll
  for (int g = 0; g < QW_G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int d = 0; d < QW_DPL; ++d) acc[g][d] = 0.f;
  }

  for (int b = b0 + warp; b < b1; b += QW_ATT_WARPS) {
    const long long phys = table[b];
    const wt* kb = kc + (phys * qwc::kKvHeads + kh) * QW_BT * QW_D;
    const wt* vb = vc + (phys * qwc::kKvHeads + kh) * QW_BT * QW_D;
    float s[QW_G];
#pragma unroll
    for (int g = 0; g < QW_G; ++g) s[g] = 0.f;
    const wt* krow = kb + lane * QW_D;
#pragma unroll 4
    for (int c = 0; c < QW_D; c += 8) {
      float kf[8];
      unpack8(ldg16(krow + c), kf);
#pragma unroll
      for (int g = 0; g < QW_G; ++g) {
#pragma unroll
        for (int e = 0; e < 8; ++e) s[g] = fmaf(qs[g][c + e], kf[e], s[g]);
      }
    }
    const bool valid = b * QW_BT + lane <= pos;
#pragma unroll
    for (int g = 0; g < QW_G; ++g) {
      const float sv = valid ? s[g] : -INFINITY;
      const float mn = fmaxf(m[g], warp_max(sv));  // finite: lane 0 of a block is valid
      const float corr = exp2f(m[g] - mn);
      const float p = exp2f(sv - mn);
      l[g] = l[g] * corr + p;  // per-lane partial sum, reduced at the end
#pragma unroll
      for (int d = 0; d < QW_DPL; ++d) acc[g][d] *= corr;
      m[g] = mn;
      ps[warp][g][lane] = p;
    }
    __syncwarp();
    // Only the valid keys of the block: slots past `pos` may hold anything (even NaN), and
    // 0 * NaN would poison the sum.
    const int jmax = min(QW_BT, pos - b * QW_BT + 1);
#pragma unroll 4
    for (int j = 0; j < jmax; ++j) {
      float vf[QW_DPL];
      const wt* vrow = vb + j * QW_D + lane * QW_DPL;
      if constexpr (QW_DPL == 4) {
        const uint2 raw = __ldg(reinterpret_cast<const uint2*>(vrow));
        unpack2(raw.x, vf[0], vf[1]);
        unpack2(raw.y, vf[2], vf[3]);
      } else {
#pragma unroll
        for (int d = 0; d < QW_DPL; ++d) vf[d] = to_f32(vrow[d]);
      }
#pragma unroll
      for (int g = 0; g < QW_G; ++g) {
        const float p = ps[warp][g][j];
#pragma unroll
        for (int d = 0; d < QW_DPL; ++d) acc[g][d] = fmaf(p, vf[d], acc[g][d]);
      }
    }
    __syncwarp();
  }

  // Merge the warps.
#pragma unroll
  for (int g = 0; g < QW_G; ++g) {
    const float lsum = warp_sum(l[g]);
    if (lane == 0) {
      sm_ml[warp][g][0] = m[g];
      sm_ml[warp][g][1] = lsum;
    }
#pragma unroll
    for (int d = 0; d < QW_DPL; ++d) sm_o[warp][g][lane * QW_DPL + d] = acc[g][d];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < QW_G * QW_D; i += blockDim.x) {
    const int g = i / QW_D, d = i - g * QW_D;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < QW_ATT_WARPS; ++w) M = fmaxf(M, sm_ml[w][g][0]);
    float L = 0.f, O = 0.f;
    if (M != -INFINITY) {
#pragma unroll
      for (int w = 0; w < QW_ATT_WARPS; ++w) {
        const float f = exp2f(sm_ml[w][g][0] - M);
        L += sm_ml[w][g][1] * f;
        O += sm_o[w][g][d] * f;
      }
    }
    const int h = kh * QW_G + g;
    if (nsplit == 1) {
      out[((long long)r * qwc::kQHeads + h) * QW_D + d] = from_f32(O / L);
    } else {
      const long long pi = ((long long)r * qwc::kQHeads + h) * nsplit + z;
      part_o[pi * QW_D + d] = O;
      if (d == 0) {
        part_ml[pi * 2] = M;
        part_ml[pi * 2 + 1] = L;
      }
    }
  }
}

// Merges nsplit partials per (row, head). Block: QW_D threads.
extern "C" __global__ void attention_combine(const float* __restrict__ part_o,
                                             const float* __restrict__ part_ml, int nsplit,
                                             wt* __restrict__ out) {
  const int r = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
  const long long base = ((long long)r * qwc::kQHeads + h) * nsplit;
  float M = -INFINITY;
  for (int z = 0; z < nsplit; ++z) M = fmaxf(M, part_ml[(base + z) * 2]);
  float L = 0.f, O = 0.f;
  for (int z = 0; z < nsplit; ++z) {
    const float mz = part_ml[(base + z) * 2];
    if (mz == -INFINITY) continue;
    const float f = exp2f(mz - M);
    L += part_ml[(base + z) * 2 + 1] * f;
    O += part_o[(base + z) * QW_D + d] * f;
  }
  out[((long long)r * qwc::kQHeads + h) * QW_D + d] = from_f32(O / L);
}
