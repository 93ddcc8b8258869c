// RMSNorm (Qwen2RMSNorm) with an optional fused residual add, and the embedding gather.
//
//   rmsnorm:   if (add) x[t] += add[t] (written back: x is the fp32 residual stream);
//              out[t] = wt( x[t] * rsqrt(mean(x[t]^2) + eps) * w )
//   row_index: optional; row t of out is computed from row row_index[t] of x (used to
//              normalise only the rows that need logits). `add` must be null then.
// One block per token row; each thread owns HIDDEN/blockDim values kept in registers.

#define QW_NORM_THREADS 256
#define QW_NORM_PER_THREAD ((qwc::kHidden + QW_NORM_THREADS - 1) / QW_NORM_THREADS)

extern "C" __global__ void __launch_bounds__(QW_NORM_THREADS)
rmsnorm(float* __restrict__ x, const float* __restrict__ add, const wt* __restrict__ w,
        wt* __restrict__ out, int rows, const int* __restrict__ row_index) {
  __shared__ float scratch[32];
  qw_pdl_trigger();
  qw_pdl_wait();
  const int t = blockIdx.x;
  if (t >= rows) return;
  const long long src = row_index ? row_index[t] : t;
  float* xr = x + src * qwc::kHidden;
  const float* ar = add ? add + src * qwc::kHidden : nullptr;
  float v[QW_NORM_PER_THREAD];
  float ss = 0.f;
#pragma unroll
  for (int i = 0; i < QW_NORM_PER_THREAD; ++i) {
    const int c = threadIdx.x + i * QW_NORM_THREADS;
    float a = 0.f;
    if (c < qwc::kHidden) {
      a = xr[c];
      if (ar) {
        a += ar[c];
        xr[c] = a;
      }
    }
    v[i] = a;
    ss += a * a;
  }
  ss = block_sum(ss, scratch);
  const float inv = rsqrtf(ss / float(qwc::kHidden) + qwc::kRmsEps);
  wt* o = out + (long long)t * qwc::kHidden;
#pragma unroll
  for (int i = 0; i < QW_NORM_PER_THREAD; ++i) {
    const int c = threadIdx.x + i * QW_NORM_THREADS;
    if (c < qwc::kHidden) o[c] = from_f32(v[i] * inv * to_f32(w[c]));
  }
}

// x[t, :] = float(table[tokens[t], :]). Tokens are validated on the host; an id outside
// [0, vocab) writes NaN so it cannot pass silently.
extern "C" __global__ void embedding_gather(const int* __restrict__ tokens,
                                            const wt* __restrict__ table, float* __restrict__ x,
                                            int rows) {
  qw_pdl_trigger();
  qw_pdl_wait();
  const int t = blockIdx.x;
  if (t >= rows) return;
  const int id = tokens[t];
  float* xr = x + (long long)t * qwc::kHidden;
  if (id < 0 || id >= qwc::kVocab) {
    for (int c = threadIdx.x; c < qwc::kHidden; c += blockDim.x) xr[c] = __int_as_float(0x7fc00000);
    return;
  }
  const wt* e = table + (long long)id * qwc::kHidden;
  if ((qwc::kHidden % 8) == 0) {
    for (int c = threadIdx.x * 8; c < qwc::kHidden; c += blockDim.x * 8) {
      float f[8];
      unpack8(ldg16(e + c), f);
      float4* dst = reinterpret_cast<float4*>(xr + c);
      dst[0] = make_float4(f[0], f[1], f[2], f[3]);
      dst[1] = make_float4(f[4], f[5], f[6], f[7]);
    }
  } else {
    for (int c = threadIdx.x; c < qwc::kHidden; c += blockDim.x) xr[c] = to_f32(e[c]);
  }
}

// out[r, c] = silu(gu[r, c]) * gu[r, I + c] for the fused [gate | up] GEMM output.
extern "C" __global__ void swiglu(const float* __restrict__ gu, wt* __restrict__ out, int rows) {
  qw_pdl_trigger();
  qw_pdl_wait();
  const long long n = (long long)rows * qwc::kInter;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
       i += (long long)gridDim.x * blockDim.x) {
    const long long r = i / qwc::kInter, c = i - r * qwc::kInter;
    const float g = gu[r * 2 * qwc::kInter + c];
    const float u = gu[r * 2 * qwc::kInter + qwc::kInter + c];
    out[i] = from_f32(g / (1.f + expf(-g)) * u);
  }
}

// Order-dependent 64-bit checksum of a byte range (multiple of 8 bytes), for checking that
// device memory equals the artifact: sum over words of (word * odd(index)) plus a
// rotated xor. `partial` gets one value per block; the host adds them (mod 2^64).
extern "C" __global__ void checksum64(const u64* __restrict__ data, u64 nwords,
                                      u64* __restrict__ partial) {
  qw_pdl_wait();
  u64 acc = 0;
  for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < nwords;
       i += (u64)gridDim.x * blockDim.x) {
    const u64 w = data[i];
    acc += w * (2 * i + 1) + ((w << 13) | (w >> 51));
  }
  __shared__ u64 s[1024];
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int o = blockDim.x / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) s[threadIdx.x] += s[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}
