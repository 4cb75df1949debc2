// Random tensors: random_uniform, random_normal, random_bernoulli and
// random_categorical.
//
// Every value comes from Philox4x32-10 (kernels/philox.h) keyed by the op's
// `seed`: element i takes 32-bit word i % 4 of block i / 4 of the stream, so
// a given seed gives the same tensor on every call, on every thread count
// and every machine. seed -1 (the default) asks for values that differ from
// call to call: each call then takes a fresh key from a process-wide counter
// started from std::random_device and scrambled by splitmix64.
//
// Values are computed in double and rounded once to the output dtype (T of
// the op's float parameter, fp16 or fp32), so the edge cases come out exact:
// prob 0 and 1, stddev 0 (the mean) and low == high (low).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>

#include "mil/kernels/philox.h"
#include "mil/ops/elementwise_util.h"

namespace staticllm::mil {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t entropy() {
  uint64_t e = static_cast<uint64_t>(std::chrono::high_resolution_clock::now().time_since_epoch().count());
  try {
    std::random_device device;  // may throw where the platform has no entropy source
    e ^= (static_cast<uint64_t>(device()) << 32) | device();
  } catch (...) {
  }
  return e;
}

PhiloxKey key_of(uint64_t v) { return {static_cast<uint32_t>(v), static_cast<uint32_t>(v >> 32)}; }

// The op's stream: fixed by its seed, or a fresh one per call for seed -1.
struct Stream {
  bool fixed = false;
  PhiloxKey key{};

  PhiloxKey for_call() const {
    if (fixed) return key;
    static std::atomic<uint64_t> next{entropy()};
    return key_of(splitmix64(next.fetch_add(1, std::memory_order_relaxed)));
  }
};

Stream stream_of(const OpPlanContext& ctx) {
  const int64_t seed = ctx.const_int_or("seed", -1);
  if (seed == -1) return {};
  return {true, key_of(static_cast<uint32_t>(seed))};
}

// A 32-bit word as a uniform in [0, 1), and in (0, 1) where a log follows.
double unit(uint32_t w) { return static_cast<double>(w) * 0x1p-32; }
double open_unit(uint32_t w) { return (static_cast<double>(w) + 0.5) * 0x1p-32; }

// The output type of the distributions with a `shape`: T of `param`; when
// the op leaves it out, the float type the program declares (else fp32).
ValueType shaped_output(const OpPlanContext& ctx, const std::string& param) {
  DType dtype = DType::kFloat32;
  if (ctx.has(param))
    dtype = ctx.type(param).dtype;
  else if (ctx.declared_outputs().size() == 1 && is_float_dtype(ctx.declared_outputs()[0].dtype))
    dtype = ctx.declared_outputs()[0].dtype;
  if (dtype != DType::kFloat16 && dtype != DType::kFloat32) ctx.fail("T must be fp16 or fp32");
  Shape shape = ctx.const_ints("shape");
  for (int64_t d : shape) {
    if (d < 0) ctx.fail("shape has a negative dimension");
  }
  return {dtype, shape};
}

double const_float_or(const OpPlanContext& ctx, const std::string& param, double fallback) {
  return ctx.has(param) ? ctx.const_float(param) : fallback;
}

// Fills output 0 with values(block, four doubles): the values of elements
// 4n .. 4n + 3 from Philox block n, rounded once to the output dtype.
template <typename Values>
void generate(const KernelCall& call, PhiloxKey key, Values values) {
  Tensor& out = call.out(0);
  const int64_t n = out.numel(), runs = (n + kBlock - 1) / kBlock;
  auto work = [&](int64_t r0, int64_t r1) {
    double buf[kBlock];  // kBlock is a multiple of 4: a run ends on a block edge
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t start = r * kBlock, len = std::min(kBlock, n - start);
      for (int64_t i = 0; i < len; i += 4) values(philox_block(static_cast<uint64_t>(start + i) / 4, key), buf + i);
      store_run<double>(out.dtype(), out.data(), start, len, buf);
    }
  };
  if (call.pool != nullptr && runs > 1)
    call.pool->parallel_for(runs, 1, work);
  else
    work(0, runs);
}

// The largest value of `dtype` below `high` (a value of that dtype): where
// uniform samples stop so that rounding never reaches the excluded bound.
double largest_below(double high, DType dtype) {
  if (dtype == DType::kFloat32)
    return std::nextafter(static_cast<float>(high), -std::numeric_limits<float>::infinity());
  half_bits h = float_to_half(static_cast<float>(high));
  if (high > 0)
    h = static_cast<half_bits>(h - 1);
  else if (high == 0)
    h = 0x8001;  // the smallest negative subnormal
  else
    h = static_cast<half_bits>(h + 1);
  return half_to_float(h);
}

// Uniform in [low, high); low == high gives low. high < low is undefined in
// the spec; it gives values between the two.
PlannedOp build_random_uniform(OpPlanContext& ctx) {
  const ValueType out = shaped_output(ctx, "low");
  const double low = const_float_or(ctx, "low", 0.0), high = const_float_or(ctx, "high", 1.0);
  const double top = high > low ? largest_below(high, out.dtype) : std::max(low, high);
  const Stream stream = stream_of(ctx);
  PlannedOp op;
  op.outputs.push_back(out);
  op.run = [=](const KernelCall& call) {
    generate(call, stream.for_call(), [&](const PhiloxBlock& b, double* v) {
      for (int j = 0; j < 4; ++j) v[j] = std::min(low + (high - low) * unit(b[j]), top);
    });
  };
  return op;
}

