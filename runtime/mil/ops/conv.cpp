// conv and conv_transpose over 1, 2 or 3 spatial dimensions, as coremltools
// defines them (ops/defs/iOS15/conv.py, iOS17/conv.py), on the gemm kernels.
//
// conv: the input patches of a tile of output positions are gathered (im2col,
// fp32) and multiplied by the weight with the gemm kernels, either
// position-major as linear multiplies tokens by its weight (gemm_nt on the
// weight as stored: a 1x1 conv with stride 1 on (B, C, 1, S) data is linear on
// the transposed activations, at linear's speed) or channel-major (gemm_nn,
// vectors along positions, for shallow products such as a depthwise conv);
// the section below says which when.
//
// conv_transpose: every (output channel, kernel offset) gets its row of
// contributions along the input positions (gemm_nn), added into the output
// positions it reaches (col2im), accumulated in fp32.
#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <type_traits>

#include "mil/kernels/compressed.h"
#include "mil/kernels/gemm.h"
#include "mil/ops/elementwise_util.h"
#include "mil/thread_pool.h"

namespace staticllm::mil {

namespace {

// Sizes past this are refused (the bound program.cpp puts on a tensor), so a
// hostile constant cannot overflow the arithmetic below.
constexpr int64_t kSizeLimit = int64_t{1} << 40;
// strides, dilations and pads are int32 in MIL.
constexpr int64_t kAttrLimit = (int64_t{1} << 31) - 1;
// fp32 floats of the im2col rows and gemm results of one tile (16 MB).
constexpr int64_t kTileFloats = int64_t{1} << 22;

bool is_float_io(DType t) { return t == DType::kFloat16 || t == DType::kFloat32; }

std::string ints_to_string(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

int64_t mul_size(const OpPlanContext& ctx, int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r) || r > kSizeLimit) ctx.fail("sizes beyond 2^40 elements are not supported");
  return r;
}

int64_t add_size(const OpPlanContext& ctx, int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r) || r > kSizeLimit) ctx.fail("sizes beyond 2^40 elements are not supported");
  return r;
}

// One spatial axis. Absent leading axes (1D and 2D) are all 1 and pad 0, so
// every loop runs over three.
struct Axis {
  int64_t in = 1, out = 1, kernel = 1, stride = 1, dilation = 1;
  int64_t pad = 0;  // elements before the first input (conv) or cropped before the first output (conv_transpose)
  int64_t span() const { return (kernel - 1) * dilation + 1; }
};

struct Geometry {
  int64_t batch = 1, c_in = 1, c_out = 1, groups = 1;
  std::array<Axis, 3> ax;  // depth, height, width
  int64_t in_size() const { return ax[0].in * ax[1].in * ax[2].in; }
  int64_t out_size() const { return ax[0].out * ax[1].out * ax[2].out; }
  int64_t kernel_size() const { return ax[0].kernel * ax[1].kernel * ax[2].kernel; }
};

// strides or dilations: one value per spatial axis, each in [1, 2^31).
std::vector<int64_t> per_axis(const OpPlanContext& ctx, const std::string& name, size_t dims) {
  if (!ctx.has(name)) return std::vector<int64_t>(dims, 1);
  std::vector<int64_t> v = ctx.const_ints(name);
  if (v.size() != dims) {
    ctx.fail(name + " " + ints_to_string(v) + " must have one value per spatial dimension (" + std::to_string(dims) +
             ")");
  }
  for (int64_t e : v)
    if (e < 1 || e > kAttrLimit) ctx.fail(name + " " + ints_to_string(v) + " is not supported: values must be >= 1");
  return v;
}

// `pad` of pad_type custom: before and after each spatial axis, each >= 0.
std::vector<int64_t> custom_pad(const OpPlanContext& ctx, size_t dims) {
  if (!ctx.has("pad")) return std::vector<int64_t>(2 * dims, 0);
  std::vector<int64_t> v = ctx.const_ints("pad");
  if (v.size() != 2 * dims) {
    ctx.fail("pad " + ints_to_string(v) + " must have two values per spatial dimension (" + std::to_string(2 * dims) +
             ")");
  }
  for (int64_t e : v)
    if (e < 0 || e > kAttrLimit) ctx.fail("pad " + ints_to_string(v) + " is not supported: values must be >= 0");
  return v;
}

std::string pad_type_of(const OpPlanContext& ctx) {
  return ctx.has("pad_type") ? ctx.const_string("pad_type") : std::string("valid");
}

// What conv and conv_transpose share: x and weight of rank 3 to 5 in fp16 or
// fp32, groups, strides, dilations, kernel sizes, the bias.
struct Common {
  size_t dims = 0;
  Geometry g;
  std::vector<int64_t> strides, dilations;
};

