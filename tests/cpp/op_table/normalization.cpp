// Op-table entries of runtime/mil/ops/normalization.cpp: each op with its
// parameters given and defaulted; layer_norm over the last axis and over
// non-adjacent axes; local_response_norm windows cut at both channel ends
// (channels on the third axis from the end).
#include <algorithm>
#include <cmath>
#include <functional>

#include "op_table.h"

namespace staticllm::test::optable {
namespace {

double param(const Inputs& in, const std::string& name, double fallback) {
  return in.has(name) ? in[name].v[0] : fallback;
}
double at(const Inputs& in, const std::string& name, int64_t i, double fallback) {
  return in.has(name) ? in[name].v[i] : fallback;
}

// (x - mean) / sqrt(var + eps) over groups of x: member(i) says whether axis i
// is normalised over; gamma/beta are read at index `param_index(group, member)`.
Array group_norm(const Inputs& in, const std::vector<bool>& member, double eps,
                 const std::function<int64_t(const std::vector<int64_t>&, int64_t)>& param_index) {
  const Array& x = in["x"];
  Shape kept(x.shape.size());
  for (size_t d = 0; d < kept.size(); ++d) kept[d] = member[d] ? 1 : x.shape[d];
  std::vector<double> sum(shape_numel(kept)), sq(shape_numel(kept));
  double count = static_cast<double>(x.numel() / shape_numel(kept));
  auto group_of = [&](const std::vector<int64_t>& idx) {
    int64_t g = 0;
    for (size_t d = 0; d < idx.size(); ++d) g = g * kept[d] + (member[d] ? 0 : idx[d]);
    return g;
  };
  auto member_of = [&](const std::vector<int64_t>& idx) {
    int64_t m = 0;
    for (size_t d = 0; d < idx.size(); ++d)
      if (member[d]) m = m * x.shape[d] + idx[d];
    return m;
  };
  Array out = x;
  for (int pass = 0; pass < 3; ++pass) {
    std::vector<int64_t> idx(x.shape.size(), 0);
    for (int64_t i = 0; i < x.numel(); ++i) {
      int64_t g = group_of(idx);
      double mean = sum[g] / count;
      if (pass == 0) sum[g] += x.v[i];
      if (pass == 1) sq[g] += (x.v[i] - mean) * (x.v[i] - mean);
      if (pass == 2) {
        int64_t p = param_index(idx, member_of(idx));
        out.v[i] = (x.v[i] - mean) / std::sqrt(sq[g] / count + eps) * at(in, "gamma", p, 1) + at(in, "beta", p, 0);
      }
      for (int64_t d = static_cast<int64_t>(idx.size()) - 1; d >= 0 && ++idx[d] == x.shape[d]; --d) idx[d] = 0;
    }
  }
  return out;
}

// torch.nn.LocalResponseNorm: the window of channel c is [c - size/2, c + (size-1)/2].
// Channels on the third axis from the end: [N, C, H, W] or [C, H, W].
Array lrn(const Inputs& in, int64_t size, double alpha, double beta, double k) {
  const Array& x = in["x"];
  const size_t r = x.shape.size();
  int64_t C = x.shape[r - 3], inner = x.shape[r - 2] * x.shape[r - 1], N = x.numel() / (C * inner);
  Array out = x;
  for (int64_t b = 0; b < N; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < inner; ++i) {
        double sq = 0;
        for (int64_t j = std::max<int64_t>(0, c - size / 2); j <= std::min(C - 1, c + (size - 1) / 2); ++j)
          sq += x.v[(b * C + j) * inner + i] * x.v[(b * C + j) * inner + i];
        out.v[(b * C + c) * inner + i] /= std::pow(k + alpha / static_cast<double>(size) * sq, beta);
      }
  return out;
}

Spec channels3() { return F({3}, {0.5, -1.25, 2}); }

std::vector<Entry> normalization_entries() {
  Spec x4 = F({2, 3, 2, 2}, values_in(24, -3, 3, 11));
  Spec x3 = F({2, 3, 4}, values_in(24, -2, 4, 12));
  auto channel = [](const std::vector<int64_t>& idx, int64_t) { return idx[1]; };
  auto by_member = [](const std::vector<int64_t>&, int64_t m) { return m; };
  return {
      op("batch_norm", "every parameter given")
          .in("x", x4)
          .konst("mean", F({3}, {0.25, -0.5, 1}))
          .konst("variance", F({3}, {1.5, 0.25, 4}))
          .konst("gamma", channels3())
          .konst("beta", F({3}, {0.1, 0.2, -0.3}))
          .scalar("epsilon", 1e-3)
          .reference([](const Inputs& in) {
            Array out = in["x"];
            for (int64_t i = 0; i < out.numel(); ++i) {
              int64_t c = (i / 4) % 3;
              out.v[i] = (out.v[i] - in["mean"].v[c]) / std::sqrt(in["variance"].v[c] + in["epsilon"].v[0]) *
                             in["gamma"].v[c] +
                         in["beta"].v[c];
            }
            return std::vector<Array>{out};
          }),
      op("batch_norm", "rank 3, gamma and beta defaulted")
          .in("x", x3)
          .konst("mean", F({3}, {0.25, -0.5, 1}))
          .konst("variance", F({3}, {1.5, 0.25, 4}))
          .reference([](const Inputs& in) {
            Array out = in["x"];
            for (int64_t i = 0; i < out.numel(); ++i) {
              int64_t c = (i / 4) % 3;
              out.v[i] = (out.v[i] - in["mean"].v[c]) / std::sqrt(in["variance"].v[c] + 1e-5);
            }
            return std::vector<Array>{out};
          }),
      op("batch_norm", "fp32 x, output in the declared dtype of the constants (coremltools' iOS15 fp16 inputs)")
          .in("x", Typed(DType::kFloat32, {1, 3, 2, 2}, values_in(12, -3, 3, 13)))
          .konst("mean", F({3}, {0.25, -0.5, 1}))
          .konst("variance", F({3}, {1.5, 0.25, 4}))
          .declares({F({1, 3, 2, 2}, {})})
          .reference([](const Inputs& in) {
            Array out = in["x"];
            out.dtype = in.float_dtype;
            for (int64_t i = 0; i < out.numel(); ++i) {
              int64_t c = i / 4;
              out.v[i] = (out.v[i] - in["mean"].v[c]) / std::sqrt(in["variance"].v[c] + 1e-5);
            }
            return std::vector<Array>{out};
          }),
      op("instance_norm", "rank 4 with gamma, beta, epsilon")
          .in("x", x4)
          .konst("gamma", channels3())
          .konst("beta", F({3}, {0.1, 0.2, -0.3}))
          .scalar("epsilon", 1e-2)
          .reference([=](const Inputs& in) {
            return std::vector<Array>{group_norm(in, {false, false, true, true}, param(in, "epsilon", 0), channel)};
          }),
      op("instance_norm", "rank 3, defaults").in("x", x3).reference([=](const Inputs& in) {
        return std::vector<Array>{group_norm(in, {false, false, true}, 1e-5, channel)};
      }),
      op("layer_norm", "last axis with gamma and beta")
          .in("x", x3)
          .ints("axes", {-1})
          .konst("gamma", F({4}, {1, 0.5, -2, 1.5}))
          .konst("beta", F({4}, {0, 0.25, 0.5, -1}))
          .scalar("epsilon", 1e-4)
          .reference([=](const Inputs& in) {
            return std::vector<Array>{group_norm(in, {false, false, true}, param(in, "epsilon", 0), by_member)};
          }),
      op("layer_norm", "axes 0 and 2 (not adjacent), gamma [2, 4]")
          .in("x", x3)
          .ints("axes", {2, 0})
          .konst("gamma", F({2, 4}, values_in(8, 0.5, 2, 13)))
          .reference([=](const Inputs& in) {
            return std::vector<Array>{group_norm(in, {true, false, true}, 1e-5, by_member)};
          }),
      op("layer_norm", "all axes by default").in("x", x3).reference([=](const Inputs& in) {
        return std::vector<Array>{group_norm(in, {true, true, true}, 1e-5, by_member)};
      }),
      op("l2_norm", "rank 4: the leading axis is a batch")
          .in("x", x4)
          .scalar("epsilon", 1e-3)
          .reference([](const Inputs& in) {
            Array out = in["x"];
            for (int64_t b = 0; b < 2; ++b) {
              double sq = 0;
              for (int64_t i = 0; i < 12; ++i) sq += out.v[b * 12 + i] * out.v[b * 12 + i];
              for (int64_t i = 0; i < 12; ++i) out.v[b * 12 + i] /= std::sqrt(sq + in["epsilon"].v[0]);
            }
            return std::vector<Array>{out};
          }),
      op("local_response_norm", "size 3 with alpha, beta, k, channels on axis 1 of rank 4")
          .in("x", F({1, 4, 3, 1}, values_in(12, -4, 4, 14)))
          .scalar_int("size", 3)
          .scalar("alpha", 0.5)
          .scalar("beta", 0.5)
          .scalar("k", 2)
          .reference([](const Inputs& in) { return std::vector<Array>{lrn(in, 3, 0.5, 0.5, 2)}; }),
      op("local_response_norm", "size 2, defaults, rank 3 read as [C, H, W]")
          .in("x", F({3, 2, 2}, {1, -7, 5, -6, -3, -5, 2, 8, -1, 4, 0.5, 3}))
          .scalar_int("size", 2)
          .reference([](const Inputs& in) { return std::vector<Array>{lrn(in, 2, 1e-4, 0.75, 1)}; }),
  };
}

[[maybe_unused]] const bool registered = add_entries(normalization_entries());

}  // namespace
}  // namespace staticllm::test::optable
