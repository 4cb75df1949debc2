// pad: the last N axes of x grown by pad[2i] before and pad[2i + 1] after,
// filled with a constant, a mirror image without the edge ("reflect") or the
// edge repeated ("replicate"). Each output element reads one input element
// (or the constant), located per axis at plan time.
#include <array>
#include <cstring>

#include "mil/ops/elementwise_util.h"

namespace staticllm::mil {

namespace {

enum class PadMode { kConstant, kReflect, kReplicate };

// The input position an output position p of a padded axis reads, or -1 (the constant).
int64_t source_of(PadMode mode, int64_t p, int64_t before, int64_t n) {
  int64_t i = p - before;
  if (i >= 0 && i < n) return i;
  if (mode == PadMode::kConstant) return -1;
  if (mode == PadMode::kReplicate) return i < 0 ? 0 : n - 1;
  return i < 0 ? -i : 2 * (n - 1) - i;  // reflect: pads of at most n - 1 checked at plan time
}

PlannedOp build_pad(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  if (ctx.constant("pad") == nullptr)
    ctx.fail_run_time("a pad known only at run time is not supported (the output shape depends on it)");
  std::vector<int64_t> pad = ctx.const_ints("pad");
  const int64_t rank = static_cast<int64_t>(xt.shape.size());
  if (pad.size() % 2 != 0 || static_cast<int64_t>(pad.size()) > 2 * rank)
    ctx.fail("pad needs two values per padded axis");
  std::string name = ctx.has("mode") ? ctx.const_string("mode") : "constant";
  PadMode mode = name == "reflect" ? PadMode::kReflect : name == "replicate" ? PadMode::kReplicate : PadMode::kConstant;
  if (mode == PadMode::kConstant && name != "constant") ctx.fail("unknown pad mode '" + name + "'");
  const double value = ctx.has("constant_val") ? ctx.const_float("constant_val") : 0.0;
  const int64_t first = rank - static_cast<int64_t>(pad.size() / 2);
  Shape out = xt.shape;
  // per output axis, the input index each output index reads (-1: the constant)
  std::vector<std::vector<int64_t>> source(rank);
  for (int64_t d = 0; d < rank; ++d) {
    const int64_t n = xt.shape[d];
    int64_t before = 0, after = 0;
    if (d >= first) {
      before = pad[2 * (d - first)];
      after = pad[2 * (d - first) + 1];
    }
    const int64_t limit = mode == PadMode::kReflect ? n - 1 : mode == PadMode::kReplicate ? n : (int64_t{1} << 30);
    if (before < 0 || after < 0 || before > limit || after > limit ||
        (mode != PadMode::kConstant && n == 0 && before + after > 0)) {
      ctx.fail("pad (" + std::to_string(before) + ", " + std::to_string(after) + ") out of range for axis " +
               std::to_string(d) + " of size " + std::to_string(n) + " in mode " + name);
    }
    out[d] = n + before + after;
    for (int64_t p = 0; p < out[d]; ++p) source[d].push_back(source_of(mode, p, before, n));
  }
  if (rank > 8) ctx.fail("pad of rank above 8 is not supported");
  const std::vector<int64_t> in_strides = contiguous_strides(xt.shape);
  const size_t elem = dtype_size(xt.dtype);
  std::array<uint8_t, 8> fill{};  // the constant in x's dtype
  store_run<double>(xt.dtype, fill.data(), 0, 1, &value);
  int xs = ctx.input("x");
  PlannedOp op;
  op.outputs.push_back({xt.dtype, out});
  op.run = [=](const KernelCall& call) {
    Tensor& o = call.out(0);
    const auto* src = static_cast<const uint8_t*>(call.in(xs).data());
    auto* dst = static_cast<uint8_t*>(o.data());
    int64_t idx[8] = {0};
    for (int64_t i = 0; i < o.numel(); ++i) {
      int64_t off = 0;
      bool constant = false;
      for (int64_t d = 0; d < rank && !constant; ++d) {
        int64_t s = source[d][idx[d]];
        constant = s < 0;
        off += s * in_strides[d];
      }
      std::memcpy(dst + i * elem, constant ? fill.data() : src + off * elem, elem);
      for (int64_t d = rank - 1; d >= 0; --d) {
        if (++idx[d] < out[d]) break;
        idx[d] = 0;
      }
    }
  };
  return op;
}

}  // namespace

void register_pad_ops(OpRegistry& r) { r.add("pad", build_pad); }

}  // namespace staticllm::mil