Common read_common(const OpPlanContext& ctx) {
  const ValueType& xt = ctx.type("x");
  const ValueType& wt = ctx.type("weight");
  const std::string what = ctx.op_type();
  if (!is_float_io(xt.dtype)) ctx.fail(what + " needs fp16 or fp32 x, got " + dtype_name(xt.dtype));
  if (!is_float_io(wt.dtype)) ctx.fail(what + " needs an fp16 or fp32 weight, got " + dtype_name(wt.dtype));
  const size_t rank = xt.shape.size();
  if (rank < 3 || rank > 5) {
    ctx.fail(what + " x " + shape_to_string(xt.shape) + " is not supported: rank 3, 4 or 5 ([N, C, 1 to 3 spatial])");
  }
  if (wt.shape.size() != rank) {
    ctx.fail("weight " + shape_to_string(wt.shape) + " must have the rank of x " + shape_to_string(xt.shape));
  }
  for (int64_t d : xt.shape)
    if (d < 1) ctx.fail("x " + shape_to_string(xt.shape) + " has an empty dimension");
  for (int64_t d : wt.shape)
    if (d < 1) ctx.fail("weight " + shape_to_string(wt.shape) + " has an empty dimension");
  Common c;
  c.dims = rank - 2;
  c.g.batch = xt.shape[0];
  c.g.c_in = xt.shape[1];
  c.g.groups = ctx.const_int_or("groups", 1);
  if (c.g.groups < 1 || c.g.groups > c.g.c_in || c.g.c_in % c.g.groups != 0) {
    ctx.fail("groups " + std::to_string(c.g.groups) + " is not supported: it must divide the " +
             std::to_string(c.g.c_in) + " input channels");
  }
  c.strides = per_axis(ctx, "strides", c.dims);
  c.dilations = per_axis(ctx, "dilations", c.dims);
  const size_t skip = 3 - c.dims;
  for (size_t i = 0; i < c.dims; ++i) {
    Axis& a = c.g.ax[skip + i];
    a.in = xt.shape[2 + i];
    a.kernel = wt.shape[2 + i];
    if (a.kernel > kAttrLimit) ctx.fail("weight " + shape_to_string(wt.shape) + ": kernel too large");
    a.stride = c.strides[i];
    a.dilation = c.dilations[i];
  }
  return c;
}

// The optional bias: C_out values of fp16 or fp32 (a constant, or from iOS17 on any tensor).
int plan_bias(OpPlanContext& ctx, int64_t c_out) {
  if (!ctx.has("bias")) return -1;
  const ValueType& bt = ctx.type("bias");
  if (!is_float_io(bt.dtype) || shape_numel(bt.shape) != c_out || bt.shape.size() > 1) {
    ctx.fail("bias " + shape_to_string(bt.shape) + " (" + dtype_name(bt.dtype) + ") must hold the " +
             std::to_string(c_out) + " output channels in fp16 or fp32");
  }
  return ctx.input("bias");
}

const float* load_bias(const KernelCall& call, int slot, int64_t n, float* buf) {
  if (slot < 0) return nullptr;
  const Tensor& b = call.in(slot);
  const float* p = load_run<float>(b.dtype(), b.data(), 0, 1, n, buf);
  if (p != buf) std::memcpy(buf, p, sizeof(float) * n);
  return buf;
}

// Runs fn(begin, end) over [0, n) on the pool when the work is worth it.
template <typename F>
void split(ThreadPool* pool, int64_t n, int64_t work, F&& fn) {
  if (pool == nullptr || work < kParallelFlops || n < 2) return fn(int64_t{0}, n);
  pool->parallel_for(n, 1, fn);
}

float widen(float v) { return v; }
float widen(half_bits v) { return half_to_float(v); }

// Floats of a scratch region rounded up to whole cache lines.
int64_t lines(int64_t floats) { return (floats + 15) / 16 * 16; }

// ---------------------------------------------------------------------------
// conv
//
// Two layouts of the product, chosen at plan time:
//  - position-major (gemm_nt, linear's product): im2col rows [positions, kg]
//    times the weight [C_out, kg] as stored (fp16, fp32 or compressed), the
//    [positions, C_out] results transposed back. For compressed weights, few
//    positions (decode) and fp16 weights too large to widen per call: the
//    projections of the Neural Engine export.
//  - channel-major (gemm_nn): the fp32 weight [C_out, kg] times im2col columns
//    [kg, positions]; the [C_out, positions] results are already in the
//    output's layout and the vectors run along positions, so a shallow
//    product wastes nothing on horizontal sums. Tiles of positions and groups
//    are the work items. Measured on one thread (benchmarks/conv_vs_linear.py,
//    thread CPU time per call): a depthwise 3x3 on 96 x 112 x 112 takes 3.1 ms
//    against 10.8 position-major; a 3x3 over 64 channels on 56 x 56, 5.6
//    against 3.9; up to kg = 64 (3x3 over 3 channels, 1x1 over 64) they were
//    within 15%.

struct ConvPlan {
  Geometry g;
  int64_t cin_g = 1, cout_g = 1, kg = 1;  // channels per group; gemm depth cin_g * kernel
  int64_t tile = 1;                       // output positions per product
  DType x_dtype = DType::kFloat32;
  WeightType wtype = WeightType::kF32;
  std::shared_ptr<const CompressedWeight> cw;
  int xs = -1, ws = -1, bs = -1;
  bool channel_major = false;
  bool pointwise = false;  // position-major with kernel 1, stride 1, no padding: im2col is a transpose
  bool widen = false;      // channel-major with an fp16 weight, widened into scratch per call
  int slots = 1;           // channel-major: scratch slots (one per thread) of col_floats + y_floats
  int64_t w_floats = 0, col_floats = 0, y_floats = 0;
};

