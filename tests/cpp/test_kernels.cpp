// gemm kernels at every SIMD level this CPU has, against a double-precision
// reference, on sizes that are not multiples of the vector widths; and the
// thread pool under concurrent callers.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "mil/cpu_features.h"
#include "mil/half.h"
#include "mil/kernels/activation.h"
#include "mil/kernels/gemm.h"
#include "mil/kernels/gemm_panel_impl.h"
#include "mil/kernels/softmax.h"
#include "mil/thread_pool.h"

using namespace staticllm::mil;

namespace {

using NtKernel = void (*)(const float*, int64_t, int64_t, const void*, WeightType, float*, int64_t, int64_t, int64_t);

std::vector<std::pair<const char*, NtKernel>> nt_kernels() {
  std::vector<std::pair<const char*, NtKernel>> k = {{"portable", gemm_nt_portable}};
#if defined(STATICLLM_X86_SIMD)
  if (simd_level() >= SimdLevel::kAvx2) k.push_back({"avx2", gemm_nt_avx2});
  if (simd_level() >= SimdLevel::kAvx512) k.push_back({"avx512", gemm_nt_avx512});
#endif
  return k;
}

using NnKernel = void (*)(const float*, int64_t, const void*, WeightType, int64_t, float*, int64_t, int64_t);

std::vector<std::pair<const char*, NnKernel>> nn_kernels() {
  std::vector<std::pair<const char*, NnKernel>> k = {{"portable", gemm_nn_portable}};
#if defined(STATICLLM_X86_SIMD)
  if (simd_level() >= SimdLevel::kAvx2) k.push_back({"avx2", gemm_nn_avx2});
  if (simd_level() >= SimdLevel::kAvx512) k.push_back({"avx512", gemm_nn_avx512});
#endif
  return k;
}

}  // namespace

TEST_CASE("gemm_nt matches the reference for fp32 and fp16 weights at every SIMD level", "[kernels]") {
  std::mt19937 gen(7);
  std::normal_distribution<float> dist(0.f, 1.f);
  // M >= 16: the panel path (weight rows transposed W x W, column panels of
  // kPanelCols with partial ones of every vector count, row blocks with
  // every tail length).
  for (auto [M, K, N] : std::vector<std::array<int64_t, 3>>{{1, 37, 13},
                                                            {5, 64, 9},
                                                            {3, 100, 33},
                                                            {9, 17, 4},
                                                            {2, 130, 11},
                                                            {12, 200, 9},
                                                            {16, 5, 70},
                                                            {23, 37, 33},
                                                            {47, 64, 16},
                                                            {20, 33, 100},
                                                            {17, 40, 50}}) {
    std::vector<float> x(M * K), w(N * K);
    std::vector<uint16_t> wh(N * K);
    for (auto& v : x) v = dist(gen);
    for (int64_t i = 0; i < N * K; ++i) {
      wh[i] = float_to_half(dist(gen));
      w[i] = half_to_float(wh[i]);  // same values in both precisions
    }
    for (auto [name, kernel] : nt_kernels()) {
      for (WeightType wt : {WeightType::kF32, WeightType::kF16}) {
        std::vector<float> y(M * N, -1.f);
        kernel(x.data(), M, K, wt == WeightType::kF32 ? static_cast<const void*>(w.data()) : wh.data(), wt, y.data(), N,
               0, N);
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t n = 0; n < N; ++n) {
            double ref = 0;
            for (int64_t k = 0; k < K; ++k) ref += static_cast<double>(x[m * K + k]) * w[n * K + k];
            INFO(name << " M=" << M << " K=" << K << " N=" << N);
            REQUIRE(std::abs(y[m * N + n] - ref) <= 1e-5 * (1 + std::abs(ref)) * std::sqrt(static_cast<double>(K)));
          }
        }
      }
    }
  }
}

