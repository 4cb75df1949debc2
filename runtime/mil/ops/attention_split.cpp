#include "mil/ops/attention_split.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <vector>

#include "mil/kernels/gemm.h"
#include "mil/kernels/softmax.h"
#include "mil/ops/elementwise_util.h"
#include "mil/ops/linear_mixed.h"
#include "mil/thread_pool.h"

namespace staticllm::mil {

namespace {

struct SplitPlan {
  int64_t batches = 1, L = 0, E = 0, Ev = 0, S[2] = {0, 0}, St = 0;
  DType dtype = DType::kFloat32, mask_dtype = DType::kFloat32;
  float scale = 1.f;
  std::vector<int64_t> mask_row;   // mask element offset of score row b * L + l
  std::vector<int64_t> mask_key;   // score row -> its mask row in `mask_rows` (rows share one mask row across heads)
  std::vector<int64_t> mask_rows;  // distinct mask row offsets
  int64_t mask_col = 0;            // mask stride along the key axis (0: broadcast)
  int64_t chunk_rows = 1, chunks = 1;
  size_t per_slot = 0;  // scratch floats per thread slot
  int slots = 1;
};

// Rows of at most this many queries per work item: enough for the panel
// gemm (16 rows), few enough that causal rows of a prefill share a short
// span of visible keys.
constexpr int64_t kChunkRows = 32;

// v <- fp16(v): what storing an fp16 op's result does.
void round_half(float* v, int64_t n, half_bits* tmp) {
  float_to_half_n(v, tmp, n);
  half_to_float_n(tmp, v, n);
}

// The key columns a mask row leaves visible: [lo, hi) of each part (its own
// column numbering; lo = hi = 0 when none), and whether the row sees any.
struct Span {
  int64_t lo[2] = {0, 0}, hi[2] = {0, 0};
  bool any = false;
};

Span row_span(const SplitPlan& p, const float* m) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  Span s;
  for (int part = 0, base = 0; part < 2; base += static_cast<int>(p.S[part]), ++part) {
    int64_t first = 0, last = p.S[part];
    while (first < last && m[base + first] == neg_inf) ++first;
    while (last > first && m[base + last - 1] == neg_inf) --last;
    if (first == last) continue;
    s.any = true;
    s.lo[part] = first;
    s.hi[part] = last;
  }
  return s;
}

// The spans of every distinct mask row of this call.
std::vector<Span> mask_spans(const SplitPlan& p, const Tensor& mask) {
  std::vector<Span> spans(p.mask_rows.size());
  std::vector<float> buf(static_cast<size_t>(p.St));
  for (size_t i = 0; i < spans.size(); ++i)
    spans[i] = row_span(p, load_run<float>(p.mask_dtype, mask.data(), p.mask_rows[i], p.mask_col, p.St, buf.data()));
  return spans;
}

// The union of the spans of score rows [row0, row0 + rows). Everything when
// a row sees no key at all: softmax then gives NaN, as the program would.
Span block_span(const SplitPlan& p, const std::vector<Span>& spans, int64_t row0, int64_t rows) {
  Span u;
  u.lo[0] = u.lo[1] = std::numeric_limits<int64_t>::max();
  for (int64_t r = row0; r < row0 + rows; ++r) {
    const Span& s = spans[static_cast<size_t>(p.mask_key[static_cast<size_t>(r)])];
    if (!s.any) return Span{{0, 0}, {p.S[0], p.S[1]}, true};
    for (int part = 0; part < 2; ++part) {
      if (s.hi[part] == s.lo[part]) continue;
      u.lo[part] = std::min(u.lo[part], s.lo[part]);
      u.hi[part] = std::max(u.hi[part], s.hi[part]);
    }
  }
  for (int part = 0; part < 2; ++part)
    if (u.hi[part] <= u.lo[part]) u.lo[part] = u.hi[part] = 0;
  return u;
}

// Query rows [m0, m0 + rows) of batch b.
void split_rows(const SplitPlan& p, const KernelCall& call, const std::vector<Span>& spans, int64_t b, int64_t m0,
                int64_t rows, float* buf) {
  const bool half = p.dtype == DType::kFloat16;
  const WeightType wt = half ? WeightType::kF16 : WeightType::kF32;
  const size_t esize = dtype_size(p.dtype);
  float* q = buf;
  float* mask = q + rows * p.E;
  float* scores = mask + rows * p.St;
  float* probs = scores + rows * p.St;
  float* out[2] = {probs + rows * p.St, probs + rows * p.St + rows * p.Ev};
  auto* tmp = reinterpret_cast<half_bits*>(out[1] + rows * p.Ev);
  const int64_t row0 = b * p.L + m0;
  const float* qs = load_run<float>(p.dtype, call.in(0).data(), row0 * p.E, 1, rows * p.E, q);
  if (qs != q) std::memcpy(q, qs, sizeof(float) * rows * p.E);
  const Span span = block_span(p, spans, row0, rows);
  const int64_t *lo = span.lo, *hi = span.hi;
  const int64_t n[2] = {hi[0] - lo[0], hi[1] - lo[1]}, nt = n[0] + n[1];
  for (int64_t r = 0; r < rows; ++r) {  // the mask over the visible columns, [rows, nt]
    for (int part = 0; part < 2; ++part) {
      float* dst = mask + r * nt + (part == 0 ? 0 : n[0]);
      const int64_t off = p.mask_row[static_cast<size_t>(row0 + r)] + (part * p.S[0] + lo[part]) * p.mask_col;
      const float* m = load_run<float>(p.mask_dtype, call.in(5).data(), off, p.mask_col, n[part], dst);
      if (m != dst) std::memcpy(dst, m, sizeof(float) * n[part]);
    }
  }
  for (int part = 0; part < 2; ++part) {
    if (n[part] == 0) continue;
    const auto* k = static_cast<const uint8_t*>(call.in(1 + part).data()) + (b * p.S[part] + lo[part]) * p.E * esize;
    gemm_nt(q, rows, p.E, k, wt, scores + (part == 0 ? 0 : n[0]), nt, 0, n[part]);
  }
  for (int64_t r = 0; r < rows; ++r) {
    float* s = scores + r * nt;
    const float* m = mask + r * nt;
    if (half) round_half(s, nt, tmp);  // the score matmuls' fp16 outputs
    for (int64_t j = 0; j < nt; ++j) s[j] *= p.scale;
    if (half) round_half(s, nt, tmp);
    for (int64_t j = 0; j < nt; ++j) s[j] += m[j];
    if (half) round_half(s, nt, tmp);
    softmax_row(s, s, nt);
    if (half) round_half(s, nt, tmp);
    for (int part = 0; part < 2; ++part)  // each part's probabilities as a [rows, n] matrix
      std::memcpy(probs + (part == 0 ? 0 : rows * n[0]) + r * n[part], s + (part == 0 ? 0 : n[0]),
                  sizeof(float) * n[part]);
  }
  for (int part = 0; part < 2; ++part) {
    if (n[part] == 0) {
      std::fill(out[part], out[part] + rows * p.Ev, 0.f);
      continue;
    }
    const auto* v = static_cast<const uint8_t*>(call.in(3 + part).data()) + (b * p.S[part] + lo[part]) * p.Ev * esize;
    gemm_nn(probs + (part == 0 ? 0 : rows * n[0]), n[part], v, wt, p.Ev, out[part], 0, rows);
    if (half) round_half(out[part], rows * p.Ev, tmp);  // the value matmuls' fp16 outputs
  }
  for (int64_t i = 0; i < rows * p.Ev; ++i) out[0][i] += out[1][i];
  store_run<float>(p.dtype, call.out(0).data(), row0 * p.Ev, rows * p.Ev, out[0]);
}

bool same_batch(const Shape& a, const Shape& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end() - 2, b.begin());
}

