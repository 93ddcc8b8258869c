#include "engine/candidates.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace qw {

void reduce_row_to_candidates(std::span<const float> row, const CandidateRequest& req,
                              RowCandidates& out) {
  out.ids.clear();
  out.values.clear();
  out.complete = false;
  out.logsumexp = 0.0;
  if (req.k <= 0 || row.empty()) return;
  std::vector<float> v(row.begin(), row.end());
  if (req.temperature != 1.f)
    for (float& x : v) x = x / req.temperature;
  for (const LogitPenalty& e : req.penalties) {
    if (e.id < 0 || size_t(e.id) >= row.size()) continue;
    float x = row[size_t(e.id)];
    if (e.repeat && req.repetition_penalty != 1.f)
      x = x < 0 ? x * req.repetition_penalty : x / req.repetition_penalty;
    x -= e.delta;
    if (req.temperature != 1.f) x = x / req.temperature;
    v[size_t(e.id)] = x;
  }
  std::vector<int32_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto better = [&](int32_t a, int32_t b) {
    return v[size_t(a)] > v[size_t(b)] || (v[size_t(a)] == v[size_t(b)] && a < b);
  };
  const size_t k = std::min(size_t(req.k), v.size());
  std::nth_element(idx.begin(), idx.begin() + long(k) - 1, idx.end(), better);
  const float kth = v[size_t(idx[k - 1])];
  size_t count = 0;
  for (float x : v) count += x >= kth;
  double sum = 0.0;
  float mx = kth;
  for (float x : v) mx = std::max(mx, x);
  for (float x : v) sum += std::exp(double(x) - double(mx));
  out.logsumexp = double(mx) + std::log(sum);
  if (count > size_t(kMaxCandidates)) return;  // ties overflow: the caller takes the row
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] >= kth) out.ids.push_back(int32_t(i));
  std::sort(out.ids.begin(), out.ids.end(), better);
  for (int32_t id : out.ids) out.values.push_back(v[size_t(id)]);
  out.complete = true;
}

}  // namespace qw
