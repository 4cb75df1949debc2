// The op table's registry, entry setters and double-precision reference helpers.
#include "op_table.h"

#include <algorithm>
#include <stdexcept>

namespace staticllm::test::optable {

Spec F(Shape shape, std::vector<double> v) { return {std::nullopt, std::move(shape), std::move(v), ""}; }
Spec I32(Shape shape, std::vector<double> v) { return Typed(DType::kInt32, std::move(shape), std::move(v)); }
Spec Bool(Shape shape, std::vector<double> v) { return Typed(DType::kBool, std::move(shape), std::move(v)); }
Spec Typed(DType dtype, Shape shape, std::vector<double> v) { return {dtype, std::move(shape), std::move(v), ""}; }
Spec List(Spec elements, bool dynamic_length) {
  elements.is_list = true;
  elements.dynamic_length = dynamic_length;
  return elements;
}

const std::vector<Array>& Inputs::all(const std::string& name) const {
  auto it = by_name.find(name);
  if (it == by_name.end()) throw std::logic_error("op table reference reads unknown input '" + name + "'");
  return it->second;
}

Entry& Entry::in(const std::string& name, Spec s) {
  params.push_back({name, std::move(s), false});
  return *this;
}
Entry& Entry::konst(const std::string& name, Spec s) {
  params.push_back({name, std::move(s), true});
  return *this;
}
Entry& Entry::ints(const std::string& name, std::vector<double> v) {
  int64_t n = static_cast<int64_t>(v.size());
  return konst(name, I32({n}, std::move(v)));
}
Entry& Entry::scalar_int(const std::string& name, int64_t v) { return konst(name, I32({}, {static_cast<double>(v)})); }
Entry& Entry::scalar(const std::string& name, double v) { return konst(name, F({}, {v})); }
Entry& Entry::flag(const std::string& name, bool v) { return konst(name, Bool({}, {v ? 1.0 : 0.0})); }
Entry& Entry::string(const std::string& name, const std::string& s) {
  return konst(name, {DType::kFloat32, {}, {}, s});
}
Entry& Entry::reference(Reference r) {
  ref = std::move(r);
  return *this;
}
Entry& Entry::expect(std::vector<Spec> outputs) {
  ref = [outputs](const Inputs& in) {  // literal outputs take the run's float dtype like inputs do
    std::vector<Array> out;
    for (const Spec& s : outputs) out.push_back({s.dtype.value_or(in.float_dtype), s.shape, s.v});
    return out;
  };
  return *this;
}
Entry& Entry::writes(const std::string& name) {
  written.push_back(name);
  return *this;
}
Entry& Entry::declares_output_like(const std::string& name) {
  declared_like = name;
  return *this;
}
Entry& Entry::declares(std::vector<Spec> outputs) {
  declared = std::move(outputs);
  return *this;
}
Entry& Entry::tol32(double rtol, double atol) {
  fp32 = {rtol, atol};
  return *this;
}
Entry& Entry::tol16(double rtol, double atol) {
  fp16 = {rtol, atol};
  return *this;
}
bool Entry::takes_floats() const {
  return std::any_of(params.begin(), params.end(),
                     [](const Param& p) { return !p.spec.dtype.has_value() && p.spec.str.empty(); });
}

Entry op(std::string type, std::string what) {
  Entry e;
  e.op = std::move(type);
  e.what = std::move(what);
  return e;
}

static std::vector<Entry>& table() {
  static std::vector<Entry> t;
  return t;
}

bool add_entries(std::vector<Entry> entries) {
  for (auto& e : entries) table().push_back(std::move(e));
  return true;
}

const std::vector<Entry>& entries() { return table(); }

std::vector<double> values_in(int64_t n, double lo, double hi, uint32_t seed) {
  std::vector<double> v(static_cast<size_t>(n));
  uint32_t s = seed * 2654435761u + 12345u;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = lo + (hi - lo) * (static_cast<double>(s >> 8) / static_cast<double>(1u << 24));
  }
  return v;
}

Array map(const Array& x, const std::function<double(double)>& f) {
  Array out = x;
  for (auto& v : out.v) v = f(v);
  return out;
}

namespace {

// Flat index into `s` (right-aligned against `out`, size-1 dims broadcast) of
// the output multi-index `idx`.
int64_t broadcast_offset(const Shape& s, const Shape& out, const std::vector<int64_t>& idx) {
  int64_t off = 0, stride = 1;
  for (size_t d = 0; d < s.size(); ++d) {
    size_t sd = s.size() - 1 - d, od = out.size() - 1 - d;
    if (s[sd] != 1) off += idx[od] * stride;
    stride *= s[sd];
  }
  return off;
}

bool next_index(std::vector<int64_t>& idx, const Shape& shape) {
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    if (++idx[d] < shape[d]) return true;
    idx[d] = 0;
  }
  return false;
}