TEST_CASE("gemm_nt below the panel path gives a row the same bits whatever M is", "[kernels]") {
  // Decode (M = 1) and a multi-row call must agree exactly on a shared row.
  std::mt19937 gen(9);
  std::normal_distribution<float> dist(0.f, 1.f);
  const int64_t K = 203, N = 7, kMaxM = detail::kPanelMinM - 1;
  std::vector<float> x(kMaxM * K), w(N * K);
  std::vector<uint16_t> wh(N * K);
  for (auto& v : x) v = dist(gen);
  for (int64_t i = 0; i < N * K; ++i) {
    wh[i] = float_to_half(dist(gen));
    w[i] = dist(gen);
  }
  for (auto [name, kernel] : nt_kernels()) {
    for (WeightType wt : {WeightType::kF32, WeightType::kF16}) {
      const void* wp = wt == WeightType::kF32 ? static_cast<const void*>(w.data()) : wh.data();
      std::vector<float> all(kMaxM * N), one(N);
      for (int64_t M = 1; M <= kMaxM; ++M) {
        kernel(x.data(), M, K, wp, wt, all.data(), N, 0, N);
        for (int64_t m = 0; m < M; ++m) {
          kernel(x.data() + m * K, 1, K, wp, wt, one.data(), N, 0, N);
          for (int64_t n = 0; n < N; ++n) {
            INFO(name << " M=" << M << " row " << m << " n=" << n);
            REQUIRE(all[m * N + n] == one[n]);
          }
        }
      }
    }
  }
}

TEST_CASE("gemm_nn matches the reference for fp32 and fp16 right-hand sides at every SIMD level", "[kernels]") {
  std::mt19937 gen(8);
  std::normal_distribution<float> dist(0.f, 1.f);
  // N = 300: more than one 256-column slice, the second one partial.
  // Every row-block tail (up to 8 rows), and column panels whole and partial.
  for (auto [M, K, N] : std::vector<std::array<int64_t, 3>>{{1, 37, 13}, {5, 64, 300}, {3, 9, 7}, {18, 20, 41}}) {
    std::vector<float> x(M * K), b(K * N);
    std::vector<uint16_t> bh(K * N);
    for (auto& v : x) v = dist(gen);
    for (int64_t i = 0; i < K * N; ++i) {
      bh[i] = float_to_half(dist(gen));
      b[i] = half_to_float(bh[i]);
    }
    for (auto [name, kernel] : nn_kernels()) {
      for (WeightType bt : {WeightType::kF32, WeightType::kF16}) {
        const int64_t m0 = M > 1 ? 1 : 0;
        std::vector<float> y(M * N, -1.f);
        kernel(x.data(), K, bt == WeightType::kF32 ? static_cast<const void*>(b.data()) : bh.data(), bt, N, y.data(),
               m0, M);
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t n = 0; n < N; ++n) {
            INFO(name << " M=" << M << " K=" << K << " N=" << N << " y[" << m << "," << n << "]");
            if (m < m0) {
              REQUIRE(y[m * N + n] == -1.f);  // rows outside [m0, m1) untouched
              continue;
            }
            double ref = 0;
            for (int64_t k = 0; k < K; ++k) ref += static_cast<double>(x[m * K + k]) * b[k * N + n];
            REQUIRE(std::abs(y[m * N + n] - ref) <= 1e-5 * (1 + std::abs(ref)) * std::sqrt(static_cast<double>(K)));
          }
        }
      }
    }
  }
}

TEST_CASE("fp16 bulk conversion agrees with the scalar one", "[kernels]") {
  std::vector<float> src = {0.f, -0.f, 1.f, -2.5f, 65504.f, 1e-7f, 3.14159f, 70000.f, -1e-3f, 0.1f};
  std::vector<uint16_t> bulk(src.size());
  float_to_half_n(src.data(), bulk.data(), static_cast<int64_t>(src.size()));
  std::vector<float> back(src.size());
  half_to_float_n(bulk.data(), back.data(), static_cast<int64_t>(src.size()));
  for (size_t i = 0; i < src.size(); ++i) {
    REQUIRE(bulk[i] == float_to_half(src[i]));
    REQUIRE(back[i] == half_to_float(bulk[i]));
  }
  REQUIRE(std::isinf(half_to_float(float_to_half(70000.f))));
}