// Padding of pad_type same / same_lower: output ceil(in / stride), the
// total padding split evenly, the odd element after (same) or before (same_lower).
void same_padding(Axis& a, bool lower) {
  a.out = (a.in + a.stride - 1) / a.stride;
  const int64_t total = std::max<int64_t>(0, (a.out - 1) * a.stride + a.span() - a.in);
  a.pad = lower ? total - total / 2 : total / 2;
}

void conv_geometry(OpPlanContext& ctx, Common& c) {
  const ValueType& wt = ctx.type("weight");
  Geometry& g = c.g;
  g.c_out = wt.shape[0];
  if (wt.shape[1] * g.groups != g.c_in) {
    ctx.fail("weight " + shape_to_string(wt.shape) + " must have C_in / groups = " + std::to_string(g.c_in / g.groups) +
             " in dimension 1");
  }
  if (g.c_out % g.groups != 0) {
    ctx.fail("groups " + std::to_string(g.groups) + " does not divide the " + std::to_string(g.c_out) +
             " output channels");
  }
  const std::string pad_type = pad_type_of(ctx);
  std::vector<int64_t> pad;
  if (pad_type == "custom") {
    pad = custom_pad(ctx, c.dims);
  } else if (pad_type != "valid" && pad_type != "same" && pad_type != "same_lower") {
    ctx.fail("pad_type '" + pad_type + "' is not supported (valid, same, same_lower, custom)");
  }
  const size_t skip = 3 - c.dims;
  for (size_t i = 0; i < c.dims; ++i) {
    Axis& a = g.ax[skip + i];
    if (pad_type == "same" || pad_type == "same_lower") {
      same_padding(a, pad_type == "same_lower");
      continue;
    }
    const int64_t before = pad.empty() ? 0 : pad[2 * i], after = pad.empty() ? 0 : pad[2 * i + 1];
    const int64_t padded = add_size(ctx, add_size(ctx, a.in, before), after);
    if (a.span() > padded) {
      ctx.fail("the dilated kernel (" + std::to_string(a.span()) + ") is larger than the padded input (" +
               std::to_string(padded) + ") along spatial dimension " + std::to_string(i));
    }
    a.pad = before;
    a.out = (padded - a.span()) / a.stride + 1;
  }
}

// The range [lo, hi) of outputs o < out whose input o * stride + offset lies in [0, in).
void valid_range(int64_t offset, int64_t stride, int64_t in, int64_t out, int64_t* lo, int64_t* hi) {
  *lo = offset >= 0 ? 0 : std::min(out, (-offset + stride - 1) / stride);
  const int64_t last = in - 1 - offset;  // o * stride <= last
  *hi = last < 0 ? *lo : std::clamp(last / stride + 1, *lo, out);
}

// dst[j * step] = x_row[(o0 + j) * stride + offset] for j < n, 0 outside the row.
template <typename T>
void gather_run(const T* x_row, int64_t in, int64_t o0, int64_t n, int64_t stride, int64_t offset, float* dst,
                int64_t step) {
  int64_t lo = 0, hi = 0;
  valid_range(o0 * stride + offset, stride, in, n, &lo, &hi);
  for (int64_t j = 0; j < lo; ++j) dst[j * step] = 0.f;
  for (int64_t j = hi; j < n; ++j) dst[j * step] = 0.f;
  if (lo == hi) return;
  const T* src = x_row + (o0 + lo) * stride + offset;
  if (step == 1 && stride == 1) {
    if constexpr (std::is_same_v<T, float>) {
      std::memcpy(dst + lo, src, sizeof(float) * (hi - lo));
    } else {
      half_to_float_n(src, dst + lo, hi - lo);
    }
  } else {
    for (int64_t j = lo; j < hi; ++j, src += stride) dst[j * step] = widen(*src);
  }
}

// im2col of output positions [p0, p0 + t): for input channel ci and kernel
// offset koff, the input each position reads (0 in the padding) goes to
// dst[r * step] for r < t.
template <typename T>
void im2col_column(const Geometry& g, const T* xc, int64_t koff, int64_t p0, int64_t t, float* dst, int64_t step) {
  const auto& a = g.ax;
  const int64_t kd = koff / (a[1].kernel * a[2].kernel), kh = (koff / a[2].kernel) % a[1].kernel,
                kw = koff % a[2].kernel;
  int64_t od = p0 / (a[1].out * a[2].out), oh = (p0 / a[2].out) % a[1].out, ow = p0 % a[2].out;
  for (int64_t r = 0; r < t;) {
    const int64_t run = std::min(a[2].out - ow, t - r);
    const int64_t id = od * a[0].stride + kd * a[0].dilation - a[0].pad;
    const int64_t ih = oh * a[1].stride + kh * a[1].dilation - a[1].pad;
    float* d = dst + r * step;
    if (id < 0 || id >= a[0].in || ih < 0 || ih >= a[1].in) {
      for (int64_t j = 0; j < run; ++j) d[j * step] = 0.f;
    } else {
      gather_run(xc + (id * a[1].in + ih) * a[2].in, a[2].in, ow, run, a[2].stride, kw * a[2].dilation - a[2].pad, d,
                 step);
    }
    r += run;
    ow = 0;
    if (++oh == a[1].out) {
      oh = 0;
      ++od;
    }
  }
}

