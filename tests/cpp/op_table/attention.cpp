// Op-table entries of runtime/mil/ops/attention.cpp against a double-precision
// softmax(q k^T / sqrt(E) + mask) v: no mask, an additive causal mask with
// -inf broadcast over the batch, a bool mask, a mask per batch broadcast over
// the queries, and a rank-1 mask broadcast over both.
#include <cmath>
#include <limits>

#include "op_table.h"

namespace staticllm::test::optable {
namespace {

constexpr int64_t kB = 2, kL = 3, kS = 5, kE = 4, kEv = 6;

std::vector<Array> sdpa(const Inputs& in) {
  const Array &q = in["query"], &k = in["key"], &v = in["value"];
  Array scores = matmul(q, transpose_last2(k));
  const double scale = 1 / std::sqrt(static_cast<double>(kE));
  scores = map(scores, [scale](double s) { return s * scale; });
  if (in.has("attn_mask")) {
    const Array& m = in["attn_mask"];
    bool boolean = m.dtype == DType::kBool;
    scores = zip(scores, m, scores.dtype, [boolean](double s, double mv) {
      return boolean ? (mv != 0 ? s : -std::numeric_limits<double>::infinity()) : s + mv;
    });
  }
  for (int64_t r = 0; r < kB * kL; ++r) {
    double* row = scores.v.data() + r * kS;
    double mx = -std::numeric_limits<double>::infinity(), total = 0;
    for (int64_t s = 0; s < kS; ++s) mx = std::max(mx, row[s]);
    for (int64_t s = 0; s < kS; ++s) total += row[s] = std::exp(row[s] - mx);
    for (int64_t s = 0; s < kS; ++s) row[s] /= total;
  }
  return {matmul(scores, v)};
}

Entry attention(const std::string& what) {
  return op("scaled_dot_product_attention", what)
      .in("query", F({kB, kL, kE}, values_in(kB * kL * kE, -2, 2, 21)))
      .in("key", F({kB, kS, kE}, values_in(kB * kS * kE, -2, 2, 22)))
      .in("value", F({kB, kS, kEv}, values_in(kB * kS * kEv, -1, 1, 23)))
      .reference(sdpa)
      .tol32(1e-5, 1e-5)
      .tol16(2e-3, 2e-3);
}

std::vector<Entry> attentions() {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> causal, allowed;  // query l sees keys s <= l + 2
  for (int64_t l = 0; l < kL; ++l)
    for (int64_t s = 0; s < kS; ++s) {
      causal.push_back(s <= l + 2 ? 0.0 : -inf);
      allowed.push_back(s <= l + 2 ? 1.0 : 0.0);
    }
  causal[1] = -0.75;  // an additive mask adds, not only blocks
  return {
      attention("no mask"),
      attention("additive [3, 5] mask with -inf, broadcast over the batch").in("attn_mask", F({kL, kS}, causal)),
      attention("bool [1, 3, 5] mask").in("attn_mask", Bool({1, kL, kS}, allowed)),
      attention("additive [2, 1, 5] mask, one row per batch broadcast over the queries")
          .in("attn_mask", F({kB, 1, kS}, {0, -0.5, 0, 0.25, -inf, -inf, 0, 0.1, 0, 0})),
      attention("additive rank-1 [5] mask broadcast over batch and queries")
          .in("attn_mask", F({kS}, {0, 0.3, -inf, 0, -0.2})),
  };
}

[[maybe_unused]] const bool registered = add_entries(attentions());

}  // namespace
}  // namespace staticllm::test::optable
