// scaled_dot_product_attention (iOS18): softmax(q k^T * scale + mask) v per
// batch, with the scores row held in fp32 scratch. Batches are split across
// the thread pool, each slot with its own scratch.
#include <algorithm>
#include <cmath>
#include <limits>

#include "mil/kernels/gemm.h"
#include "mil/kernels/softmax.h"
#include "mil/ops/elementwise_util.h"
#include "mil/ops/linear_mixed.h"
#include "mil/thread_pool.h"

namespace staticllm::mil {

namespace {

struct SdpaPlan {
  int64_t batches = 1, L = 0, S = 0, E = 0, Ev = 0;
  DType q_dtype{}, k_dtype{}, v_dtype{}, m_dtype{}, out_dtype{};
  bool has_mask = false;
  std::vector<int64_t> mask_batch;  // mask element offset per batch
  int64_t mask_row = 0, mask_col = 0;
  size_t per_slot = 0;
  int slots = 1;
};

void sdpa_batch(const SdpaPlan& p, const KernelCall& call, int qs, int ks, int vs, int ms, int64_t b, float* buf) {
  float* q = buf;
  float* k = q + p.L * p.E;
  float* v = k + p.S * p.E;
  float* scores = v + p.S * p.Ev;
  float* out = scores + p.L * p.S;
  float* mrow = out + p.L * p.Ev;
  auto load = [](DType t, const Tensor& src, int64_t off, int64_t n, float* dst) {
    const float* r = load_run<float>(t, src.data(), off, 1, n, dst);
    if (r != dst) std::copy(r, r + n, dst);
  };
  load(p.q_dtype, call.in(qs), b * p.L * p.E, p.L * p.E, q);
  load(p.k_dtype, call.in(ks), b * p.S * p.E, p.S * p.E, k);
  load(p.v_dtype, call.in(vs), b * p.S * p.Ev, p.S * p.Ev, v);
  gemm_nt(q, p.L, p.E, k, WeightType::kF32, scores, p.S, 0, p.S);
  const float scale = 1.0f / std::sqrt(static_cast<float>(p.E));
  for (int64_t l = 0; l < p.L; ++l) {
    float* row = scores + l * p.S;
    if (p.has_mask) {
      const Tensor& m = call.in(ms);
      const float* mr = load_run<float>(p.m_dtype, m.data(), p.mask_batch[b] + l * p.mask_row, p.mask_col, p.S, mrow);
      bool boolean = p.m_dtype == DType::kBool;
      for (int64_t s = 0; s < p.S; ++s) {
        float add = boolean ? (mr[s] != 0.f ? 0.f : -std::numeric_limits<float>::infinity()) : mr[s];
        row[s] = row[s] * scale + add;
      }
    } else {
      for (int64_t s = 0; s < p.S; ++s) row[s] *= scale;
    }
    softmax_row(row, row, p.S);
  }
  gemm_nn(scores, p.S, v, WeightType::kF32, p.Ev, out, 0, p.L);
  store_run<float>(p.out_dtype, call.out(0).data(), b * p.L * p.Ev, p.L * p.Ev, out);
}

PlannedOp build_sdpa(OpPlanContext& ctx) {
  const ValueType& qt = ctx.type("query");
  const ValueType& kt = ctx.type("key");
  const ValueType& vt = ctx.type("value");
  size_t r = qt.shape.size();
  if (r < 2 || kt.shape.size() != r || vt.shape.size() != r) ctx.fail("query, key and value need the same rank >= 2");
  Shape batch(qt.shape.begin(), qt.shape.end() - 2);
  if (Shape(kt.shape.begin(), kt.shape.end() - 2) != batch || Shape(vt.shape.begin(), vt.shape.end() - 2) != batch) {
    ctx.fail("query, key and value batch dimensions differ");
  }
  SdpaPlan p;
  p.L = qt.shape[r - 2];
  p.E = qt.shape[r - 1];
  p.S = kt.shape[r - 2];
  p.Ev = vt.shape[r - 1];
  if (kt.shape[r - 1] != p.E || vt.shape[r - 2] != p.S) ctx.fail("key/value shapes do not match query");
  p.batches = shape_numel(batch);
  p.q_dtype = qt.dtype;
  p.k_dtype = kt.dtype;
  p.v_dtype = vt.dtype;
  p.out_dtype = qt.dtype;
  int qs = ctx.input("query"), ks = ctx.input("key"), vs = ctx.input("value"), ms = -1;
  if (ctx.has("attn_mask")) {
    const ValueType& mt = ctx.type("attn_mask");
    Shape full = batch;
    full.push_back(p.L);
    full.push_back(p.S);
    Shape b;
    if (!broadcast_shapes(full, mt.shape, &b) || b != full) ctx.fail("attn_mask does not broadcast to the scores");
    // The mask's own last two dims (1 where it has none or broadcasts them)
    // give the row and column strides; its leading dims the batch offsets.
    const size_t r = mt.shape.size();
    const int64_t Sm = r >= 1 ? mt.shape[r - 1] : 1, Lm = r >= 2 ? mt.shape[r - 2] : 1;
    p.mask_col = Sm == 1 ? 0 : 1;
    p.mask_row = Lm == 1 ? 0 : Sm;
    p.mask_batch = broadcast_offsets(batch, Shape(mt.shape.begin(), mt.shape.end() - std::min<size_t>(r, 2)), Lm * Sm);
    p.has_mask = true;
    p.m_dtype = mt.dtype;
    ms = ctx.input("attn_mask");
  }
  p.per_slot = static_cast<size_t>(p.L * p.E + p.S * p.E + p.S * p.Ev + p.L * p.S + p.L * p.Ev + p.S) + 16;
  p.slots = std::max(1, default_thread_pool().size());
  PlannedOp op;
  op.outputs.push_back({qt.dtype, Shape(qt.shape.begin(), qt.shape.end() - 1)});
  op.outputs[0].shape.push_back(p.Ev);
  op.scratch_bytes = p.per_slot * p.slots * sizeof(float);
  op.run = [=](const KernelCall& call) {
    auto* scratch = static_cast<float*>(call.scratch);
    auto work = [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s)
        for (int64_t b = s; b < p.batches; b += p.slots)
          sdpa_batch(p, call, qs, ks, vs, ms, b, scratch + s * p.per_slot);
    };
    if (call.pool != nullptr && p.batches > 1)
      call.pool->parallel_for(p.slots, 1, work);
    else
      work(0, p.slots);
  };
  return op;
}

}  // namespace

void register_attention_ops(OpRegistry& r) { r.add("scaled_dot_product_attention", build_sdpa); }

}  // namespace staticllm::mil