// --- position-major ---------------------------------------------------------

// im2col rows of the columns [c0, c1) of all groups (column c = input channel
// * kernel + kernel offset): row r of group grp at col + (grp * tile + r) * kg.
template <typename T>
void im2col_rows(const ConvPlan& p, const T* x, int64_t p0, int64_t t, float* col, int64_t c0, int64_t c1) {
  const int64_t kk = p.g.kernel_size();
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t ci = c / kk, grp = ci / p.cin_g;
    float* dst = col + grp * p.tile * p.kg + (ci - grp * p.cin_g) * kk + c % kk;
    im2col_column(p.g, x + ci * p.g.in_size(), c % kk, p0, t, dst, p.kg);
  }
}

// Square blocks of the transposes between channel-major tensors and the
// position-major rows of the gemm: both sides touch whole cache lines.
constexpr int64_t kBlk = 16;

// The rows of a pointwise conv: a blocked transpose of x.
template <typename T>
void pointwise_rows(const ConvPlan& p, const T* x, int64_t p0, int64_t t, float* col, int64_t c0, int64_t c1) {
  const int64_t P = p.g.in_size();
  float tmp[kBlk][kBlk];
  for (int64_t cb = c0; cb < c1;) {
    const int64_t grp = cb / p.cin_g, nc = std::min({kBlk, c1 - cb, (grp + 1) * p.cin_g - cb});
    float* dst = col + grp * p.tile * p.kg + (cb - grp * p.cin_g);
    if (t == 1) {  // one position: a strided gather
      for (int64_t i = 0; i < nc; ++i) dst[i] = widen(x[(cb + i) * P + p0]);
    }
    for (int64_t rb = 0; t > 1 && rb < t; rb += kBlk) {
      const int64_t nr = std::min(kBlk, t - rb);
      for (int64_t i = 0; i < nc; ++i) gather_run(x + (cb + i) * P, P, p0 + rb, nr, 1, 0, tmp[i], 1);
      for (int64_t j = 0; j < nr; ++j)
        for (int64_t i = 0; i < nc; ++i) dst[(rb + j) * p.kg + i] = tmp[i][j];
    }
    cb += nc;
  }
}

// Results of a tile are grouped: row r, channel c of group grp at
// y[(grp * tile + r) * cout_g + c - grp * cout_g] (all of [r, c] for groups 1).
// gemm_nt for the output channels [n0, n1).
void product_rows(const ConvPlan& p, const float* col, int64_t t, const void* w, float* y, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1;) {
    const int64_t grp = n / p.cout_g, end = std::min(n1, (grp + 1) * p.cout_g);
    const float* xg = col + grp * p.tile * p.kg;
    float* yg = y + grp * p.tile * p.cout_g - grp * p.cout_g;  // gemm_nt indexes columns by n
    if (p.cw) {
      gemm_nt_compressed(xg, t, *p.cw, yg, p.cout_g, n, end);
    } else {
      gemm_nt(xg, t, p.kg, w, p.wtype, yg, p.cout_g, n, end);
    }
    n = end;
  }
}

template <typename T>
void store_floats(const float* src, T* dst, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    std::memcpy(dst, src, sizeof(float) * n);
  } else {
    float_to_half_n(src, dst, n);
  }
}

// out[c, r] = y[r, c] + bias[c] for rows [0, t) and channels [c0, c1) in
// the output dtype; out advances by the output's P positions per channel.
template <typename T>
void write_rows(const ConvPlan& p, const float* y, int64_t t, const float* bias, T* out, int64_t c0, int64_t c1) {
  const int64_t P = p.g.out_size();
  float tmp[kBlk][kBlk];
  for (int64_t cb = c0; cb < c1;) {
    const int64_t grp = cb / p.cout_g, nc = std::min({kBlk, c1 - cb, (grp + 1) * p.cout_g - cb});
    const float* yg = y + grp * p.tile * p.cout_g + (cb - grp * p.cout_g);
    if (t == 1 && P == 1) {  // one position per batch: channels are contiguous
      for (int64_t i = 0; i < nc; ++i) tmp[0][i] = yg[i] + (bias ? bias[cb + i] : 0.f);
      store_floats(tmp[0], out + cb, nc);
    }
    for (int64_t rb = 0; P > 1 && rb < t; rb += kBlk) {
      const int64_t nr = std::min(kBlk, t - rb);
      for (int64_t j = 0; j < nr; ++j)
        for (int64_t i = 0; i < nc; ++i) tmp[i][j] = yg[(rb + j) * p.cout_g + i] + (bias ? bias[cb + i] : 0.f);
      for (int64_t i = 0; i < nc; ++i) store_floats(tmp[i], out + (cb + i) * P + rb, nr);
    }
    cb += nc;
  }
}

