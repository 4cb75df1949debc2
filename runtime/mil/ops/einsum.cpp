// einsum of two operands in any equation of single letters ("abcd,adce->abce",
// "i,j->ij", diagonals such as "iij,j->i"), size-1 dims broadcast as numpy
// does. Letters are grouped as batch (both operands and the output), free
// per operand (one operand and the output), contracted (both operands, not
// the output) and summed (one operand only); each operand is packed in fp32
// as [batch, free, contracted] with its summed letters added up, and the
// product is a batched gemm (kernels/gemm.h).
#include <algorithm>
#include <cctype>
#include <map>

#include "mil/kernels/gemm.h"
#include "mil/ops/elementwise_util.h"

namespace staticllm::mil {

namespace {

struct Letter {
  int64_t size = 1;
  int64_t stride[2] = {0, 0};  // element stride in each operand (summed over repeated axes), 0 if absent or broadcast
  int64_t out_stride = 0;
  bool in[2] = {false, false}, in_out = false;
};

// Offsets of every index combination of `letters`, for operand k (0, 1) or
// the output (2), in row-major order of the letters.
std::vector<int64_t> offsets(const std::map<char, Letter>& all, const std::string& letters, int k) {
  std::vector<int64_t> offs{0};
  for (char c : letters) {
    const Letter& l = all.at(c);
    const int64_t stride = k == 2 ? l.out_stride : l.stride[k];
    std::vector<int64_t> next;
    next.reserve(offs.size() * static_cast<size_t>(l.size));
    for (int64_t o : offs)
      for (int64_t i = 0; i < l.size; ++i) next.push_back(o + i * stride);
    offs = std::move(next);
  }
  return offs;
}

struct EinsumPlan {
  std::vector<int64_t> batch[3], free[2], contract[2], sum[2], out_free[2];
  int64_t B = 1, M = 1, N = 1, K = 1;
};

// out = sum over `sum` of operand k packed as [B, rows, K] (rows = its free letters).
void pack(const Tensor& t, const std::vector<int64_t>& batch, const std::vector<int64_t>& rows,
          const std::vector<int64_t>& contract, const std::vector<int64_t>& sum, float* dst) {
  float* d = dst;
  for (int64_t b : batch)
    for (int64_t r : rows)
      for (int64_t c : contract) {
        double acc = 0;
        for (int64_t s : sum) acc += load_one(t.dtype(), t.data(), b + r + c + s);
        *d++ = static_cast<float>(acc);
      }
}

PlannedOp build_einsum(OpPlanContext& ctx) {
  if (ctx.arity("values") != 2) ctx.fail("einsum needs two values");
  std::string eq;
  for (char c : ctx.const_string("equation"))
    if (c != ' ') eq += c;
  const size_t arrow = eq.find("->"), comma = eq.find(',');
  if (arrow == std::string::npos || comma == std::string::npos || comma > arrow) {
    ctx.fail("equation '" + eq + "' is not of the form 'ab,bc->ac'");
  }
  const std::string spec[2] = {eq.substr(0, comma), eq.substr(comma + 1, arrow - comma - 1)};
  const std::string out_spec = eq.substr(arrow + 2);
  const ValueType* vt[2] = {&ctx.type("values", 0), &ctx.type("values", 1)};
  if (!is_float_dtype(vt[0]->dtype) || vt[0]->dtype != vt[1]->dtype) ctx.fail("einsum needs two fp16 or fp32 values");
  std::map<char, Letter> letters;
  for (int k = 0; k < 2; ++k) {
    if (spec[k].size() != vt[k]->shape.size()) {
      ctx.fail("'" + spec[k] + "' does not match an operand of shape " + shape_to_string(vt[k]->shape));
    }
    const std::vector<int64_t> strides = contiguous_strides(vt[k]->shape);
    for (size_t a = 0; a < spec[k].size(); ++a) {
      const char c = spec[k][a];
      if (!std::isalpha(static_cast<unsigned char>(c))) ctx.fail("equation '" + eq + "': only letters are supported");
      Letter& l = letters[c];
      const int64_t dim = vt[k]->shape[a];
      if (l.in[k] && l.size != dim && dim != 1 && l.size != 1)
        ctx.fail("letter '" + std::string(1, c) + "' has two sizes");
      if (dim != 1 && l.size != 1 && l.size != dim)
        ctx.fail("letter '" + std::string(1, c) + "' sizes do not broadcast");
      if (dim != 1) {
        l.size = dim;
        l.stride[k] += strides[a];  // a repeated letter walks the diagonal
      }
      l.in[k] = true;
    }
  }
  Shape out_shape;
  const std::vector<int64_t> ostr = [&] {
    Shape s;
    for (char c : out_spec) {
      if (!letters.count(c)) ctx.fail("output letter '" + std::string(1, c) + "' is in no operand");
      s.push_back(letters[c].size);
    }
    return contiguous_strides(s);
  }();
  for (size_t i = 0; i < out_spec.size(); ++i) {
    Letter& l = letters[out_spec[i]];
    if (l.in_out) ctx.fail("output letter '" + std::string(1, out_spec[i]) + "' repeats");
    l.in_out = true;
    l.out_stride = ostr[i];
    out_shape.push_back(l.size);
  }
  std::string batch, free[2], contract, sum[2];
  for (const auto& [c, l] : letters) {
    if (l.in[0] && l.in[1]) (l.in_out ? batch : contract) += c;
    for (int k = 0; k < 2; ++k) {
      if (l.in[k] && !l.in[1 - k]) (l.in_out ? free[k] : sum[k]) += c;
    }
  }
  EinsumPlan p;
  for (int k = 0; k < 2; ++k) {
    p.batch[k] = offsets(letters, batch, k);
    p.free[k] = offsets(letters, free[k], k);
    p.contract[k] = offsets(letters, contract, k);
    p.sum[k] = offsets(letters, sum[k], k);
    p.out_free[k] = offsets(letters, free[k], 2);
  }
  p.batch[2] = offsets(letters, batch, 2);
  p.B = static_cast<int64_t>(p.batch[2].size());
  p.M = static_cast<int64_t>(p.free[0].size());
  p.N = static_cast<int64_t>(p.free[1].size());
  p.K = static_cast<int64_t>(p.contract[0].size());
  int s0 = ctx.input("values", 0), s1 = ctx.input("values", 1);
  PlannedOp op;
  op.outputs.push_back({vt[0]->dtype, out_shape});
  op.scratch_bytes = static_cast<size_t>(p.B * (p.M * p.K + p.N * p.K + p.M * p.N)) * sizeof(float);
  op.run = [p, s0, s1](const KernelCall& call) {
    auto* a = static_cast<float*>(call.scratch);
    float* b = a + p.B * p.M * p.K;
    float* c = b + p.B * p.N * p.K;
    pack(call.in(s0), p.batch[0], p.free[0], p.contract[0], p.sum[0], a);
    pack(call.in(s1), p.batch[1], p.free[1], p.contract[1], p.sum[1], b);
    for (int64_t i = 0; i < p.B; ++i) {
      float* ci = c + i * p.M * p.N;
      if (p.K == 0) {
        std::fill(ci, ci + p.M * p.N, 0.f);
        continue;
      }
      gemm_nt(a + i * p.M * p.K, p.M, p.K, b + i * p.N * p.K, WeightType::kF32, ci, p.N, 0, p.N);
    }
    Tensor& out = call.out(0);
    for (int64_t i = 0; i < p.B; ++i)
      for (int64_t m = 0; m < p.M; ++m)
        for (int64_t n = 0; n < p.N; ++n) {
          const int64_t at = p.batch[2][i] + p.out_free[0][m] + p.out_free[1][n];
          store_run<float>(out.dtype(), out.data(), at, 1, c + (i * p.M + m) * p.N + n);
        }
  };
  return op;
}

}  // namespace

void register_einsum_ops(OpRegistry& r) { r.add("einsum", build_einsum); }

}  // namespace staticllm::mil
