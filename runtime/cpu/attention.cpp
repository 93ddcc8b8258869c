#include "cpu/attention.h"

#include <algorithm>
#include <cmath>

#include "cpu/matmul.h"

namespace qw::cpu {

void attention(ThreadPool& pool, const KvCache& cache, const std::vector<AttentionRow>& rows,
               const AttentionShape& s, const float* q, int64_t ldq, float* out, int64_t ldo) {
  const int64_t group = s.q_heads / s.kv_heads;
  const int64_t hd = s.head_dim;
  // transformers: scaling = head_dim ** -0.5, applied to the fp32 scores.
  const float scale = float(1.0 / std::sqrt(double(hd)));
  const int64_t tasks = int64_t(rows.size()) * s.q_heads;
  pool.parallel_for(tasks, 1, [&](int64_t tb, int64_t te) {
    std::vector<float> scores;
    for (int64_t t = tb; t < te; ++t) {
      const int64_t i = t / s.q_heads, h = t % s.q_heads, g = h / group;
      const AttentionRow& row = rows[size_t(i)];
      const int64_t first = s.window > 0 ? std::max<int64_t>(0, row.pos - s.window + 1) : 0;
      const int64_t n = row.pos + 1 - first;
      scores.resize(size_t(n));
      const float* qv = q + i * ldq + h * hd;
      float mx = -INFINITY;
      for (int64_t k = 0; k < n; ++k) {
        const float* kv = cache.slot(*row.table, s.rank, s.layer, 0, g, first + k);
        scores[size_t(k)] = dot(qv, kv, hd) * scale;
        mx = std::max(mx, scores[size_t(k)]);
      }
      double sum = 0.0;
      for (int64_t k = 0; k < n; ++k) {
        scores[size_t(k)] = std::exp(scores[size_t(k)] - mx);
        sum += scores[size_t(k)];
      }
      const float inv = float(1.0 / sum);
      float* o = out + i * ldo + h * hd;
      std::fill(o, o + hd, 0.0f);
      for (int64_t k = 0; k < n; ++k) {
        const float* vv = cache.slot(*row.table, s.rank, s.layer, 1, g, first + k);
        axpy(scores[size_t(k)] * inv, vv, o, hd);
      }
    }
  });
}

}  // namespace qw::cpu