template <typename T>
void run_position_major(const ConvPlan& p, const KernelCall& call, const float* bias, float* col) {
  float* y = col + p.col_floats;
  const T* x = call.in(p.xs).data_as<T>();
  T* out = call.out(0).data_as<T>();
  const void* w = p.ws >= 0 ? call.in(p.ws).data() : nullptr;
  const int64_t P = p.g.out_size(), cols = p.g.c_in * p.g.kernel_size();
  for (int64_t n = 0; n < p.g.batch; ++n) {
    const T* xn = x + n * p.g.c_in * p.g.in_size();
    T* on = out + n * p.g.c_out * P;
    for (int64_t p0 = 0; p0 < P; p0 += p.tile) {
      const int64_t t = std::min(p.tile, P - p0);
      split(call.pool, cols, t * cols, [&](int64_t c0, int64_t c1) {
        if (p.pointwise) {
          pointwise_rows(p, xn, p0, t, col, c0, c1);
        } else {
          im2col_rows(p, xn, p0, t, col, c0, c1);
        }
      });
      parallel_output_rows(call.pool, p.g.c_out, t * p.g.c_out * p.kg,
                           [&](int64_t n0, int64_t n1) { product_rows(p, col, t, w, y, n0, n1); });
      split(call.pool, p.g.c_out, t * p.g.c_out,
            [&](int64_t c0, int64_t c1) { write_rows(p, y, t, bias, on + p0, c0, c1); });
    }
  }
}

// --- channel-major -----------------------------------------------------------

constexpr int64_t kNnRows = 16;  // output channels per gemm_nn call: their rows stay in L1

// One work item: group grp, output positions [p0, p0 + t) of one batch, in a
// slot's col [kg, t] and y [cout_g, t]. With a pool, its three steps are split
// over the threads (an item alone); without, it runs on the calling thread.
template <typename T>
void channel_major_item(const ConvPlan& p, const T* x, const float* w, const float* bias, T* out, int64_t grp,
                        int64_t p0, int64_t t, float* col, float* y, ThreadPool* pool) {
  const int64_t kk = p.g.kernel_size(), P = p.g.out_size();
  split(pool, p.kg, p.kg * t, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const T* xc = x + (grp * p.cin_g + k / kk) * p.g.in_size();
      im2col_column(p.g, xc, k % kk, p0, t, col + k * t, 1);
    }
  });
  const float* wg = w + grp * p.cout_g * p.kg;
  const int64_t blocks = (p.cout_g + kNnRows - 1) / kNnRows;
  split(pool, blocks, p.cout_g * p.kg * t, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      gemm_nn(wg, p.kg, col, WeightType::kF32, t, y, b * kNnRows, std::min(p.cout_g, (b + 1) * kNnRows));
  });
  split(pool, p.cout_g, p.cout_g * t, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t oc = grp * p.cout_g + c;
      float* row = y + c * t;
      if (bias)
        for (int64_t r = 0; r < t; ++r) row[r] += bias[oc];
      store_floats(row, out + oc * P + p0, t);
    }
  });
}

template <typename T>
void run_channel_major(const ConvPlan& p, const KernelCall& call, const float* bias, float* wide, float* slots) {
  const float* w = p.widen ? wide : call.in(p.ws).data_as<float>();
  if (p.widen) half_to_float_n(call.in(p.ws).data_as<half_bits>(), wide, p.g.c_out * p.kg);
  const T* x = call.in(p.xs).data_as<T>();
  T* out = call.out(0).data_as<T>();
  const int64_t P = p.g.out_size(), tiles = (P + p.tile - 1) / p.tile;
  const int64_t items = p.g.batch * tiles * p.g.groups, per_slot = p.col_floats + p.y_floats;
  auto item = [&](int64_t i, float* slot, ThreadPool* pool) {
    const int64_t n = i / (tiles * p.g.groups), tile = (i / p.g.groups) % tiles, grp = i % p.g.groups;
    const int64_t p0 = tile * p.tile, t = std::min(p.tile, P - p0);
    channel_major_item(p, x + n * p.g.c_in * p.g.in_size(), w, bias, out + n * p.g.c_out * P, grp, p0, t, slot,
                       slot + p.col_floats, pool);
  };
  const int64_t work = p.g.batch * P * p.g.c_out * p.kg;
  if (call.pool != nullptr && items >= p.slots && p.slots > 1 && work >= kParallelFlops) {
    call.pool->parallel_for(p.slots, 1, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s)
        for (int64_t i = s; i < items; i += p.slots) item(i, slots + s * per_slot, nullptr);
    });
  } else {
    for (int64_t i = 0; i < items; ++i) item(i, slots, call.pool);
  }
}

template <typename T>
void run_conv_typed(const ConvPlan& p, const KernelCall& call) {
  auto* scratch = static_cast<float*>(call.scratch);
  const float* bias = load_bias(call, p.bs, p.g.c_out, scratch);
  float* rest = scratch + lines(p.g.c_out);
  if (p.channel_major) return run_channel_major<T>(p, call, bias, rest, rest + p.w_floats);
  run_position_major<T>(p, call, bias, rest);
}

// Output positions per tile. Position-major: the im2col rows of a group's
// tile stay in L2 (256 KB) while gemm_nt streams the weight past them, but at
// least 128 rows, so that a 1x1 conv of up to 128 positions is one product
// as linear's is. Channel-major: a slot's columns and results in half of L2,
// at least 64 positions (vectors along them), a multiple of 16.
constexpr int64_t kRowsFloats = int64_t{1} << 16;
constexpr int64_t kMinTileRows = 128;
constexpr int64_t kSlotFloats = int64_t{1} << 17;
constexpr int64_t kMinTileColumns = 64;
// Channel-major for shallow products only (above), with enough positions to
// fill its vectors; it widens an fp16 weight per call only when that is cheap
// beside the product.
constexpr int64_t kChannelMajorMaxDepth = 64;
constexpr int64_t kChannelMajorMinPositions = 32;
constexpr int64_t kMaxWidenedFloats = int64_t{1} << 18;

