// Shared machinery of the elementwise op families: loading runs of any dtype
// into a compute type (float for fp16/fp32, double for integers so int32
// stays exact), storing them back, and planning numpy broadcasting as runs
// along the innermost dimension.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "mil/half.h"
#include "mil/op.h"
#include "mil/thread_pool.h"

namespace staticllm::mil {

constexpr int64_t kBlock = 1024;  // elements converted per block (stack buffers)

inline bool is_float_dtype(DType t) { return t == DType::kFloat16 || t == DType::kFloat32 || t == DType::kFloat64; }

// Reads `len` elements starting at element `off`, `step` apart (0 = repeat one
// element), converted to C. Returns a pointer to them: straight into the
// tensor when no conversion is needed, else into `buf`.
template <typename C>
const C* load_run(DType t, const void* base, int64_t off, int64_t step, int64_t len, C* buf) {
  if (step == 1 && sizeof(C) == 4 && t == DType::kFloat32) {
    return reinterpret_cast<const C*>(static_cast<const float*>(base) + off);
  }
  if (step == 1 && sizeof(C) == 8 && t == DType::kFloat64) {
    return reinterpret_cast<const C*>(static_cast<const double*>(base) + off);
  }
  if (step == 1 && sizeof(C) == 4 && t == DType::kFloat16) {
    half_to_float_n(static_cast<const half_bits*>(base) + off, reinterpret_cast<float*>(buf), len);
    return buf;
  }
  auto fill = [&](auto* p, auto convert) {
    if (step == 0) {
      C v = convert(p[off]);
      std::fill(buf, buf + len, v);
    } else {
      for (int64_t i = 0; i < len; ++i) buf[i] = convert(p[off + i * step]);
    }
  };
  auto same = [](auto v) { return static_cast<C>(v); };
  switch (t) {
    case DType::kFloat16:
      fill(static_cast<const half_bits*>(base), [](half_bits h) { return static_cast<C>(half_to_float(h)); });
      break;
    case DType::kFloat32: fill(static_cast<const float*>(base), same); break;
    case DType::kFloat64: fill(static_cast<const double*>(base), same); break;
    case DType::kInt8: fill(static_cast<const int8_t*>(base), same); break;
    case DType::kUInt8: fill(static_cast<const uint8_t*>(base), same); break;
    case DType::kInt16: fill(static_cast<const int16_t*>(base), same); break;
    case DType::kUInt16: fill(static_cast<const uint16_t*>(base), same); break;
    case DType::kInt32: fill(static_cast<const int32_t*>(base), same); break;
    case DType::kInt64: fill(static_cast<const int64_t*>(base), same); break;
    case DType::kBool: fill(static_cast<const uint8_t*>(base), [](uint8_t b) { return static_cast<C>(b != 0); }); break;
  }
  return buf;
}

// Writes `len` values of C to contiguous elements starting at `off`.
template <typename C>
void store_run(DType t, void* base, int64_t off, int64_t len, const C* src) {
  auto put = [&](auto* p) {
    using T = std::remove_pointer_t<decltype(p)>;
    for (int64_t i = 0; i < len; ++i) p[off + i] = static_cast<T>(src[i]);
  };
  switch (t) {
    case DType::kFloat16:
      if constexpr (sizeof(C) == 4) {
        float_to_half_n(reinterpret_cast<const float*>(src), static_cast<half_bits*>(base) + off, len);
      } else {
        auto* p = static_cast<half_bits*>(base) + off;
        for (int64_t i = 0; i < len; ++i) p[i] = float_to_half(static_cast<float>(src[i]));
      }
      break;
    case DType::kFloat32: put(static_cast<float*>(base)); break;
    case DType::kFloat64: put(static_cast<double*>(base)); break;
    case DType::kInt8: put(static_cast<int8_t*>(base)); break;
    case DType::kUInt8: put(static_cast<uint8_t*>(base)); break;
    case DType::kInt16: put(static_cast<int16_t*>(base)); break;
    case DType::kUInt16: put(static_cast<uint16_t*>(base)); break;
    case DType::kInt32: put(static_cast<int32_t*>(base)); break;
    case DType::kInt64: put(static_cast<int64_t*>(base)); break;
    case DType::kBool: {
      auto* p = static_cast<uint8_t*>(base) + off;
      for (int64_t i = 0; i < len; ++i) p[i] = src[i] != C(0) ? 1 : 0;
      break;
    }
  }
}

// One element as a double (exact for every dtype but int64 past 2^53), and back.
inline double load_one(DType t, const void* base, int64_t i) {
  double v = 0;
  return *load_run<double>(t, base, i, 1, 1, &v);
}
inline void store_one(DType t, void* base, int64_t i, double v) { store_run<double>(t, base, i, 1, &v); }

// The whole tensor as fp32: its own data when it is fp32, else converted
// into `buf` (numel floats).
inline const float* floats_of(const Tensor& t, float* buf) {
  int64_t n = t.numel();
  for (int64_t s = 0; s < n; s += kBlock) {
    int64_t len = std::min(kBlock, n - s);
    const float* p = load_run<float>(t.dtype(), t.data(), s, 1, len, buf + s);
    if (p != buf + s) {
      if (s == 0 && len == n) return p;  // fp32 in place
      std::memcpy(buf + s, p, static_cast<size_t>(len) * sizeof(float));
    }
  }
  return buf;
}

// Writes numel floats into `out` in its dtype.
inline void store_floats(Tensor& out, const float* v) {
  int64_t n = out.numel();
  for (int64_t s = 0; s < n; s += kBlock) store_run<float>(out.dtype(), out.data(), s, std::min(kBlock, n - s), v + s);
}

// A constant parameter as fp32 values; fails through ctx when it is not constant.
std::vector<float> const_floats(const OpPlanContext& ctx, const std::string& param);

// Broadcasting of several operands to one output shape, iterated as runs
// along the (collapsed) innermost dimension.
struct BroadcastPlan {
  Shape out_shape;
  std::vector<int64_t> dims;                  // collapsed output dims
  std::vector<std::vector<int64_t>> strides;  // per operand, per collapsed dim (0 = broadcast)

