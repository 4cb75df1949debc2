// Op-table entries of runtime/mil/ops/einsum.cpp against a double-precision
// einsum over every index combination: MIL's two documented equations (with
// a broadcast batch), an outer product, a diagonal with a summed letter, and
// a full contraction to a scalar.
#include <map>

#include "op_table.h"

namespace staticllm::test::optable {
namespace {

// numpy's einsum for two operands: every assignment of the letters, the
// product added into the output element it names (size-1 dims broadcast).
Array einsum_ref(const std::string& eq, const Array& a, const Array& b) {
  const size_t comma = eq.find(','), arrow = eq.find("->");
  const std::string spec[2] = {eq.substr(0, comma), eq.substr(comma + 1, arrow - comma - 1)};
  const std::string out = eq.substr(arrow + 2);
  const Array* ops[2] = {&a, &b};
  std::map<char, int64_t> size;
  for (int k = 0; k < 2; ++k)
    for (size_t i = 0; i < spec[k].size(); ++i) size[spec[k][i]] = std::max(size[spec[k][i]], ops[k]->shape[i]);
  std::string all;
  for (const auto& [c, n] : size) all += c;
  Shape out_shape;
  for (char c : out) out_shape.push_back(size[c]);
  Array r{a.dtype, out_shape, std::vector<double>(shape_numel(out_shape), 0.0)};
  std::map<char, int64_t> at;
  for (char c : all) at[c] = 0;
  auto flat = [&](const std::string& s, const Shape& shape) {
    int64_t f = 0;
    for (size_t i = 0; i < s.size(); ++i) f = f * shape[i] + (shape[i] == 1 ? 0 : at[s[i]]);
    return f;
  };
  while (true) {
    r.v[flat(out, out_shape)] += a.v[flat(spec[0], a.shape)] * b.v[flat(spec[1], b.shape)];
    size_t i = all.size();
    while (i > 0 && ++at[all[i - 1]] == size[all[i - 1]]) at[all[--i]] = 0;
    if (i == 0) break;
  }
  return r;
}

Entry einsum(const std::string& eq, Shape sa, Shape sb) {
  return op("einsum", eq + " " + shape_to_string(sa) + " " + shape_to_string(sb))
      .in("values", F(sa, values_in(shape_numel(sa), -2, 2, 41)))
      .in("values", F(sb, values_in(shape_numel(sb), -2, 2, 42)))
      .string("equation", eq)
      .reference([eq](const Inputs& in) {
        return std::vector<Array>{einsum_ref(eq, in.all("values")[0], in.all("values")[1])};
      })
      .tol16(2e-3, 1e-2);
}

std::vector<Entry> einsum_entries() {
  return {
      einsum("abcd,adce->abce", {2, 3, 2, 4}, {1, 4, 2, 3}),
      einsum("chw,whr->chr", {3, 2, 4}, {4, 1, 5}),
      einsum("i,j->ij", {3}, {4}),
      einsum("iij,j->i", {3, 3, 2}, {2}),
      einsum("ij,kjl->j", {2, 3}, {2, 3, 2}),
      einsum("ij,ij->", {2, 3}, {2, 3}),
  };
}

[[maybe_unused]] const bool registered = add_entries(einsum_entries());

}  // namespace
}  // namespace staticllm::test::optable