TEST_CASE("thread pool covers every index once, also with concurrent callers", "[kernels]") {
  ThreadPool pool(2);
  std::atomic<int> wrong{0};  // Catch2 assertions are not thread-safe: count, then check
  auto check = [&pool, &wrong] {
    for (int round = 0; round < 200; ++round) {
      std::vector<std::atomic<int>> hits(1000);
      pool.parallel_for(1000, 16, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[i]++;
      });
      for (auto& h : hits) wrong += h.load() != 1;
    }
  };
  std::thread other(check);
  check();
  other.join();
  REQUIRE(wrong.load() == 0);
  REQUIRE_THROWS_AS(pool.parallel_for(10, 1, [](int64_t, int64_t) { throw std::runtime_error("x"); }),
                    std::runtime_error);
}

TEST_CASE("SIMD level follows CPUID and what the OS saves (XCR0)", "[kernels]") {
  // leaf 1 ECX: FMA, OSXSAVE, AVX, F16C; leaf 7 EBX: AVX2, AVX-512 F/DQ/BW/VL
  const uint32_t avx2_ecx = (1u << 12) | (1u << 27) | (1u << 28) | (1u << 29);
  const uint32_t avx2_ebx = 1u << 5;
  const uint32_t avx512_ebx = avx2_ebx | (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);
  REQUIRE(simd_level_from_cpuid({avx2_ecx, avx512_ebx, 0xe7}) == SimdLevel::kAvx512);
  REQUIRE(simd_level_from_cpuid({avx2_ecx, avx2_ebx, 0x7}) == SimdLevel::kAvx2);
  // AVX-512 in the CPU but its registers not enabled by the OS
  REQUIRE(simd_level_from_cpuid({avx2_ecx, avx512_ebx, 0x7}) == SimdLevel::kAvx2);
  // no F16C (the fp16 conversions of the AVX2 kernels need it)
  REQUIRE(simd_level_from_cpuid({avx2_ecx & ~(1u << 29), avx512_ebx, 0xe7}) == SimdLevel::kPortable);
  // AVX2 present, OS without XSAVE (XCR0 reads as 0)
  REQUIRE(simd_level_from_cpuid({avx2_ecx & ~(1u << 27), avx2_ebx, 0}) == SimdLevel::kPortable);
  REQUIRE(simd_level_from_cpuid({avx2_ecx, avx2_ebx, 0x3}) == SimdLevel::kPortable);
  REQUIRE(simd_level_from_cpuid({}) == SimdLevel::kPortable);
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  // GCC's own detection (which clang 14 lacks for f16c) must agree on this machine.
  __builtin_cpu_init();
  bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  SimdLevel expected = avx512 ? SimdLevel::kAvx512 : avx2 ? SimdLevel::kAvx2 : SimdLevel::kPortable;
  REQUIRE(simd_level_from_cpuid(read_cpuid()) == expected);
#endif
}