// Normal(mean, stddev) by the Box-Muller transform: words (0, 1) and (2, 3)
// of a block each give two independent standard normals.
PlannedOp build_random_normal(OpPlanContext& ctx) {
  const ValueType out = shaped_output(ctx, "mean");
  const double mean = const_float_or(ctx, "mean", 0.0), stddev = const_float_or(ctx, "stddev", 1.0);
  const Stream stream = stream_of(ctx);
  PlannedOp op;
  op.outputs.push_back(out);
  op.run = [=](const KernelCall& call) {
    generate(call, stream.for_call(), [&](const PhiloxBlock& b, double* v) {
      constexpr double kTwoPi = 6.283185307179586476925286766559;
      for (int j = 0; j < 4; j += 2) {
        const double r = std::sqrt(-2.0 * std::log(open_unit(b[j]))), theta = kTwoPi * unit(b[j + 1]);
        v[j] = mean + stddev * (r * std::cos(theta));
        v[j + 1] = mean + stddev * (r * std::sin(theta));
      }
    });
  };
  return op;
}

// 1 with probability prob, else 0: a uniform in [0, 1) below prob (never for
// prob 0, always for prob 1).
PlannedOp build_random_bernoulli(OpPlanContext& ctx) {
  const ValueType out = shaped_output(ctx, "prob");
  const double prob = const_float_or(ctx, "prob", 0.5);
  const Stream stream = stream_of(ctx);
  PlannedOp op;
  op.outputs.push_back(out);
  op.run = [=](const KernelCall& call) {
    generate(call, stream.for_call(), [&](const PhiloxBlock& b, double* v) {
      for (int j = 0; j < 4; ++j) v[j] = unit(b[j]) < prob ? 1.0 : 0.0;
    });
  };
  return op;
}

// The cumulative weights of one distribution (x's last axis) into `cdf`;
// returns their total, NaN when the row is no distribution (a NaN, a
// negative probability, no positive weight).
double cumulative_weights(const double* x, int64_t k, bool logits, double* cdf) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < k; ++j) {
    if (std::isnan(x[j]) || (!logits && x[j] < 0)) return std::nan("");
    m = std::max(m, x[j]);
  }
  double total = 0;
  for (int64_t j = 0; j < k; ++j) {
    // softmax of the logits, shifted by the largest; +inf logits share the mass
    double w = !logits ? x[j] : std::isinf(m) && m > 0 ? (x[j] == m ? 1.0 : 0.0) : std::exp(x[j] - m);
    total += w;
    cdf[j] = total;
  }
  return total > 0 && std::isfinite(total) ? total : std::nan("");
}

// Draws `size` class indices per distribution over x's last axis, with
// replacement: sample s of row r takes word i % 4 of block i / 4 with
// i = r * size + s and picks the first class whose cumulative weight exceeds
// that uniform times the total (classes of weight 0 are never picked). The
// indices are written in T; a row that is no distribution gives NaN.
PlannedOp build_random_categorical(OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  if (xt.dtype != DType::kFloat16 && xt.dtype != DType::kFloat32) ctx.fail("x must be fp16 or fp32");
  if (xt.shape.empty() || xt.shape.back() == 0) ctx.fail("x needs a last axis of at least one class");
  const std::string mode = ctx.has("mode") ? ctx.const_string("mode") : "logits";
  if (mode != "logits" && mode != "probs") ctx.fail("mode must be 'logits' or 'probs', got '" + mode + "'");
  const int64_t size = ctx.const_int_or("size", 1);
  if (size < 1) ctx.fail("size must be at least 1");
  const int64_t classes = xt.shape.back(), rows = shape_numel(xt.shape) / classes;
  const bool logits = mode == "logits";
  const Stream stream = stream_of(ctx);
  const int xs = ctx.input("x");
  Shape out_shape = xt.shape;
  out_shape.back() = size;
  PlannedOp op;
  op.outputs.push_back({xt.dtype, out_shape});
  op.scratch_bytes = 2 * static_cast<size_t>(classes) * sizeof(double);
  op.run = [=](const KernelCall& call) {
    const PhiloxKey key = stream.for_call();
    const Tensor& x = call.in(xs);
    Tensor& out = call.out(0);
    auto* row = static_cast<double*>(call.scratch);
    double* cdf = row + classes;
    PhiloxBlock block{};
    for (int64_t r = 0; r < rows; ++r) {
      const double* v = load_run<double>(x.dtype(), x.data(), r * classes, 1, classes, row);
      const double total = cumulative_weights(v, classes, logits, cdf);
      for (int64_t s = 0; s < size; ++s) {
        const uint64_t i = static_cast<uint64_t>(r * size + s);
        if (s == 0 || i % 4 == 0) block = philox_block(i / 4, key);
        const double target = unit(block[i % 4]) * total;
        const int64_t pick = std::upper_bound(cdf, cdf + classes, target) - cdf;
        store_one(out.dtype(), out.data(), r * size + s,
                  std::isnan(total) ? total : static_cast<double>(std::min(pick, classes - 1)));
      }
    }
  };
  return op;
}

}  // namespace

void register_random_ops(OpRegistry& r) {
  r.add("random_uniform", build_random_uniform);
  r.add("random_normal", build_random_normal);
  r.add("random_bernoulli", build_random_bernoulli);
  r.add("random_categorical", build_random_categorical);
}

}  // namespace staticllm::mil