Shape broadcast(const Shape& a, const Shape& b) {
  size_t rank = std::max(a.size(), b.size());
  Shape out(rank, 1);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) throw std::logic_error("op table reference: shapes do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace

Array zip(const Array& a, const Array& b, DType out_dtype, const std::function<double(double, double)>& f) {
  Array out{out_dtype, broadcast(a.shape, b.shape), {}};
  std::vector<int64_t> idx(out.shape.size(), 0);
  for (int64_t i = 0; i < out.numel(); ++i, next_index(idx, out.shape)) {
    out.v.push_back(f(a.v[broadcast_offset(a.shape, out.shape, idx)], b.v[broadcast_offset(b.shape, out.shape, idx)]));
  }
  return out;
}

Array reduce(const Array& x, std::vector<int64_t> axes, bool keep_dims, DType out_dtype,
             const std::function<double(const std::vector<double>&)>& f) {
  int64_t rank = static_cast<int64_t>(x.shape.size());
  std::vector<bool> reduced(rank, false);
  for (int64_t a : axes) reduced[a < 0 ? a + rank : a] = true;
  Shape kept(rank);  // the output shape with reduced dims kept as 1
  for (int64_t d = 0; d < rank; ++d) kept[d] = reduced[d] ? 1 : x.shape[d];
  std::vector<std::vector<double>> groups(static_cast<size_t>(shape_numel(kept)));
  std::vector<int64_t> idx(rank, 0);
  for (int64_t i = 0; i < x.numel(); ++i, next_index(idx, x.shape)) {
    int64_t g = 0;
    for (int64_t d = 0; d < rank; ++d) g = g * kept[d] + (reduced[d] ? 0 : idx[d]);
    groups[g].push_back(x.v[i]);
  }
  Array out{out_dtype, {}, {}};
  for (int64_t d = 0; d < rank; ++d) {
    if (!reduced[d] || keep_dims) out.shape.push_back(kept[d]);
  }
  for (const auto& g : groups) out.v.push_back(f(g));
  return out;
}

Array matmul(const Array& a, const Array& b) {
  size_t ra = a.shape.size(), rb = b.shape.size();
  int64_t M = a.shape[ra - 2], K = a.shape[ra - 1], N = b.shape[rb - 1];
  if (b.shape[rb - 2] != K) throw std::logic_error("op table reference: matmul inner dims differ");
  Shape batch = broadcast(Shape(a.shape.begin(), a.shape.end() - 2), Shape(b.shape.begin(), b.shape.end() - 2));
  Shape ab(a.shape.begin(), a.shape.end() - 2), bb(b.shape.begin(), b.shape.end() - 2);
  Array out{a.dtype, batch, {}};
  out.shape.push_back(M);
  out.shape.push_back(N);
  std::vector<int64_t> idx(batch.size(), 0);
  for (int64_t i = 0; i < shape_numel(batch); ++i, next_index(idx, batch)) {
    const double* pa = a.v.data() + broadcast_offset(ab, batch, idx) * M * K;
    const double* pb = b.v.data() + broadcast_offset(bb, batch, idx) * K * N;
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += pa[m * K + k] * pb[k * N + n];
        out.v.push_back(acc);
      }
    }
  }
  return out;
}

Array pick(const Array& x, const Shape& out_shape, const std::function<int64_t(const std::vector<int64_t>&)>& src) {
  Array out{x.dtype, out_shape, {}};
  std::vector<int64_t> idx(out_shape.size(), 0);
  for (int64_t i = 0; i < shape_numel(out_shape); ++i, next_index(idx, out_shape)) out.v.push_back(x.v.at(src(idx)));
  return out;
}

Array transpose_last2(const Array& x) {
  size_t r = x.shape.size();
  int64_t R = x.shape[r - 2], C = x.shape[r - 1];
  Array out = x;
  std::swap(out.shape[r - 2], out.shape[r - 1]);
  for (int64_t m = 0; m < x.numel() / (R * C); ++m)
    for (int64_t i = 0; i < R; ++i)
      for (int64_t j = 0; j < C; ++j) out.v[m * R * C + j * R + i] = x.v[m * R * C + i * C + j];
  return out;
}

}  // namespace staticllm::test::optable
