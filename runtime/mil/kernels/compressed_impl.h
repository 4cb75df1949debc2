// The compressed-weight kernels, written once against a vector interface
// (Isa: IsaGeneric<N>, IsaAvx2, IsaAvx512) and instantiated per ISA file.
//
// A row of W(n, k) is walked in segments that share one group (one scale and
// offset, or one lookup table). Inside a segment, whole vectors of codes are
// expanded in registers; the few elements before the first byte-aligned code
// and after the last whole vector go through the scalar decoder into a
// partial vector. Small M (decode) multiplies the expanded vectors straight
// into accumulators; larger M (prefill) expands a tile of rows into an
// L1/L2-sized buffer once and runs the dense fp32 kernel over all of M.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "mil/half.h"
#include "mil/kernels/compressed.h"
#include "mil/kernels/gemm.h"

namespace staticllm::mil::detail {

inline float load_float(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kFloat16: return half_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::kFloat32: return static_cast<const float*>(p)[i];
    case DType::kInt8: return static_cast<const int8_t*>(p)[i];
    case DType::kUInt8: return static_cast<const uint8_t*>(p)[i];
    default: return 0.f;
  }
}

// The code of element e (= n * cols + k), read bit by bit.
inline int32_t code_at(const CompressedWeight& w, int64_t e) {
  const uint64_t bit = static_cast<uint64_t>(e) * static_cast<uint64_t>(w.bits);
  const uint32_t mask = w.bits >= 32 ? ~0u : (1u << w.bits) - 1u;
  uint32_t word = w.codes[bit / 8];
  if (bit % 8 + w.bits > 8) word |= static_cast<uint32_t>(w.codes[bit / 8 + 1]) << 8;
  uint32_t v = (word >> (bit % 8)) & mask;
  if (w.is_signed && (v >> (w.bits - 1)) != 0) v |= ~mask;
  return static_cast<int32_t>(v);
}

// Expands codes of one group: (code - offset) * scale as code * s + b.
template <class Isa, int BITS, bool SIGNED>
struct ScaleDecoder {
  static constexpr int kBits = BITS;
  typename Isa::F s, b;
  float fs = 0.f, fb = 0.f;

  void begin(const CompressedWeight& w, int64_t g) {
    fs = load_float(w.scale, w.scale_dtype, g);
    fb = w.offset != nullptr ? -load_float(w.offset, w.offset_dtype, g) * fs : 0.f;
    s = Isa::set1(fs);
    b = Isa::set1(fb);
  }
  typename Isa::F vec(const uint8_t* p) const { return Isa::fma(Isa::cvt(Isa::template codes<BITS, SIGNED>(p)), s, b); }
  float value(int32_t code) const { return static_cast<float>(code) * fs + fb; }
};

// Expands codes of one group through its table, held as fp32.
template <class Isa, int BITS>
struct LutDecoder {
  static constexpr int kBits = BITS;
  static constexpr int kEntries = 1 << BITS;
  alignas(64) float table[std::max(kEntries, 64)];
  typename Isa::template Lut<BITS> lut;
  int64_t group = -1;

  void begin(const CompressedWeight& w, int64_t g) {
    if (g == group) return;
    group = g;
    for (int i = 0; i < kEntries; ++i) table[i] = load_float(w.lut, w.lut_dtype, g * kEntries + i);
    for (int i = kEntries; i < std::max(kEntries, 64); ++i) table[i] = 0.f;
    lut = Isa::template make_lut<BITS>(table);
  }
  typename Isa::F vec(const uint8_t* p) const {
    return Isa::template lookup<BITS>(lut, Isa::template codes<BITS, false>(p));
  }
  float value(int32_t code) const { return table[code]; }
};

// Walks rows n .. n + NR - 1 together over k: body(k, wv) for whole vectors,
// part(k, len, wv) for partial ones, wv[r] holding row n + r's weights.
template <class Isa, class Dec, int NR, class Body, class Part>
inline void walk_rows(const CompressedWeight& w, int64_t n, Dec* dec, Body&& body, Part&& part) {
  using F = typename Isa::F;
  constexpr int W = Isa::W;
  constexpr int B = Dec::kBits;
  const int64_t K = w.cols;
  // Whole-vector expansion needs byte-aligned codes at the same phase in every row.
  const bool aligned_rows = (K * B) % 8 == 0;
  auto scalar = [&](int64_t k, int len) {
    alignas(64) float buf[NR][W];
    F wv[NR];
    for (int r = 0; r < NR; ++r) {
      for (int i = 0; i < len; ++i) buf[r][i] = dec[r].value(code_at(w, (n + r) * K + k + i));
      wv[r] = Isa::load_part(buf[r], len);
    }
    part(k, len, wv);
  };
  for (int64_t k0 = 0; k0 < K;) {
    const int64_t gc = k0 / w.col_block;
    const int64_t k1 = std::min(K, (gc + 1) * w.col_block);
    for (int r = 0; r < NR; ++r) dec[r].begin(w, ((n + r) / w.row_block) * w.grid_cols + gc);
    int64_t k = k0;
    if (aligned_rows) {
      int64_t head = 0;
      while (k + head < k1 && ((k + head) * B) % 8 != 0) ++head;
      if (head > 0) scalar(k, static_cast<int>(head));
      k += head;
      for (; k + W <= k1; k += W) {
        F wv[NR];
        for (int r = 0; r < NR; ++r) wv[r] = dec[r].vec(w.codes + ((n + r) * K + k) * B / 8);
        body(k, wv);
      }
    }
    for (; k < k1; k += W) scalar(k, static_cast<int>(std::min<int64_t>(W, k1 - k)));
    k0 = k1;
  }
}