  static constexpr size_t kMaxOperands = 4;
  static constexpr size_t kMaxRank = 8;

  int64_t inner() const { return dims.empty() ? 1 : dims.back(); }
  int64_t outer() const {
    int64_t o = 1;
    for (size_t d = 0; d + 1 < dims.size(); ++d) o *= dims[d];
    return o;
  }
  // Runs of at most kBlock elements: (inner() + kBlock - 1) / kBlock per outer index.
  int64_t runs() const { return outer() * ((inner() + kBlock - 1) / kBlock); }

  // for_each_run's calls for runs [r0, r1) only (in the same order), so that
  // threads can share the runs of one op.
  template <typename F>
  void for_runs(int64_t r0, int64_t r1, F&& fn) const {
    const size_t k = strides.size();
    const int64_t rank = static_cast<int64_t>(dims.size());
    const int64_t in = inner(), per = (in + kBlock - 1) / kBlock;
    int64_t offs[kMaxOperands] = {0};
    int64_t steps[kMaxOperands] = {0};
    for (size_t j = 0; j < k; ++j) steps[j] = rank == 0 ? 0 : strides[j][rank - 1];
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t o = r / per, start = (r % per) * kBlock;
      int64_t rem = o;
      for (size_t j = 0; j < k; ++j) offs[j] = start * steps[j];
      for (int64_t d = rank - 2; d >= 0; --d) {  // the outer multi-index of o
        const int64_t i = rem % dims[d];
        rem /= dims[d];
        for (size_t j = 0; j < k; ++j) offs[j] += i * strides[j][d];
      }
      fn(static_cast<const int64_t*>(offs), static_cast<const int64_t*>(steps), o * in + start,
         std::min(kBlock, in - start));
    }
  }

  // fn(const int64_t* offsets, const int64_t* steps, int64_t out_offset, int64_t len)
  // Offsets are element offsets of each operand; steps their innermost stride.
  template <typename F>
  void for_each_run(F&& fn) const {
    size_t k = strides.size();
    int64_t rank = static_cast<int64_t>(dims.size());
    int64_t inner = rank == 0 ? 1 : dims[rank - 1];
    int64_t outer = 1;
    for (int64_t d = 0; d + 1 < rank; ++d) outer *= dims[d];
    int64_t idx[kMaxRank] = {0};
    int64_t offs[kMaxOperands] = {0};
    int64_t steps[kMaxOperands] = {0};
    int64_t cur[kMaxOperands] = {0};
    for (size_t j = 0; j < k; ++j) steps[j] = rank == 0 ? 0 : strides[j][rank - 1];
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t start = 0; start < inner; start += kBlock) {
        int64_t len = std::min(kBlock, inner - start);
        for (size_t j = 0; j < k; ++j) cur[j] = offs[j] + start * steps[j];
        fn(static_cast<const int64_t*>(cur), static_cast<const int64_t*>(steps), o * inner + start, len);
      }
      for (int64_t d = rank - 2; d >= 0; --d) {  // advance the outer multi-index
        ++idx[d];
        for (size_t j = 0; j < k; ++j) offs[j] += strides[j][d];
        if (idx[d] < dims[d]) break;
        for (size_t j = 0; j < k; ++j) offs[j] -= strides[j][d] * dims[d];
        idx[d] = 0;
      }
    }
  }
};

// Elementwise ops of at least this many elements split their blocks over the
// thread pool (below, waking the pool costs more than it saves: decode's
// elementwise ops stay on the calling thread). Each element is computed the
// same way on any thread, so results do not depend on the thread count.
constexpr int64_t kParallelElements = 1 << 15;

// fn(b0, b1) over the blocks [0, blocks) of an op of `elements` elements: on
// the pool for big ops, else at once on the calling thread.
template <typename F>
void for_blocks(ThreadPool* pool, int64_t elements, int64_t blocks, F&& fn) {
  if (pool == nullptr || elements < kParallelElements || blocks < 2) return fn(int64_t{0}, blocks);
  pool->parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) { fn(b0, b1); });
}

// Builds the plan; returns false if the shapes do not broadcast (or exceed
// kMaxOperands operands / kMaxRank collapsed dims).
bool plan_broadcast(const std::vector<Shape>& inputs, BroadcastPlan* plan);

}  // namespace staticllm::mil
