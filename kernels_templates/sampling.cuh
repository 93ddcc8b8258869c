// Sampling on the device: a logits row reduced to the candidates the host sampler can still
// pick (runtime/engine/candidates.h; reduce_row_to_candidates is the reference these
// kernels must match bit for bit in ids and values).
//
// One block of QW_REDUCE_THREADS per row. The processed row (penalties, temperature) goes
// to a scratch row; a 4-pass radix select (8 bits a pass) over order-preserving integer
// keys finds the k-th largest value exactly, without sorting 152K values; every value >=
// it is collected (ties included, up to QW_MAX_CANDIDATES, else the row is marked for the
// host), ranked best first, and the row's log-sum-exp is reduced alongside.

#define QW_REDUCE_THREADS 1024
#define QW_MAX_CANDIDATES 64

// Host layouts (runtime/gpu/row_reducer.cpp static_asserts them).
struct QwLogitPenalty {
  int id;
  int repeat;
  float delta;
};
struct QwReduceRow {
  int logit_row;      // row of `logits`
  int k;              // >= 1
  float temperature;  // 1: no division
  float repetition_penalty;
  int first_penalty, num_penalties;
};
struct QwReduceOut {
  int count;  // candidates written, or -1: more ties than QW_MAX_CANDIDATES
  int pad;
  double logsumexp;
  int ids[QW_MAX_CANDIDATES];
  float values[QW_MAX_CANDIDATES];
};