// MB activation rows times NR weight rows, expanded in registers.
template <class Isa, class Dec, int MB, int NR>
void fused_block(const float* x, const CompressedWeight& w, int64_t n, float* y, int64_t ldy) {
  using F = typename Isa::F;
  const int64_t K = w.cols;
  F acc[MB][NR];
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = Isa::zero();
  Dec dec[NR];
  walk_rows<Isa, Dec, NR>(
      w, n, dec,
      [&](int64_t k, const F* wv) {
        for (int m = 0; m < MB; ++m) {
          F xv = Isa::load(x + m * K + k);
          for (int r = 0; r < NR; ++r) acc[m][r] = Isa::fma(xv, wv[r], acc[m][r]);
        }
      },
      [&](int64_t k, int len, const F* wv) {
        for (int m = 0; m < MB; ++m) {
          F xv = Isa::load_part(x + m * K + k, len);
          for (int r = 0; r < NR; ++r) acc[m][r] = Isa::fma(xv, wv[r], acc[m][r]);
        }
      });
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) y[m * ldy + n + r] = Isa::hsum(acc[m][r]);
}

template <class Isa, class Dec, int MB>
void fused_rows(const float* x, const CompressedWeight& w, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  constexpr int NR = MB == 1 ? 4 : 2;  // MB * NR >= 4 independent accumulator chains
  int64_t n = n0;
  for (; n + NR <= n1; n += NR) fused_block<Isa, Dec, MB, NR>(x, w, n, y, ldy);
  for (; n < n1; ++n) fused_block<Isa, Dec, MB, 1>(x, w, n, y, ldy);
}

template <class Isa, class Dec>
void decode_rows(const CompressedWeight& w, int64_t n0, int64_t n1, float* out) {
  using F = typename Isa::F;
  for (int64_t n = n0; n < n1; ++n, out += w.cols) {
    Dec dec[1];
    walk_rows<Isa, Dec, 1>(
        w, n, dec, [&](int64_t k, const F* wv) { Isa::store(out + k, wv[0]); },
        [&](int64_t k, int len, const F* wv) { Isa::store_part(out + k, wv[0], len); });
  }
}

using DenseNt = void (*)(const float*, int64_t, int64_t, const void*, WeightType, float*, int64_t, int64_t, int64_t);

// Rows up to this many go through fused_rows; more share an expanded tile.
constexpr int64_t kFusedMaxM = 4;

template <class Isa, class Dec>
void gemm_nt_rows(const float* x, int64_t M, const CompressedWeight& w, float* y, int64_t ldy, int64_t n0, int64_t n1,
                  DenseNt dense) {
  switch (M) {
    case 1: return fused_rows<Isa, Dec, 1>(x, w, y, ldy, n0, n1);
    case 2: return fused_rows<Isa, Dec, 2>(x, w, y, ldy, n0, n1);
    case 3: return fused_rows<Isa, Dec, 3>(x, w, y, ldy, n0, n1);
    case 4: return fused_rows<Isa, Dec, 4>(x, w, y, ldy, n0, n1);
    default: break;
  }
  // A tile of 12 rows (the dense kernels' 3- and 4-row blocks) per thread.
  constexpr int64_t kTileRows = 12;
  thread_local std::vector<float> tile;
  tile.resize(static_cast<size_t>(kTileRows * w.cols));
  for (int64_t n = n0; n < n1; n += kTileRows) {
    const int64_t nb = std::min(kTileRows, n1 - n);
    decode_rows<Isa, Dec>(w, n, n + nb, tile.data());
    dense(x, M, w.cols, tile.data(), WeightType::kF32, y + n, ldy, 0, nb);
  }
}

template <class T>
struct Tag {
  using type = T;
};

// Calls fn(Tag<Dec>{}) with the decoder for w's kind and code width
// (compressed_kernel_supports() lists the combinations).
template <class Isa, class Fn>
void with_decoder(const CompressedWeight& w, Fn&& fn) {
  if (w.kind == CompressedWeight::Kind::kScale) {
    if (w.bits == 8) {
      return w.is_signed ? fn(Tag<ScaleDecoder<Isa, 8, true>>{}) : fn(Tag<ScaleDecoder<Isa, 8, false>>{});
    }
    return w.is_signed ? fn(Tag<ScaleDecoder<Isa, 4, true>>{}) : fn(Tag<ScaleDecoder<Isa, 4, false>>{});
  }
  switch (w.bits) {
    case 1: return fn(Tag<LutDecoder<Isa, 1>>{});
    case 2: return fn(Tag<LutDecoder<Isa, 2>>{});
    case 3: return fn(Tag<LutDecoder<Isa, 3>>{});
    case 4: return fn(Tag<LutDecoder<Isa, 4>>{});
    case 6: return fn(Tag<LutDecoder<Isa, 6>>{});
    default: return fn(Tag<LutDecoder<Isa, 8>>{});
  }
}

template <class Isa>
void gemm_nt_compressed_impl(const float* x, int64_t M, const CompressedWeight& w, float* y, int64_t ldy, int64_t n0,
                             int64_t n1, DenseNt dense) {
  with_decoder<Isa>(w,
                    [&](auto tag) { gemm_nt_rows<Isa, typename decltype(tag)::type>(x, M, w, y, ldy, n0, n1, dense); });
}

template <class Isa>
void decode_compressed_rows_impl(const CompressedWeight& w, int64_t n0, int64_t n1, float* out) {
  with_decoder<Isa>(w, [&](auto tag) { decode_rows<Isa, typename decltype(tag)::type>(w, n0, n1, out); });
}

}  // namespace staticllm::mil::detail
