// Read bandwidth, FMA peak and linear-kernel timings for the benchmarks.
#include "mil/kernels/machine_limits.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "mil/cpu_features.h"
#include "mil/half.h"
#include "mil/kernels/aligned_vector.h"
#include "mil/kernels/compressed.h"
#include "mil/kernels/gemm.h"

namespace staticllm::mil {

namespace {

using Clock = std::chrono::steady_clock;

volatile uint64_t g_sink;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// 12 independent chains of `iters` FMAs per lane; returns the FLOP done.
constexpr int kChains = 12;

// Written once over GCC/Clang vector types: inlined into a function compiled
// for AVX2 or AVX-512, a * b + c becomes one FMA instruction per vector.
template <class V, int LANES>
__attribute__((always_inline)) inline double fma_chains_of(int64_t iters, float* sink) {
  V acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = V{} + static_cast<float>(c);
  const V a = V{} + 0.999f, b = V{} + 0.001f;
  for (int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * a + b;
  for (int c = 1; c < kChains; ++c) acc[0] += acc[c];
  *sink += acc[0][0];
  return 2.0 * LANES * kChains * static_cast<double>(iters);
}

typedef float Vec1 __attribute__((vector_size(4)));
typedef float Vec4 __attribute__((vector_size(16)));
typedef float Vec8 __attribute__((vector_size(32)));
typedef float Vec16 __attribute__((vector_size(64)));

double fma_chains_portable(int64_t iters, float* sink) { return fma_chains_of<Vec1, 1>(iters, sink); }

#if defined(STATICLLM_X86_SIMD)
__attribute__((target("avx2,fma"))) double fma_chains_avx2(int64_t iters, float* sink) {
  return fma_chains_of<Vec8, 8>(iters, sink);
}
__attribute__((target("avx512f"))) double fma_chains_avx512(int64_t iters, float* sink) {
  return fma_chains_of<Vec16, 16>(iters, sink);
}
#endif

double fma_chains(int64_t iters, float* sink) {
#if defined(STATICLLM_X86_SIMD)
  switch (simd_level()) {
    case SimdLevel::kAvx512: return fma_chains_avx512(iters, sink);
    case SimdLevel::kAvx2: return fma_chains_avx2(iters, sink);
    default: break;
  }
#endif
  return fma_chains_portable(iters, sink);
}

// Sum of n floats (n a multiple of 4 vectors) over four independent chains
// of the widest vectors the CPU has. An SSE2 loop of 64-bit integer adds read
// 16 GB/s where these AVX-512 loads read 25 GB/s, same machine, same minute:
// the bandwidth the decode kernels are measured against must be the memory's,
// not a slow reader's.
template <class V>
__attribute__((always_inline)) inline float sum_lines_of(const float* p, int64_t n) {
  constexpr int64_t L = sizeof(V) / sizeof(float);
  V acc[4] = {};
  for (int64_t i = 0; i < n; i += 4 * L)
    for (int c = 0; c < 4; ++c) {
      V v;
      std::memcpy(&v, p + i + c * L, sizeof(V));
      acc[c] += v;
    }
  acc[0] += acc[1] + acc[2] + acc[3];
  float s = 0;
  for (int64_t j = 0; j < L; ++j) s += acc[0][j];
  return s;
}

float sum_lines_portable(const float* p, int64_t n) { return sum_lines_of<Vec4>(p, n); }
#if defined(STATICLLM_X86_SIMD)
__attribute__((target("avx2"))) float sum_lines_avx2(const float* p, int64_t n) { return sum_lines_of<Vec8>(p, n); }
__attribute__((target("avx512f"))) float sum_lines_avx512(const float* p, int64_t n) {
  return sum_lines_of<Vec16>(p, n);
}
#endif

float sum_lines(const float* p, int64_t n) {
#if defined(STATICLLM_X86_SIMD)
  switch (simd_level()) {
    case SimdLevel::kAvx512: return sum_lines_avx512(p, n);
    case SimdLevel::kAvx2: return sum_lines_avx2(p, n);
    default: break;
  }
#endif
  return sum_lines_portable(p, n);
}

template <class F>
double median_seconds(int calls, F&& f) {
  std::vector<double> t;
  for (int i = 0; i < calls; ++i) {
    auto t0 = Clock::now();
    f();
    t.push_back(seconds_since(t0));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// A random weight in one of time_linear_kernel's precisions.
struct BenchWeight {
  // 64-byte aligned, as the bundle's weight blobs and the executor's arena are
  AlignedVector<uint8_t> bytes;  // fp32/fp16 values, or the codes
  AlignedVector<uint16_t> params;
  CompressedWeight cw;
  bool compressed = false;
  WeightType dense_type = WeightType::kF32;
  double weight_bytes = 0;
};

std::unique_ptr<BenchWeight> make_weight(const std::string& precision, int64_t N, int64_t K) {
  auto w = std::make_unique<BenchWeight>();
  std::mt19937 gen(1);
  std::uniform_int_distribution<int> byte(0, 255);
  const int64_t numel = N * K;
  auto random_bytes = [&](size_t n) {
    w->bytes.resize(n);
    for (auto& b : w->bytes) b = static_cast<uint8_t>(byte(gen));
  };
  if (precision == "fp32") {
    std::vector<float> v(static_cast<size_t>(numel));
    std::normal_distribution<float> normal(0.f, 0.02f);
    for (auto& f : v) f = normal(gen);
    w->bytes.resize(v.size() * 4);
    std::memcpy(w->bytes.data(), v.data(), w->bytes.size());
  } else if (precision == "fp16") {
    w->bytes.resize(static_cast<size_t>(numel) * 2);
    std::normal_distribution<float> normal(0.f, 0.02f);
    for (int64_t i = 0; i < numel; ++i) {
      const half_bits h = float_to_half(normal(gen));
      std::memcpy(w->bytes.data() + i * 2, &h, 2);
    }
    w->dense_type = WeightType::kF16;
  } else {
    CompressedWeight& c = w->cw;
    c.type = {DType::kFloat16, {N, K}};
    c.rows = N;
    c.cols = K;
    if (precision == "int8") {
      c.bits = 8;
      c.is_signed = true;
      c.col_block = K;
    } else if (precision == "int4") {
      c.bits = 4;
      c.col_block = 32;
      c.is_signed = true;
    } else if (precision == "lut4") {
      c.kind = CompressedWeight::Kind::kLut;
      c.bits = 4;
      c.row_block = 16;
      c.col_block = K;
    } else {
      throw std::invalid_argument("unknown precision '" + precision + "' (fp32, fp16, int8, int4, lut4)");
    }
    if (N % c.row_block != 0 || K % c.col_block != 0) {
      throw std::invalid_argument(precision + ": N must be a multiple of " + std::to_string(c.row_block) +
                                  " and K of " + std::to_string(c.col_block));
    }
    c.grid_cols = K / c.col_block;
    random_bytes(static_cast<size_t>(numel * c.bits / 8));
    c.codes = w->bytes.data();
    const int64_t per_group = c.kind == CompressedWeight::Kind::kLut ? 16 : 1;
    w->params.resize(static_cast<size_t>(c.groups() * per_group));
    for (auto& p : w->params) p = float_to_half(0.001f * static_cast<float>(byte(gen) - 128));
    if (c.kind == CompressedWeight::Kind::kLut) {
      c.lut = w->params.data();
      c.lut_dtype = DType::kFloat16;
    } else {
      c.scale = w->params.data();
      c.scale_dtype = DType::kFloat16;
    }
    w->compressed = true;
    w->weight_bytes = static_cast<double>(w->bytes.size() + w->params.size() * 2);
    return w;
  }
  w->weight_bytes = static_cast<double>(w->bytes.size());
  return w;
}

}  // namespace

double measure_read_bandwidth(ThreadPool& pool, size_t bytes, int passes) {
  constexpr int64_t kUnit = 64;  // floats per work unit: four 64-byte lines, whole vectors at every width
  const int64_t units = std::max<int64_t>(1, static_cast<int64_t>(bytes / sizeof(float)) / kUnit);
  AlignedVector<float> buf(static_cast<size_t>(units * kUnit));
  pool.parallel_for(units, 1 << 10, [&](int64_t a, int64_t b) {
    std::fill(buf.data() + a * kUnit, buf.data() + b * kUnit, 1.f);  // each thread faults in its share
  });
  std::atomic<int64_t> sink{0};
  double best = 0;
  for (int p = 0; p < passes; ++p) {
    auto t0 = Clock::now();
    pool.parallel_for(units, 1 << 10, [&](int64_t a, int64_t b) {
      sink += static_cast<int64_t>(sum_lines(buf.data() + a * kUnit, (b - a) * kUnit));
    });
    best = std::max(best, static_cast<double>(units * kUnit * sizeof(float)) / seconds_since(t0));
  }
  g_sink = static_cast<uint64_t>(sink.load());  // keeps the sums
  return best;
}

double measure_fma_peak(ThreadPool& pool, int passes) {
  const int threads = pool.size();
  constexpr int64_t kIters = 20'000'000;
  double best = 0;
  for (int p = 0; p < passes; ++p) {
    std::atomic<double> flops{0};
    auto t0 = Clock::now();
    pool.parallel_for(threads, 1, [&](int64_t a, int64_t b) {
      float sink = 0;
      double f = 0;
      for (int64_t i = a; i < b; ++i) f += fma_chains(kIters, &sink);
      if (sink == 42.f) f += 1;  // keeps the chains
      double cur = flops.load();
      while (!flops.compare_exchange_weak(cur, cur + f)) {
      }
    });
    best = std::max(best, flops.load() / seconds_since(t0));
  }
  return best;
}

KernelTiming time_linear_kernel(ThreadPool& pool, const char* precision, int64_t M, int64_t N, int64_t K, int calls) {
  if (M <= 0 || N <= 0 || K <= 0 || calls <= 0) throw std::invalid_argument("M, N, K and calls must be positive");
  std::unique_ptr<BenchWeight> w = make_weight(precision, N, K);
  AlignedVector<float> x(static_cast<size_t>(M * K)), y(static_cast<size_t>(M * N));
  std::normal_distribution<float> normal(0.f, 1.f);
  std::mt19937 gen(2);
  for (auto& v : x) v = normal(gen);
  auto call = [&] {
    parallel_output_rows(&pool, N, M * N * K, [&](int64_t n0, int64_t n1) {
      if (w->compressed) {
        gemm_nt_compressed(x.data(), M, w->cw, y.data(), N, n0, n1);
      } else {
        gemm_nt(x.data(), M, K, w->bytes.data(), w->dense_type, y.data(), N, n0, n1);
      }
    });
  };
  call();  // warm: pages, threads
  KernelTiming t;
  t.seconds = median_seconds(calls, call);
  t.weight_bytes = w->weight_bytes;
  t.flops = 2.0 * static_cast<double>(M * N * K);
  return t;
}

}  // namespace staticllm::mil