TEST_CASE("softmax rows match the double-precision reference at every SIMD level", "[kernels]") {
  using RowKernel = void (*)(const float*, float*, int64_t);
  std::vector<std::pair<const char*, RowKernel>> kernels = {{"portable", softmax_row_portable}};
#if defined(STATICLLM_X86_SIMD)
  if (simd_level() >= SimdLevel::kAvx2) kernels.push_back({"avx2", softmax_row_avx2});
  if (simd_level() >= SimdLevel::kAvx512) kernels.push_back({"avx512", softmax_row_avx512});
#endif
  std::mt19937 gen(9);
  std::normal_distribution<float> dist(0.f, 8.f);
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t n : {1, 7, 8, 15, 16, 17, 33, 300}) {
    std::vector<float> x(n);
    for (auto& v : x) v = dist(gen);
    for (int64_t i = 1; i < n; i += 3) x[i] = -inf;  // masked scores: exactly 0
    if (n > 4) x[4] = -95.f;                         // e^(x - max) below the smallest normal float
    double mx = -inf, sum = 0;
    for (float v : x) mx = std::max<double>(mx, v);
    for (float v : x) sum += std::exp(static_cast<double>(v) - mx);
    for (auto [name, kernel] : kernels) {
      std::vector<float> out(n, -1.f);
      kernel(x.data(), out.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double ref = std::exp(static_cast<double>(x[i]) - mx) / sum;
        INFO(name << " n=" << n << " i=" << i << " x=" << x[i]);
        if (x[i] == -inf) {
          REQUIRE(out[i] == 0.f);
        } else {
          // a few ulp, plus the rounding of x - max in float (relative |x - max| * 2^-24)
          const double tol = ref * (1e-6 + 1.2e-7 * std::abs(x[i] - mx)) + 1e-38;
          REQUIRE(std::abs(out[i] - ref) <= tol);
        }
      }
    }
  }
  for (auto [name, kernel] : kernels) {  // every score masked: NaN, as the naive formula gives
    std::vector<float> x(20, -inf), out(20);
    kernel(x.data(), out.data(), 20);
    INFO(name);
    REQUIRE(std::isnan(out[0]));
    REQUIRE(std::isnan(out[19]));
  }
}

TEST_CASE("silu and sigmoid match the double-precision reference at every SIMD level", "[kernels]") {
  using Kernel = void (*)(const float*, float*, int64_t);
  struct Level {
    const char* name;
    Kernel silu, sigmoid;
  };
  std::vector<Level> levels = {{"portable", silu_n_portable, sigmoid_n_portable}};
#if defined(STATICLLM_X86_SIMD)
  if (simd_level() >= SimdLevel::kAvx2) levels.push_back({"avx2", silu_n_avx2, sigmoid_n_avx2});
  if (simd_level() >= SimdLevel::kAvx512) levels.push_back({"avx512", silu_n_avx512, sigmoid_n_avx512});
#endif
  std::mt19937 gen(4);
  std::normal_distribution<float> dist(0.f, 6.f);
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t n : {1, 7, 8, 15, 16, 17, 33, 300}) {
    std::vector<float> x(n);
    for (auto& v : x) v = dist(gen);
    if (n > 3) x[1] = -120.f, x[2] = 120.f, x[3] = inf;  // saturated exp both ways
    for (const Level& level : levels) {
      std::vector<float> silu(n, -1.f), sigmoid(n, -1.f);
      level.silu(x.data(), silu.data(), n);
      level.sigmoid(x.data(), sigmoid.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(x[i])));
        const double ref = x[i] == inf ? inf : x[i] * s;
        INFO(level.name << " n=" << n << " i=" << i << " x=" << x[i]);
        // a few ulp of the exp and the quotient; tiny results (x -> -inf) to an absolute 1e-30
        REQUIRE(std::abs(sigmoid[i] - s) <= 4e-7 * s + 1e-30);
        if (x[i] == inf) {
          REQUIRE(silu[i] == inf);
        } else {
          REQUIRE(std::abs(silu[i] - ref) <= 4e-7 * std::abs(ref) + 1e-30);
        }
      }
    }
  }
}

TEST_CASE("AlignedVector storage starts on a 64-byte boundary whatever its size", "[kernels]") {
  // malloc aligns large blocks to 16 bytes: the packed panels read a 64-byte
  // vector at a time would straddle two cache lines on every load.
  for (size_t n : {1u, 3u, 17u, 1000u, 1u << 18, (1u << 20) + 5u}) {
    AlignedVector<float> v(n);
    INFO("n=" << n);
    REQUIRE(reinterpret_cast<uintptr_t>(v.data()) % 64 == 0);
    v.resize(n * 2 + 1);  // reallocation keeps the alignment
    REQUIRE(reinterpret_cast<uintptr_t>(v.data()) % 64 == 0);
  }
}