// Element offset into the mask of each row of `scores` (the mask broadcast
// to it), and the mask's stride along the last axis.
bool mask_offsets(const Shape& scores, const Shape& mask, SplitPlan& p) {
  Shape full;
  if (!broadcast_shapes(scores, mask, &full) || full != scores) return false;
  const int64_t last = mask.empty() ? 1 : mask.back();
  p.mask_col = last == 1 ? 0 : 1;
  p.mask_row = broadcast_offsets(Shape(scores.begin(), scores.end() - 1),
                                 mask.empty() ? Shape{} : Shape(mask.begin(), mask.end() - 1), last);
  std::map<int64_t, int64_t> key;
  for (int64_t off : p.mask_row) {
    auto [it, added] = key.emplace(off, static_cast<int64_t>(p.mask_rows.size()));
    if (added) p.mask_rows.push_back(off);
    p.mask_key.push_back(it->second);
  }
  return true;
}

}  // namespace

std::optional<PlannedOp> plan_split_attention(const SplitAttentionTypes& t) {
  const DType dt = t.q.dtype;
  const size_t r = t.q.shape.size();
  if ((dt != DType::kFloat16 && dt != DType::kFloat32) || r < 2 || t.scores.dtype != dt || t.mask.dtype != dt ||
      t.scores.shape.empty())
    return std::nullopt;
  SplitPlan p;
  p.L = t.q.shape[r - 2];
  p.E = t.q.shape[r - 1];
  for (int part = 0; part < 2; ++part) {
    const Shape &k = t.k[part].shape, &v = t.v[part].shape;
    if (t.k[part].dtype != dt || t.v[part].dtype != dt || !same_batch(t.q.shape, k) || !same_batch(t.q.shape, v) ||
        k[r - 1] != p.E || v[r - 2] != k[r - 2])
      return std::nullopt;
    p.S[part] = k[r - 2];
    if (part == 1 && v[r - 1] != p.Ev) return std::nullopt;
    p.Ev = v[r - 1];
  }
  if (t.split != p.S[0]) return std::nullopt;  // the probabilities must split where the cache part ends
  p.St = p.S[0] + p.S[1];
  p.batches = shape_numel(Shape(t.q.shape.begin(), t.q.shape.end() - 2));
  if (p.St == 0 || p.E == 0 || t.scores.shape.back() != p.St || shape_numel(t.scores.shape) != p.batches * p.L * p.St ||
      !mask_offsets(t.scores.shape, t.mask.shape, p))
    return std::nullopt;
  p.dtype = dt;
  p.mask_dtype = t.mask.dtype;
  p.scale = t.scale;
  p.chunk_rows = std::max<int64_t>(1, std::min(p.L, kChunkRows));
  p.chunks = (p.L + p.chunk_rows - 1) / p.chunk_rows;
  const int64_t cr = p.chunk_rows;
  const int64_t halves = std::max(p.St, cr * p.Ev);  // round_half's buffer
  p.per_slot = static_cast<size_t>(cr * p.E + 3 * cr * p.St + 2 * cr * p.Ev + halves / 2 + 1) + 16;
  p.slots = std::max(1, default_thread_pool().size());
  PlannedOp op;
  Shape out(t.q.shape.begin(), t.q.shape.end() - 1);
  out.push_back(p.Ev);
  op.outputs.push_back({dt, out});
  op.scratch_bytes = p.per_slot * static_cast<size_t>(p.slots) * sizeof(float);
  op.run = [p](const KernelCall& call) {
    auto* scratch = static_cast<float*>(call.scratch);
    const int64_t items = p.batches * p.chunks;
    const std::vector<Span> spans = mask_spans(p, call.in(5));
    auto item = [&](int64_t i, float* buf) {
      const int64_t b = i / p.chunks, m0 = (i % p.chunks) * p.chunk_rows;
      split_rows(p, call, spans, b, m0, std::min(p.chunk_rows, p.L - m0), buf);
    };
    auto work = [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s)
        for (int64_t i = s; i < items; i += p.slots) item(i, scratch + s * p.per_slot);
    };
    if (call.pool != nullptr && items > 1)
      call.pool->parallel_for(p.slots, 1, work);
    else
      for (int64_t i = 0; i < items; ++i) item(i, scratch);
  };
  return op;
}

}  // namespace staticllm::mil
