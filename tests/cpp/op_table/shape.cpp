// Op-table entries of runtime/mil/ops/shape.cpp: literal results for the
// views (reshape, squeeze, expand_dims, identity, shape), index-math
// references for transpose and tile.
#include "op_table.h"

namespace staticllm::test::optable {
namespace {

std::vector<double> iota(int64_t n) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<double>(i) + 1;
  return v;
}

std::vector<Entry> views() {
  return {
      op("reshape", "-1 inferred").in("x", F({2, 3}, iota(6))).ints("shape", {3, -1}).expect({F({3, 2}, iota(6))}),
      op("reshape", "0 copies the input dim, int32")
          .in("x", I32({2, 3}, iota(6)))
          .ints("shape", {0, 1, 3})
          .expect({I32({2, 1, 3}, iota(6))}),
      op("squeeze", "axes 0, -1").in("x", F({1, 3, 1}, iota(3))).ints("axes", {0, -1}).expect({F({3}, iota(3))}),
      op("squeeze", "all size-1 axes by default").in("x", Bool({1, 2, 1, 1}, {1, 0})).expect({Bool({2}, {1, 0})}),
      op("expand_dims", "axes 0, -1")
          .in("x", F({2, 3}, iota(6)))
          .ints("axes", {0, -1})
          .expect({F({1, 2, 3, 1}, iota(6))}),
      op("identity", "copies").in("x", F({2, 2}, {-1, 0.5, 3, 7})).expect({F({2, 2}, {-1, 0.5, 3, 7})}),
      op("identity", "int32").in("x", I32({3}, {-1, 0, 9})).expect({I32({3}, {-1, 0, 9})}),
      op("shape", "of a float tensor").in("x", F({2, 3, 4}, iota(24))).expect({I32({3}, {2, 3, 4})}),
      op("shape", "of a scalar").in("x", I32({}, {5})).expect({I32({0}, {})}),
  };
}

Entry transpose(const std::vector<int64_t>& perm, const Shape& shape) {
  std::vector<double> p(perm.begin(), perm.end());
  std::string what = "perm";
  for (int64_t a : perm) what += " " + std::to_string(a);
  return op("transpose", what)
      .in("x", F(shape, iota(shape_numel(shape))))
      .ints("perm", p)
      .reference([=](const Inputs& in) {
        const Array& x = in["x"];
        int64_t rank = static_cast<int64_t>(shape.size());
        Shape out_shape;
        for (int64_t a : perm) out_shape.push_back(shape[(a + rank) % rank]);
        return std::vector<Array>{pick(x, out_shape, [&](const std::vector<int64_t>& idx) {
          std::vector<int64_t> xi(rank);
          for (int64_t d = 0; d < rank; ++d) xi[(perm[d] + rank) % rank] = idx[d];
          int64_t flat = 0;
          for (int64_t d = 0; d < rank; ++d) flat = flat * shape[d] + xi[d];
          return flat;
        })};
      });
}

Entry tile(const std::vector<int64_t>& reps, const Shape& shape) {
  std::vector<double> r(reps.begin(), reps.end());
  std::string what = "reps";
  for (int64_t a : reps) what += " " + std::to_string(a);
  return op("tile", what).in("x", F(shape, iota(shape_numel(shape)))).ints("reps", r).reference([=](const Inputs& in) {
    Shape out_shape;
    for (size_t d = 0; d < shape.size(); ++d) out_shape.push_back(shape[d] * reps[d]);
    return std::vector<Array>{pick(in["x"], out_shape, [&](const std::vector<int64_t>& idx) {
      int64_t flat = 0;
      for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + idx[d] % shape[d];
      return flat;
    })};
  });
}

std::vector<Entry> copies() {
  return {
      transpose({1, 0}, {2, 3}), transpose({2, 0, 1}, {2, 3, 4}), transpose({-1, 1, 0, 2}, {2, 1, 3, 4}),
      tile({2, 3}, {2, 3}),      tile({1, 2, 1}, {2, 1, 3}),      tile({3, 1}, {1, 4}),
  };
}

std::vector<Entry> shaped_like() {
  return {
      op("flatten2d", "axis 1 by default").in("x", F({2, 3, 2}, iota(12))).expect({F({2, 6}, iota(12))}),
      op("flatten2d", "axis -1").in("x", F({2, 3, 2}, iota(12))).scalar_int("axis", -1).expect({F({6, 2}, iota(12))}),
      // the shape is [2, 3] (a's dims 0..2) followed by [5, 6] (b's dims from 1 on)
      op("reshape_like", "pieces of two reference shapes")
          .in("x", F({60}, iota(60)))
          .in("ref_tensors", F({2, 3, 4}, iota(24)))
          .in("ref_tensors", F({1, 5, 2}, iota(10)))
          .scalar_int("begins", 0)
          .scalar_int("begins", 1)
          .scalar_int("ends", 2)
          .scalar_int("ends", 0)
          .flag("end_masks", false)
          .flag("end_masks", true)
          .expect({F({2, 3, 5, 2}, iota(60))}),
  };
}

[[maybe_unused]] const bool registered = add_entries(views()) && add_entries(copies()) && add_entries(shaped_like());

}  // namespace
}  // namespace staticllm::test::optable