PlannedOp build_conv(OpPlanContext& ctx) {
  Common c = read_common(ctx);
  conv_geometry(ctx, c);
  ConvPlan p;
  p.g = c.g;
  p.cin_g = p.g.c_in / p.g.groups;
  p.cout_g = p.g.c_out / p.g.groups;
  p.kg = mul_size(ctx, p.cin_g, p.g.kernel_size());
  const int64_t P = mul_size(ctx, mul_size(ctx, p.g.ax[0].out, p.g.ax[1].out), p.g.ax[2].out);
  mul_size(ctx, mul_size(ctx, p.g.batch, p.g.c_out), P);
  const int64_t weight_floats = mul_size(ctx, p.g.c_out, p.kg);
  p.x_dtype = ctx.type("x").dtype;
  p.wtype = ctx.type("weight").dtype == DType::kFloat16 ? WeightType::kF16 : WeightType::kF32;
  p.cw = ctx.compressed("weight");  // read as stored, never expanded
  if (p.cw && (p.cw->rows != p.g.c_out || p.cw->cols != p.kg)) p.cw = nullptr;
  p.channel_major = !p.cw && p.kg <= kChannelMajorMaxDepth && P >= kChannelMajorMinPositions &&
                    (p.wtype == WeightType::kF32 || weight_floats <= kMaxWidenedFloats);
  p.xs = ctx.input("x");
  if (!p.cw) p.ws = ctx.input("weight");
  p.bs = plan_bias(ctx, p.g.c_out);
  if (p.channel_major) {
    const int64_t per_column = add_size(ctx, p.kg, p.cout_g);
    p.tile = std::min(P, std::max(kMinTileColumns, kSlotFloats / per_column / 16 * 16));
    p.widen = p.wtype == WeightType::kF16;
    p.w_floats = p.widen ? lines(weight_floats) : 0;
    p.slots = std::max(1, default_thread_pool().size());
    p.col_floats = lines(mul_size(ctx, p.kg, p.tile));
    p.y_floats = lines(mul_size(ctx, p.cout_g, p.tile));
  } else {
    const int64_t per_row = add_size(ctx, mul_size(ctx, p.g.groups, p.kg), p.g.c_out);
    const int64_t by_cache = std::max(kMinTileRows, kRowsFloats / p.kg);
    p.tile = std::clamp<int64_t>(std::min(by_cache, kTileFloats / per_row), 1, P);
    p.pointwise = std::all_of(p.g.ax.begin(), p.g.ax.end(), [](const Axis& a) {
      return a.kernel == 1 && a.stride == 1 && a.pad == 0 && a.out == a.in;
    });
    p.col_floats = lines(mul_size(ctx, p.g.groups * p.tile, p.kg));
    p.y_floats = lines(mul_size(ctx, p.tile, p.g.c_out));
  }
  Shape out = {p.g.batch, p.g.c_out};
  for (size_t i = 3 - c.dims; i < 3; ++i) out.push_back(p.g.ax[i].out);
  PlannedOp op;
  op.outputs.push_back({p.x_dtype, out});
  const int64_t floats = lines(p.g.c_out) + p.w_floats + p.slots * (p.col_floats + p.y_floats);
  op.scratch_bytes = static_cast<size_t>(floats) * sizeof(float);
  op.run = [p](const KernelCall& call) {
    if (p.x_dtype == DType::kFloat32) {
      run_conv_typed<float>(p, call);
    } else {
      run_conv_typed<half_bits>(p, call);
    }
  };
  return op;
}

// ---------------------------------------------------------------------------
// conv_transpose
//
// Channel-major like conv: per group, the weight transposed to
// [cout_g * kernel, cin_g] (fp32, per call) times the input rows [cin_g,
// positions] gives each (output channel, kernel offset) its row of
// contributions along the input positions (gemm_nn); col2im adds each row into
// the output positions it reaches, in fp32.

struct TransposePlan {
  Geometry g;                             // Axis::pad: output elements cropped before the first
  int64_t cin_g = 1, cout_g = 1, nk = 1;  // channels per group; gemm rows cout_g * kernel
  int64_t tile = 1;                       // input positions per product
  DType x_dtype = DType::kFloat32, w_dtype = DType::kFloat32;
  int xs = -1, ws = -1, bs = -1;
  int64_t wt_floats = 0, xt_floats = 0, z_floats = 0, acc_floats = 0;  // scratch regions
};

