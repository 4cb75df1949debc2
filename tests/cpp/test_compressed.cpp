// Compressed-weight kernels (kernels/compressed.h) at every SIMD level this
// CPU has, plus the 16-lane generic instantiation standing in for AVX-512's
// lane logic, against a dense reference built from the same integer codes:
// every code width and sign, with and without offsets, per channel, per
// block and per grouped channel, on shapes whose rows, blocks and code
// phases are not multiples of the vector widths.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "mil/cpu_features.h"
#include "mil/half.h"
#include "mil/kernels/compressed.h"
#include "mil/kernels/compressed_impl.h"
#include "mil/kernels/isa_generic.h"

using namespace staticllm;
using namespace staticllm::mil;

namespace {

struct Level {
  const char* name;
  std::function<void(const float*, int64_t, const CompressedWeight&, float*, int64_t, int64_t, int64_t)> gemm;
  std::function<void(const CompressedWeight&, int64_t, int64_t, float*)> decode;
};

std::vector<Level> levels() {
  std::vector<Level> l = {
      {"portable", gemm_nt_compressed_portable, decode_compressed_rows_portable},
      {"generic16",
       [](const float* x, int64_t M, const CompressedWeight& w, float* y, int64_t ldy, int64_t n0, int64_t n1) {
         detail::gemm_nt_compressed_impl<IsaGeneric<16>>(x, M, w, y, ldy, n0, n1, gemm_nt_portable);
       },
       [](const CompressedWeight& w, int64_t n0, int64_t n1, float* out) {
         detail::decode_compressed_rows_impl<IsaGeneric<16>>(w, n0, n1, out);
       }},
  };
#if defined(STATICLLM_X86_SIMD)
  if (simd_level() >= SimdLevel::kAvx2) l.push_back({"avx2", gemm_nt_compressed_avx2, decode_compressed_rows_avx2});
  if (simd_level() >= SimdLevel::kAvx512) {
    l.push_back({"avx512", gemm_nt_compressed_avx512, decode_compressed_rows_avx512});
  }
#endif
  return l;
}

// Packs codes of `bits` bits least significant bits first (coremltools' order).
std::vector<uint8_t> pack(const std::vector<int32_t>& codes, int bits) {
  std::vector<uint8_t> out((codes.size() * bits + 7) / 8, 0);
  for (size_t i = 0; i < codes.size(); ++i) {
    uint32_t v = static_cast<uint32_t>(codes[i]) & ((1u << bits) - 1u);
    for (int b = 0; b < bits; ++b) {
      size_t bit = i * bits + b;
      if ((v >> b) & 1u) out[bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
    }
  }
  return out;
}

// A random compressed weight and the dense matrix it stands for.
struct Case {
  CompressedWeight w;
  std::vector<uint8_t> codes;
  std::vector<uint16_t> half_params;
  std::vector<float> float_params;
  std::vector<float> float_offsets;
  std::vector<int8_t> int_offsets;
  std::vector<float> dense;  // rows x cols, computed from the integer codes
};

struct Spec {
  CompressedWeight::Kind kind;
  int bits;
  bool is_signed;
  int64_t rows, cols, row_block, col_block;
  DType param_dtype;  // scale or table
  int offset = 0;     // 0 none, 1 float, 2 integer
};

Case make_case(const Spec& s, std::mt19937& gen) {
  Case c;
  CompressedWeight& w = c.w;
  w.kind = s.kind;
  w.bits = s.bits;
  w.is_signed = s.is_signed;
  w.rows = s.rows;
  w.cols = s.cols;
  w.row_block = s.row_block;
  w.col_block = s.col_block;
  w.grid_cols = s.cols / s.col_block;
  w.type = {DType::kFloat32, {s.rows, s.cols}};
  const int64_t groups = (s.rows / s.row_block) * w.grid_cols;
  const int lo = s.is_signed ? -(1 << (s.bits - 1)) : 0, hi = s.is_signed ? (1 << (s.bits - 1)) - 1 : (1 << s.bits) - 1;
  std::uniform_int_distribution<int> code(lo, hi);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<int32_t> codes(static_cast<size_t>(s.rows * s.cols));
  for (auto& v : codes) v = code(gen);
  c.codes = pack(codes, s.bits);
  w.codes = c.codes.data();
  // Per-group parameters, exactly representable in fp16 so both dtypes agree.
  const int64_t per_group = s.kind == CompressedWeight::Kind::kLut ? (int64_t{1} << s.bits) : 1;
  std::vector<float> params(static_cast<size_t>(groups * per_group));
  for (auto& p : params) p = half_to_float(float_to_half(normal(gen) * 0.1f));
  std::vector<float> offsets(static_cast<size_t>(groups), 0.f);
  if (s.offset == 1) {
    for (auto& o : offsets) o = half_to_float(float_to_half(normal(gen)));
  } else if (s.offset == 2) {
    for (auto& o : offsets) o = static_cast<float>(code(gen));
  }
  if (s.param_dtype == DType::kFloat16) {
    for (float p : params) c.half_params.push_back(float_to_half(p));
  } else {
    c.float_params = params;
  }
  const void* param_ptr =
      s.param_dtype == DType::kFloat16 ? static_cast<const void*>(c.half_params.data()) : c.float_params.data();
  if (s.kind == CompressedWeight::Kind::kLut) {
    w.lut = param_ptr;
    w.lut_dtype = s.param_dtype;
  } else {
    w.scale = param_ptr;
    w.scale_dtype = s.param_dtype;
    if (s.offset == 1) {
      c.float_offsets = offsets;
      w.offset = c.float_offsets.data();
      w.offset_dtype = DType::kFloat32;
    } else if (s.offset == 2) {
      // Unsigned codes reach 255: go through int32 so the byte keeps its bits
      // (a float out of int8's range converted directly is undefined behaviour).
      for (float o : offsets) c.int_offsets.push_back(static_cast<int8_t>(static_cast<int32_t>(o)));
      w.offset = c.int_offsets.data();
      w.offset_dtype = s.is_signed ? DType::kInt8 : DType::kUInt8;
    }
  }
  c.dense.resize(codes.size());
  for (int64_t n = 0; n < s.rows; ++n) {
    for (int64_t k = 0; k < s.cols; ++k) {
      const int64_t g = (n / s.row_block) * w.grid_cols + k / s.col_block;
      const int32_t q = codes[n * s.cols + k];
      c.dense[n * s.cols + k] =
          s.kind == CompressedWeight::Kind::kLut ? params[(g << s.bits) + q] : (q - offsets[g]) * params[g];
    }
  }
  return c;
}

std::vector<Spec> specs() {
  using K = CompressedWeight::Kind;
  std::vector<Spec> out;
  // Scale kinds: int8/uint8/int4/uint4, per channel and per block, offsets none/float/int.
  for (int bits : {8, 4}) {
    for (bool sign : {true, false}) {
      for (int offset : {0, 1, 2}) {
        DType dt = offset == 1 ? DType::kFloat32 : DType::kFloat16;
        out.push_back({K::kScale, bits, sign, 13, 40, 1, 40, dt, offset});  // per channel, 40 = 2.5 AVX2 vectors
        out.push_back({K::kScale, bits, sign, 7, 96, 1, 32, dt, offset});   // blocks of 32
        out.push_back({K::kScale, bits, sign, 5, 72, 1, 24, dt, offset});   // blocks not a multiple of 16
        out.push_back({K::kScale, bits, sign, 6, 36, 2, 12, dt, offset});   // row blocks too
        out.push_back({K::kScale, bits, sign, 10, 64, 2, 32, dt, offset});  // row blocks of whole vectors
      }
    }
    out.push_back({K::kScale, bits, true, 9, 37, 1, 37, DType::kFloat16, 0});  // odd K: unaligned 4-bit rows
    out.push_back({K::kScale, bits, true, 3, 33, 1, 3, DType::kFloat32, 0});   // blocks of 3
  }
  // Tables: 1, 2, 3, 4, 6, 8 bits, per tensor and per grouped channel.
  for (int bits : {1, 2, 3, 4, 6, 8}) {
    out.push_back({K::kLut, bits, false, 11, 64, 11, 64, DType::kFloat16});  // one table
    out.push_back({K::kLut, bits, false, 16, 56, 8, 56, DType::kFloat16});   // channel groups of 8
    out.push_back({K::kLut, bits, false, 9, 50, 3, 25, DType::kFloat32});    // groups along both axes
    out.push_back({K::kLut, bits, false, 5, 21, 1, 21, DType::kFloat32});    // odd K: unaligned rows
  }
  return out;
}

std::string describe(const Spec& s) {
  return std::string(s.kind == CompressedWeight::Kind::kLut ? "lut" : "scale") + " bits=" + std::to_string(s.bits) +
         (s.is_signed ? " signed" : " unsigned") + " " + std::to_string(s.rows) + "x" + std::to_string(s.cols) +
         " blocks " + std::to_string(s.row_block) + "x" + std::to_string(s.col_block) +
         " offset=" + std::to_string(s.offset);
}

}  // namespace

TEST_CASE("compressed rows decode to the dense weight at every SIMD level", "[compressed]") {
  std::mt19937 gen(11);
  for (const Spec& s : specs()) {
    Case c = make_case(s, gen);
    REQUIRE(compressed_kernel_supports(c.w));
    for (int64_t n = 0; n < s.rows; ++n) {
      for (int64_t k = 0; k < s.cols; ++k) {
        INFO(describe(s) << " at " << n << "," << k);
        REQUIRE(c.w.at(n, k) == Approx(c.dense[n * s.cols + k]).margin(1e-6));
      }
    }
    for (const Level& level : levels()) {
      std::vector<float> out(c.dense.size(), -7.f);
      level.decode(c.w, 1, s.rows, out.data());  // from row 1: offsets into the codes
      for (int64_t i = 0; i < (s.rows - 1) * s.cols; ++i) {
        INFO(level.name << " " << describe(s) << " element " << i);
        REQUIRE(out[i] == Approx(c.dense[s.cols + i]).margin(1e-6));
      }
    }
  }
}

TEST_CASE("blocks of compressed columns decode to the dense weight at every SIMD level", "[compressed]") {
  using Block = void (*)(const CompressedWeight&, int64_t, int64_t, int64_t, int64_t, float*);
  std::vector<std::pair<const char*, Block>> kernels = {
      {"portable", decode_compressed_block_portable},
      {"generic16", [](const CompressedWeight& w, int64_t n0, int64_t n1, int64_t c0, int64_t c1, float* out) {
         detail::decode_compressed_block_impl<IsaGeneric<16>>(w, n0, n1, c0, c1, out);
       }}};
#if defined(STATICLLM_X86_SIMD)
  if (simd_level() >= SimdLevel::kAvx2) kernels.push_back({"avx2", decode_compressed_block_avx2});
  if (simd_level() >= SimdLevel::kAvx512) kernels.push_back({"avx512", decode_compressed_block_avx512});
#endif
  std::mt19937 gen(14);
  for (const Spec& s : specs()) {
    Case c = make_case(s, gen);
    // Column ranges starting off a byte and a group boundary, ending inside one.
    for (auto [c0, c1] : std::vector<std::pair<int64_t, int64_t>>{{0, s.cols}, {3, s.cols - 2}, {s.cols / 2, s.cols}}) {
      for (auto [name, kernel] : kernels) {
        std::vector<float> out(static_cast<size_t>(s.rows * (c1 - c0)), -7.f);
        kernel(c.w, 1, s.rows, c0, c1, out.data());
        for (int64_t n = 1; n < s.rows; ++n) {
          for (int64_t k = c0; k < c1; ++k) {
            INFO(name << " " << describe(s) << " columns [" << c0 << ", " << c1 << ") at " << n << "," << k);
            REQUIRE(out[(n - 1) * (c1 - c0) + k - c0] == Approx(c.dense[n * s.cols + k]).margin(1e-6));
          }
        }
      }
    }
  }
}

TEST_CASE("compressed gemm matches the dense product at every SIMD level", "[compressed]") {
  std::mt19937 gen(12);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (const Spec& s : specs()) {
    Case c = make_case(s, gen);
    for (int64_t M : {1, 2, 3, 4, 5, 9, 17}) {  // the fused (M <= 4), tiled and tiled panel (M >= 16) paths
      std::vector<float> x(static_cast<size_t>(M * s.cols));
      for (auto& v : x) v = normal(gen);
      for (const Level& level : levels()) {
        const int64_t n0 = s.rows > 2 ? 1 : 0, ldy = s.rows + 3;
        std::vector<float> y(static_cast<size_t>(M * ldy), -7.f);
        level.gemm(x.data(), M, c.w, y.data(), ldy, n0, s.rows);
        for (int64_t m = 0; m < M; ++m) {
          for (int64_t n = 0; n < ldy; ++n) {
            INFO(level.name << " " << describe(s) << " M=" << M << " y[" << m << "," << n << "]");
            if (n < n0 || n >= s.rows) {
              REQUIRE(y[m * ldy + n] == -7.f);  // outside [n0, n1): untouched
              continue;
            }
            double ref = 0, mag = 0;
            for (int64_t k = 0; k < s.cols; ++k) {
              ref += static_cast<double>(x[m * s.cols + k]) * c.dense[n * s.cols + k];
              mag += std::abs(static_cast<double>(x[m * s.cols + k]) * c.dense[n * s.cols + k]);
            }
            REQUIRE(std::abs(y[m * ldy + n] - ref) <= 1e-6 * (1 + mag));
          }
        }
      }
    }
  }
}

TEST_CASE("a compressed weight materializes to its declared dtype", "[compressed]") {
  std::mt19937 gen(13);
  Spec s{CompressedWeight::Kind::kScale, 4, true, 5, 24, 1, 8, DType::kFloat16, 1};
  Case c = make_case(s, gen);
  c.w.type = {DType::kFloat16, {5, 2, 12}};  // rank 3: rows by the product of the rest
  Tensor t = materialize_compressed(c.w);
  REQUIRE(t.dtype() == DType::kFloat16);
  REQUIRE(t.shape() == Shape{5, 2, 12});
  for (int64_t i = 0; i < 5 * 24; ++i) {
    REQUIRE(half_to_float(t.data_as<uint16_t>()[i]) == half_to_float(float_to_half(c.dense[i])));
  }
}