// Larger float -> larger key; -0 and +0 share a key, as they compare equal.
__device__ __forceinline__ u32 qw_order_key(float x) {
  u32 u = __float_as_uint(x);
  if ((u << 1) == 0) u = 0;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

extern "C" __global__ void __launch_bounds__(QW_REDUCE_THREADS)
    reduce_rows_to_candidates(const float* __restrict__ logits, long long stride, int n,
                              const QwReduceRow* __restrict__ rows,
                              const QwLogitPenalty* __restrict__ penalties,
                              float* __restrict__ scratch, QwReduceOut* __restrict__ out) {
  const QwReduceRow a = rows[blockIdx.x];
  const float* raw = logits + (long long)a.logit_row * stride;
  float* v = scratch + (long long)blockIdx.x * stride;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  constexpr int kWarps = QW_REDUCE_THREADS / 32;

  // 1. Processed row. Explicit _rn intrinsics: no contraction into FMAs, so every value is
  //    rounded exactly as the host sampler rounds it.
  for (int i = tid; i < n; i += QW_REDUCE_THREADS)
    v[i] = a.temperature != 1.f ? __fdiv_rn(raw[i], a.temperature) : raw[i];
  __syncthreads();
  for (int e = tid; e < a.num_penalties; e += QW_REDUCE_THREADS) {
    const QwLogitPenalty p = penalties[a.first_penalty + e];
    if (p.id < 0 || p.id >= n) continue;
    float x = raw[p.id];
    if (p.repeat && a.repetition_penalty != 1.f)
      x = x < 0.f ? __fmul_rn(x, a.repetition_penalty) : __fdiv_rn(x, a.repetition_penalty);
    x = __fsub_rn(x, p.delta);
    if (a.temperature != 1.f) x = __fdiv_rn(x, a.temperature);
    v[p.id] = x;
  }
  __syncthreads();

  // 2. Radix select of the k-th largest key. Per-warp histograms: the first digit (sign and
  //    high exponent bits) puts nearly every value in a few bins, and one shared histogram
  //    would serialise the whole block on them.
  __shared__ int hist[kWarps][256];
  __shared__ u32 s_prefix, s_mask;
  __shared__ int s_remaining;
  if (tid == 0) {
    s_prefix = 0;
    s_mask = 0;
    s_remaining = a.k;
  }
  // k == 1 (greedy): the k-th largest key is the largest; one pass instead of four.
  if (a.k == 1) {
    u32 km = 0;
    for (int i = tid; i < n; i += QW_REDUCE_THREADS) km = max(km, qw_order_key(v[i]));
    km = __reduce_max_sync(0xffffffffu, km);
    if (lane == 0) (&hist[0][0])[warp] = int(km);
    __syncthreads();
    if (tid == 0) {
      u32 m = 0;
      for (int w = 0; w < kWarps; ++w) m = max(m, u32((&hist[0][0])[w]));
      s_prefix = m;
    }
    __syncthreads();
  }
  for (int shift = 24; a.k > 1 && shift >= 0; shift -= 8) {
    for (int i = tid; i < kWarps * 256; i += QW_REDUCE_THREADS) (&hist[0][0])[i] = 0;
    __syncthreads();
    const u32 prefix = s_prefix, mask = s_mask;
    for (int i = tid; i < n; i += QW_REDUCE_THREADS) {
      const u32 key = qw_order_key(v[i]);
      // Logits of one row mostly share their top bits: one atomic per distinct bin per
      // warp, not 32 serialized ones.
      const u32 bin = (key & mask) == prefix ? (key >> shift) & 0xffu : 0x100u;
      const u32 peers = __match_any_sync(__activemask(), bin);
      if (bin != 0x100u && lane == __ffs(peers) - 1) atomicAdd(&hist[warp][bin], __popc(peers));
    }
    __syncthreads();
    if (tid < 256) {
      int total = 0;
      for (int w = 0; w < kWarps; ++w) total += hist[w][tid];
      hist[0][tid] = total;
    }
    __syncthreads();
    if (tid == 0) {
      int remaining = s_remaining, d = 255;
      for (; d > 0; --d) {
        if (hist[0][d] >= remaining) break;
        remaining -= hist[0][d];
      }
      s_remaining = remaining;
      s_prefix = prefix | (u32(d) << shift);
      s_mask = mask | (0xffu << shift);
    }
    __syncthreads();
  }
  const u32 kth_key = s_prefix;

  // 3. Candidates (every key >= the k-th), and the row's maximum.
  __shared__ int s_count;
  __shared__ int c_ids[QW_MAX_CANDIDATES];
  __shared__ float c_vals[QW_MAX_CANDIDATES];
  __shared__ float s_red[kWarps];
  __shared__ double s_sum[kWarps];
  if (tid == 0) s_count = 0;
  __syncthreads();
  float mx = -INFINITY;
  for (int i = tid; i < n; i += QW_REDUCE_THREADS) {
    const float x = v[i];
    mx = fmaxf(mx, x);
    if (qw_order_key(x) >= kth_key) {
      const int slot = atomicAdd(&s_count, 1);
      if (slot < QW_MAX_CANDIDATES) {
        c_ids[slot] = i;
        c_vals[slot] = x;
      }
    }
  }
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  if (lane == 0) s_red[warp] = mx;
  __syncthreads();
  mx = s_red[0];
  for (int w = 1; w < kWarps; ++w) mx = fmaxf(mx, s_red[w]);

  // 4. log-sum-exp (float terms, double across threads; logprobs need ~1e-6, not bits).
  float part = 0.f;
  for (int i = tid; i < n; i += QW_REDUCE_THREADS) part += __expf(v[i] - mx);
  double dpart = part;
  for (int o = 16; o > 0; o >>= 1) dpart += __shfl_xor_sync(0xffffffffu, dpart, o);
  if (lane == 0) s_sum[warp] = dpart;
  __syncthreads();

  QwReduceOut* o = out + blockIdx.x;
  const int count = s_count;
  if (tid == 0) {
    double sum = 0.0;
    for (int w = 0; w < kWarps; ++w) sum += s_sum[w];
    o->logsumexp = double(mx) + log(sum);
    o->count = count > QW_MAX_CANDIDATES ? -1 : count;
  }
  // 5. Best first, lower id first among equals: each candidate's rank is the number of
  //    candidates that beat it (the slots came in arbitrary order).
  if (count <= QW_MAX_CANDIDATES && tid < count) {
    const float x = c_vals[tid];
    const int id = c_ids[tid];
    int rank = 0;
    for (int j = 0; j < count; ++j) {
      const float y = c_vals[j];
      rank += (y > x) || (y == x && c_ids[j] < id);
    }
    o->ids[rank] = id;
    o->values[rank] = x;
  }
}

// Greedy rows (k == 1, no penalties: what `qwrun bench`, temperature-0 requests and
// logprob-free argmax decoding ask) reduced by many blocks per row instead of one: the
// one-block kernel above spends ~60 us on a 152K row (it processes the row into scratch and
// reads it three times from a single SM), a fixed cost of every decode step. Each block of
// grid (ceil(n / QW_GREEDY_SLICE), rows) reduces a slice to its largest key, the ids
// holding it (ties, at most QW_MAX_CANDIDATES) and sum(exp(v - slice max)); the last block
// of a row to finish (arrival counter, returned to zero) merges the slices in order. Ids
// and values equal the one-block kernel's bit for bit; log-sum-exp differs in rounding only.
#define QW_GREEDY_SLICE 4096
#define QW_GREEDY_THREADS 256

struct QwGreedyPartial {
  u32 key;    // largest order key of the slice
  int count;  // ids holding it (may exceed QW_MAX_CANDIDATES: then only the count is kept)
  float mx;   // fmaxf over the slice (NaN-blind, as the one-block kernel's maximum)
  int pad;
  double sum;  // sum of exp(v - mx) over the slice, -inf entries excluded
  int ids[QW_MAX_CANDIDATES];
  float values[QW_MAX_CANDIDATES];
};

extern "C" __global__ void __launch_bounds__(QW_GREEDY_THREADS)
    reduce_rows_greedy(const float* __restrict__ logits, long long stride, int n,
                       const QwReduceRow* __restrict__ rows, QwGreedyPartial* __restrict__ parts,
                       int* __restrict__ counters, QwReduceOut* __restrict__ out) {
  constexpr int kWarps = QW_GREEDY_THREADS / 32;
  const QwReduceRow a = rows[blockIdx.y];
  const float* raw = logits + (long long)a.logit_row * stride;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int lo = blockIdx.x * QW_GREEDY_SLICE, hi = min(n, lo + QW_GREEDY_SLICE);
  const float temp = a.temperature;
  auto value = [&](int i) { return temp != 1.f ? __fdiv_rn(raw[i], temp) : raw[i]; };

  __shared__ u32 s_key[kWarps];
  __shared__ float s_mx[kWarps];
  __shared__ double s_sum[kWarps];
  __shared__ int s_count, s_last;
  u32 km = 0;
  float mx = -INFINITY;
  for (int i = lo + tid; i < hi; i += QW_GREEDY_THREADS) {
    const float v = value(i);
    km = max(km, qw_order_key(v));
    mx = fmaxf(mx, v);
  }
  km = __reduce_max_sync(0xffffffffu, km);
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  if (lane == 0) s_key[warp] = km, s_mx[warp] = mx;
  if (tid == 0) s_count = 0;
  __syncthreads();
  km = s_key[0];
  mx = s_mx[0];
  for (int w = 1; w < kWarps; ++w) km = max(km, s_key[w]), mx = fmaxf(mx, s_mx[w]);

  QwGreedyPartial* p = parts + (long long)blockIdx.y * gridDim.x + blockIdx.x;
  float part = 0.f;
  for (int i = lo + tid; i < hi; i += QW_GREEDY_THREADS) {
    const float v = value(i);
    if (qw_order_key(v) == km) {
      const int slot = atomicAdd(&s_count, 1);
      if (slot < QW_MAX_CANDIDATES) p->ids[slot] = i, p->values[slot] = v;
    }
    if (v != -INFINITY) part += __expf(v - mx);
  }
  __threadfence();  // the ids/values above, before this block's arrival is counted
  double dpart = part;
  for (int o = 16; o > 0; o >>= 1) dpart += __shfl_xor_sync(0xffffffffu, dpart, o);
  if (lane == 0) s_sum[warp] = dpart;
  __syncthreads();
  if (tid == 0) {
    double sum = 0.0;
    for (int w = 0; w < kWarps; ++w) sum += s_sum[w];
    p->key = km, p->count = s_count, p->mx = mx, p->sum = sum;
    __threadfence();
    s_last = atomicAdd(counters + blockIdx.y, 1) == int(gridDim.x) - 1;
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();

  // Merge (the row's last block): slices in order, so the sums add up the same every run.
  const QwGreedyPartial* ps = parts + (long long)blockIdx.y * gridDim.x;
  const int nb = int(gridDim.x);
  __shared__ int c_ids[QW_MAX_CANDIDATES];
  __shared__ float c_vals[QW_MAX_CANDIDATES];
  if (tid == 0) {
    u32 gk = 0;
    float gmx = -INFINITY;
    for (int b = 0; b < nb; ++b)
      gk = max(gk, __ldcg(&ps[b].key)), gmx = fmaxf(gmx, __ldcg(&ps[b].mx));
    double sum = 0.0;
    int total = 0;
    for (int b = 0; b < nb; ++b) {
      const float bmx = __ldcg(&ps[b].mx);
      const double bs = __ldcg(&ps[b].sum);
      // A slice of -inf only adds nothing (its own sum is 0); a NaN sum stays NaN.
      if (bmx != -INFINITY || bs != bs) sum += bs * exp(double(bmx) - double(gmx));
      if (__ldcg(&ps[b].key) != gk) continue;
      const int c = __ldcg(&ps[b].count);
      for (int j = 0; j < c && total + j < QW_MAX_CANDIDATES; ++j)
        c_ids[total + j] = __ldcg(&ps[b].ids[j]), c_vals[total + j] = __ldcg(&ps[b].values[j]);
      total += c;
    }
    QwReduceOut* o = out + blockIdx.y;
    // An all -inf row (gmx = -inf): the one-block kernel's exp(-inf - -inf) makes it NaN.
    o->logsumexp =
        gmx == -INFINITY ? __longlong_as_double(0x7ff8000000000000LL) : double(gmx) + log(sum);
    o->count = total > QW_MAX_CANDIDATES ? -1 : total;
    s_count = total;
    counters[blockIdx.y] = 0;
  }
  __syncthreads();
  // Every candidate has the same key, so "best first, lower id first" is id order (values
  // may differ only as -0 / +0, which compare equal).
  const int count = s_count;
  if (count <= QW_MAX_CANDIDATES && tid < count) {
    const int id = c_ids[tid];
    int rank = 0;
    for (int j = 0; j < count; ++j) rank += c_ids[j] < id;
    out[blockIdx.y].ids[rank] = id;
    out[blockIdx.y].values[rank] = c_vals[tid];
  }
}