// Output sizes and crops. Before output_shape or pad_type: the full result
// of every input position is (in - 1) * stride + span long; custom crops
// pad[2i] before and pad[2i + 1] after, valid nothing, same keeps in * stride
// with the excess split as a same conv of that output would pad (the odd
// element after, as TensorFlow's conv2d_transpose, which coremltools' frontend
// maps to it). An output_shape longer than the cropped result is zero (plus
// bias) at the end.
void transpose_geometry(OpPlanContext& ctx, Common& c) {
  const ValueType& wt = ctx.type("weight");
  Geometry& g = c.g;
  if (wt.shape[0] != g.c_in) {
    ctx.fail("weight " + shape_to_string(wt.shape) + " must have the " + std::to_string(g.c_in) +
             " input channels in dimension 0");
  }
  g.c_out = mul_size(ctx, wt.shape[1], g.groups);
  const std::string pad_type = pad_type_of(ctx);
  if (pad_type != "valid" && pad_type != "same" && pad_type != "custom") {
    ctx.fail("pad_type '" + pad_type + "' is not supported for conv_transpose (valid, same, custom)");
  }
  const std::vector<int64_t> pad = pad_type == "custom" ? custom_pad(ctx, c.dims) : std::vector<int64_t>();
  std::vector<int64_t> shape;
  if (ctx.has("output_shape")) {
    shape = ctx.const_ints("output_shape");
    const size_t rank = c.dims + 2;
    bool ok = shape.size() == rank && shape[0] == g.batch && shape[1] == g.c_out;
    for (size_t i = 2; ok && i < shape.size(); ++i) ok = shape[i] >= 1 && shape[i] <= kSizeLimit;
    if (!ok) {
      ctx.fail("output_shape " + ints_to_string(shape) + " is not supported: it must be [" + std::to_string(g.batch) +
               ", " + std::to_string(g.c_out) + ", " + std::to_string(c.dims) + " positive spatial sizes]");
    }
  }
  const size_t skip = 3 - c.dims;
  for (size_t i = 0; i < c.dims; ++i) {
    Axis& a = g.ax[skip + i];
    const int64_t full = add_size(ctx, mul_size(ctx, a.in - 1, a.stride), a.span());
    if (pad_type == "custom") {
      a.pad = pad[2 * i];
      a.out = full - pad[2 * i] - pad[2 * i + 1];
    } else if (pad_type == "same") {
      a.out = mul_size(ctx, a.in, a.stride);
    } else {
      a.out = full;
    }
    if (!shape.empty()) a.out = shape[2 + i];
    if (pad_type == "same") a.pad = std::max<int64_t>(0, full - a.out) / 2;
    if (a.out < 1) {
      ctx.fail("pad " + ints_to_string(pad) + " crops all of spatial dimension " + std::to_string(i) + " (" +
               std::to_string(full) + " long)");
    }
  }
}

// wt[grp][j][c] = w[grp * cin_g + c][j] for j < nk: each group's [cin_g, nk] transposed, in fp32.
void transpose_weight(const TransposePlan& p, const Tensor& w, float* wt, int64_t g0, int64_t g1) {
  for (int64_t grp = g0; grp < g1; ++grp)
    for (int64_t c = 0; c < p.cin_g; ++c) {
      const int64_t row = (grp * p.cin_g + c) * p.nk;
      float* dst = wt + grp * p.nk * p.cin_g + c;
      for (int64_t j = 0; j < p.nk; ++j)
        dst[j * p.cin_g] =
            w.dtype() == DType::kFloat16 ? half_to_float(w.data_as<half_bits>()[row + j]) : w.data_as<float>()[row + j];
    }
}

// acc[c, o] += z[grp][co * kernel + k][r] for the input positions i0 + r of
// the tile and kernel offsets k that reach an output o, for channels [c0, c1).
void col2im(const TransposePlan& p, const float* z, int64_t i0, int64_t t, float* acc, int64_t c0, int64_t c1) {
  const auto& a = p.g.ax;
  const int64_t kk = p.g.kernel_size(), P = p.g.out_size();
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t grp = c / p.cout_g;
    const float* zc = z + (grp * p.nk + (c - grp * p.cout_g) * kk) * t;
    float* out = acc + c * P;
    for (int64_t k = 0; k < kk; ++k) {
      const int64_t kd = k / (a[1].kernel * a[2].kernel), kh = (k / a[2].kernel) % a[1].kernel, kw = k % a[2].kernel;
      const float* zk = zc + k * t;
      int64_t id = i0 / (a[1].in * a[2].in), ih = (i0 / a[2].in) % a[1].in, iw = i0 % a[2].in;
      for (int64_t r = 0; r < t;) {
        const int64_t run = std::min(a[2].in - iw, t - r);
        const int64_t od = id * a[0].stride + kd * a[0].dilation - a[0].pad;
        const int64_t oh = ih * a[1].stride + kh * a[1].dilation - a[1].pad;
        if (od >= 0 && od < a[0].out && oh >= 0 && oh < a[1].out) {
          // ow = (iw + j) * stride + offset for the run's j in [lo, hi) inside the row
          const int64_t offset = iw * a[2].stride + kw * a[2].dilation - a[2].pad;
          int64_t lo = 0, hi = 0;
          valid_range(offset, a[2].stride, a[2].out, run, &lo, &hi);
          float* row = out + (od * a[1].out + oh) * a[2].out;
          for (int64_t j = lo; j < hi; ++j) row[j * a[2].stride + offset] += zk[r + j];
        }
        r += run;
        iw = 0;
        if (++ih == a[1].in) {
          ih = 0;
          ++id;
        }
      }
    }
  }
}

template <typename T>
void run_transpose_typed(const TransposePlan& p, const KernelCall& call) {
  auto* scratch = static_cast<float*>(call.scratch);
  const float* bias = load_bias(call, p.bs, p.g.c_out, scratch);
  float* wt = scratch + lines(p.g.c_out);
  float* xt = wt + p.wt_floats;
  float* z = xt + p.xt_floats;
  float* acc_buf = z + p.z_floats;
  const Tensor& w = call.in(p.ws);
  split(call.pool, p.g.groups, p.g.groups * p.cin_g * p.nk,
        [&](int64_t g0, int64_t g1) { transpose_weight(p, w, wt, g0, g1); });
  const T* x = call.in(p.xs).data_as<T>();
  T* out = call.out(0).data_as<T>();
  const int64_t P = p.g.out_size(), Pin = p.g.in_size(), kk = p.g.kernel_size();
  const int64_t blocks = (p.nk + kNnRows - 1) / kNnRows;
  for (int64_t n = 0; n < p.g.batch; ++n) {
    const T* xn = x + n * p.g.c_in * Pin;
    T* on = out + n * p.g.c_out * P;
    float* acc = std::is_same_v<T, float> ? reinterpret_cast<float*>(on) : acc_buf;
    std::fill(acc, acc + p.g.c_out * P, 0.f);
    for (int64_t i0 = 0; i0 < Pin; i0 += p.tile) {
      const int64_t t = std::min(p.tile, Pin - i0);
      split(call.pool, p.g.c_in, t * p.g.c_in, [&](int64_t c0, int64_t c1) {
        for (int64_t c = c0; c < c1; ++c) gather_run(xn + c * Pin, Pin, i0, t, 1, 0, xt + c * t, 1);
      });
      split(call.pool, p.g.groups * blocks, t * p.g.c_in * p.nk, [&](int64_t j0, int64_t j1) {
        for (int64_t j = j0; j < j1; ++j) {
          const int64_t grp = j / blocks, m0 = (j % blocks) * kNnRows;
          gemm_nn(wt + grp * p.nk * p.cin_g, p.cin_g, xt + grp * p.cin_g * t, WeightType::kF32, t, z + grp * p.nk * t,
                  m0, std::min(p.nk, m0 + kNnRows));
        }
      });
      split(call.pool, p.g.c_out, t * p.g.c_out * kk,
            [&](int64_t c0, int64_t c1) { col2im(p, z, i0, t, acc, c0, c1); });
    }
    split(call.pool, p.g.c_out, p.g.c_out * P, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        float* a = acc + c * P;
        if (bias)
          for (int64_t i = 0; i < P; ++i) a[i] += bias[c];
        if constexpr (!std::is_same_v<T, float>) float_to_half_n(a, on + c * P, P);
      }
    });
  }
}

PlannedOp build_conv_transpose(OpPlanContext& ctx) {
  Common c = read_common(ctx);
  transpose_geometry(ctx, c);
  TransposePlan p;
  p.g = c.g;
  p.cin_g = p.g.c_in / p.g.groups;
  p.cout_g = p.g.c_out / p.g.groups;
  p.nk = mul_size(ctx, p.cout_g, p.g.kernel_size());
  const int64_t P = mul_size(ctx, mul_size(ctx, p.g.ax[0].out, p.g.ax[1].out), p.g.ax[2].out);
  mul_size(ctx, mul_size(ctx, p.g.batch, p.g.c_out), P);
  // floats per input position: its input column and its contributions in every group
  const int64_t per_column = add_size(ctx, p.g.c_in, mul_size(ctx, p.g.groups, p.nk));
  p.tile = std::min(p.g.in_size(), std::max(kMinTileColumns, 2 * kSlotFloats / per_column / 16 * 16));
  p.wt_floats = lines(mul_size(ctx, p.g.c_in, p.nk));
  p.xt_floats = lines(mul_size(ctx, p.tile, p.g.c_in));
  p.z_floats = lines(mul_size(ctx, p.g.groups * p.tile, p.nk));
  p.x_dtype = ctx.type("x").dtype;
  p.w_dtype = ctx.type("weight").dtype;
  p.acc_floats = p.x_dtype == DType::kFloat32 ? 0 : lines(mul_size(ctx, p.g.c_out, P));
  p.xs = ctx.input("x");
  p.ws = ctx.input("weight");
  p.bs = plan_bias(ctx, p.g.c_out);
  Shape out = {p.g.batch, p.g.c_out};
  for (size_t i = 3 - c.dims; i < 3; ++i) out.push_back(p.g.ax[i].out);
  PlannedOp op;
  op.outputs.push_back({p.x_dtype, out});
  const int64_t floats = lines(p.g.c_out) + p.wt_floats + p.xt_floats + p.z_floats + p.acc_floats;
  op.scratch_bytes = static_cast<size_t>(floats) * sizeof(float);
  op.run = [p](const KernelCall& call) {
    if (p.x_dtype == DType::kFloat32) {
      run_transpose_typed<float>(p, call);
    } else {
      run_transpose_typed<half_bits>(p, call);
    }
  };
  return op;
}

}  // namespace

void register_conv_ops(OpRegistry& r) {
  r.add("conv", build_conv);
  r.add("conv_transpose", build_conv_transpose);
}

}  // namespace staticllm::mil
