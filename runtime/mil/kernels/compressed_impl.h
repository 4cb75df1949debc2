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
#include "mil/kernels/aligned_vector.h"
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

// A per-group parameter (scale, offset, table entry) as float.
template <class Isa>
inline float param(const void* p, DType t, int64_t i) {
  if (t == DType::kFloat16) return Isa::half(static_cast<const uint16_t*>(p)[i]);
  return load_float(p, t, i);
}

// params[i] for i in [i0, i0 + count) as floats (fp16 a vector at a time).
template <class Isa>
void load_params(const void* p, DType t, int64_t i0, int64_t count, float* out) {
  int64_t i = 0;
  if (t == DType::kFloat16) {
    const auto* h = static_cast<const uint16_t*>(p) + i0;
    for (; i + Isa::W <= count; i += Isa::W) Isa::store(out + i, Isa::load_half(h + i));
  }
  for (; i < count; ++i) out[i] = param<Isa>(p, t, i0 + i);
}

// Decoders expand the codes of one group. The fused kernel asks for raw
// values (raw(): SPLIT vectors for SPLIT * W codes) and turns a group's sum
// of x * raw into its contribution once per group (finish()); the row walker
// asks for final values in code order (vec(), value()).
//
// SPLIT 2 (4-bit codes): W bytes give the W even codes, then the W odd ones,
// so the kernel reads x permuted the same way (see permute_pairs).

// (code - offset) * scale = raw * s + b, raw = code + kBias: split 4-bit
// codes come as the ISA reads them fastest (nibble_values: signed codes
// with their sign bit flipped, code + 8, where a conversion is cheaper than
// a 16-entry lookup), and the bias moves into b.
template <class Isa, int BITS, bool SIGNED, int SPLIT>
struct ScaleDecoder {
  using F = typename Isa::F;
  static constexpr int kBits = BITS;
  static constexpr int kSplit = SPLIT;
  static constexpr int kBias = SPLIT == 2 ? Isa::template kNibbleBias<SIGNED> : 0;
  static constexpr bool kGroupScale = true;  // see group_params
  float fs = 0.f, fb = 0.f;

  void begin(const CompressedWeight& w, int64_t g) {
    fs = param<Isa>(w.scale, w.scale_dtype, g);
    const float off = w.offset != nullptr ? param<Isa>(w.offset, w.offset_dtype, g) : 0.f;
    fb = -(off + kBias) * fs;
  }
  // Whether group_params can give a nonzero b (the fused kernels then need sums of x).
  static bool has_bias(const CompressedWeight& w) { return w.offset != nullptr || kBias != 0; }
  // s and b of the `count` groups from g (begin()'s values, made for a whole
  // row at once); returns whether any b is nonzero.
  static bool group_params(const CompressedWeight& w, int64_t g, int64_t count, float* s, float* b) {
    load_params<Isa>(w.scale, w.scale_dtype, g, count, s);
    if (!has_bias(w)) return false;
    if (w.offset != nullptr) load_params<Isa>(w.offset, w.offset_dtype, g, count, b);
    bool any = false;
    for (int64_t i = 0; i < count; ++i) {
      const float off = w.offset != nullptr ? b[i] : 0.f;
      b[i] = -(off + kBias) * s[i];
      any |= b[i] != 0.f;
    }
    return any;
  }
  void raw(const uint8_t* p, F* out) const {
    if constexpr (SPLIT == 2) {
      Isa::template nibble_values<SIGNED>(p, &out[0], &out[1]);
    } else {
      out[0] = Isa::cvt(Isa::template codes<BITS, SIGNED>(p));
    }
  }
  float raw_scalar(int32_t code) const { return static_cast<float>(code + kBias); }
  // acc + s * sum(x * raw) + b * sum(x)
  F finish(F sum_xr, F sum_x, F acc) const {
    return Isa::fma(sum_xr, Isa::set1(fs), Isa::fma(sum_x, Isa::set1(fb), acc));
  }
  F vec(const uint8_t* p) const {
    F r[SPLIT];
    raw(p, r);
    return Isa::fma(r[0], Isa::set1(fs), Isa::set1(fb));
  }
  float value(int32_t code) const { return raw_scalar(code) * fs + fb; }
};

// Table lookups: raw values are final.
template <class Isa, int BITS, int SPLIT>
struct LutDecoder {
  using F = typename Isa::F;
  static constexpr int kBits = BITS;
  static constexpr int kSplit = SPLIT;
  static constexpr int kEntries = 1 << BITS;
  static constexpr bool kGroupScale = false;
  alignas(64) float table[std::max(kEntries, 64)];
  typename Isa::template Lut<BITS> lut;
  int64_t group = -1;

  void begin(const CompressedWeight& w, int64_t g) {
    if (g == group) return;
    group = g;
    for (int i = 0; i < kEntries; ++i) table[i] = param<Isa>(w.lut, w.lut_dtype, g * kEntries + i);
    for (int i = kEntries; i < std::max(kEntries, 64); ++i) table[i] = 0.f;
    lut = Isa::template make_lut<BITS>(table);
  }
  void raw(const uint8_t* p, F* out) const {
    if constexpr (SPLIT == 2) {
      Isa::nibble_lookup(p, lut, &out[0], &out[1]);
    } else {
      out[0] = Isa::template lookup<BITS>(lut, Isa::template codes<BITS, false>(p));
    }
  }
  float raw_scalar(int32_t code) const { return table[code]; }
  static bool has_bias(const CompressedWeight&) { return false; }
  F scaled(F sum_xr, F acc) const { return Isa::add(acc, sum_xr); }
  F finish(F sum_xr, F /*sum_x*/, F acc) const { return Isa::add(acc, sum_xr); }
  F vec(const uint8_t* p) const {
    F r[SPLIT];
    raw(p, r);
    return r[0];
  }
  float value(int32_t code) const { return table[code]; }
};

// out[r] = expand(r, code) for the len (< W) codes of row n + r from column
// k, read one at a time (where whole-vector expansion cannot start or end).
template <class Isa, int NR, class Expand>
inline void partial_vectors(const CompressedWeight& w, int64_t n, int64_t k, int len, Expand&& expand,
                            typename Isa::F* out) {
  alignas(64) float buf[NR][Isa::W];
  for (int r = 0; r < NR; ++r) {
    for (int i = 0; i < len; ++i) buf[r][i] = expand(r, code_at(w, (n + r) * w.cols + k + i));
    out[r] = Isa::load_part(buf[r], len);
  }
}

// Walks rows n .. n + NR - 1 together over columns k in [c0, c1) in code
// order (decoders with SPLIT 1): body(k, wv) for whole vectors, part(k, len,
// wv) for partial ones, wv[r] holding row n + r's weights.
// Hands `scalar` the elements from k up to the first whose code starts on a
// byte (never past k1), so the vector loop that follows reads whole bytes;
// returns where that loop starts.
template <class Scalar>
inline int64_t to_byte_boundary(int64_t k, int64_t k1, int bits, Scalar&& scalar) {
  int64_t head = 0;
  while (k + head < k1 && ((k + head) * bits) % 8 != 0) ++head;
  if (head > 0) scalar(k, static_cast<int>(head));
  return k + head;
}

template <class Isa, class Dec, int NR, class Body, class Part>
inline void walk_rows(const CompressedWeight& w, int64_t n, int64_t c0, int64_t c1, Dec* dec, Body&& body,
                      Part&& part) {
  using F = typename Isa::F;
  constexpr int W = Isa::W;
  constexpr int B = Dec::kBits;
  static_assert(Dec::kSplit == 1, "the walker reads codes in order");
  const int64_t K = w.cols;
  // Whole-vector expansion needs byte-aligned codes at the same phase in every row.
  const bool aligned_rows = (K * B) % 8 == 0;
  auto scalar = [&](int64_t k, int len) {
    F wv[NR];
    partial_vectors<Isa, NR>(
        w, n, k, len, [&](int r, int32_t code) { return dec[r].value(code); }, wv);
    part(k, len, wv);
  };
  for (int64_t k0 = c0; k0 < c1;) {
    const int64_t gc = k0 / w.col_block;
    const int64_t k1 = std::min(c1, (gc + 1) * w.col_block);
    for (int r = 0; r < NR; ++r) dec[r].begin(w, ((n + r) / w.row_block) * w.grid_cols + gc);
    int64_t k = k0;
    if (aligned_rows) {
      k = to_byte_boundary(k, k1, B, scalar);
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

// Fetches the codes of the next NR rows (contiguous after rows n .. n + NR - 1)
// at the pace these are read: `done` bytes of each row read so far, `step`
// more now. Decode reads every weight once, in rows too short for the
// hardware prefetcher to lock on to.
template <int NR>
inline void prefetch_next_rows(const uint8_t* next, int64_t done, int step) {
  for (int b = 0; b < NR * step; b += 64) __builtin_prefetch(next + done * NR + b);
}

// MB activation rows times NR weight rows, expanded in registers. Per group
// (segment of a row sharing scale and offset, or table), sums of x * raw and
// of x accumulate per vector lane; the group's scale and offset apply once
// at its end. `xp` is x with each 2W-element chunk in the order of SPLIT 2.
template <class Isa, class Dec, int MB, int NR>
void fused_block(const float* x, const float* xp, const CompressedWeight& w, int64_t n, float* y, int64_t ldy) {
  using F = typename Isa::F;
  constexpr int W = Isa::W;
  constexpr int B = Dec::kBits;
  constexpr int S = Dec::kSplit;
  const int64_t K = w.cols;
  const bool aligned_rows = (K * B) % 8 == 0;
  const uint8_t* rows[NR];
  for (int r = 0; r < NR; ++r) rows[r] = w.codes + (n + r) * K * B / 8;  // used only when aligned
  const uint8_t* next = w.codes + (n + NR) * K * B / 8;
  F acc[MB][NR];
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = Isa::zero();
  Dec dec[NR];
  for (int64_t k0 = 0; k0 < K;) {
    const int64_t gc = k0 / w.col_block;
    const int64_t k1 = std::min(K, (gc + 1) * w.col_block);
    for (int r = 0; r < NR; ++r) dec[r].begin(w, ((n + r) / w.row_block) * w.grid_cols + gc);
    F sxr[MB][NR], sx[MB];
    for (int m = 0; m < MB; ++m) {
      sx[m] = Isa::zero();
      for (int r = 0; r < NR; ++r) sxr[m][r] = Isa::zero();
    }
    // Elements one at a time (before the first byte-aligned code, after the last vector).
    auto scalar = [&](int64_t k, int len) {
      F raw[NR];
      partial_vectors<Isa, NR>(
          w, n, k, len, [&](int r, int32_t code) { return dec[r].raw_scalar(code); }, raw);
      for (int m = 0; m < MB; ++m) {
        F xv = Isa::load_part(x + m * K + k, len);
        sx[m] = Isa::add(sx[m], xv);
        for (int r = 0; r < NR; ++r) sxr[m][r] = Isa::fma(xv, raw[r], sxr[m][r]);
      }
    };
    int64_t k = k0;
    if (aligned_rows) {
      k = to_byte_boundary(k, k1, B, scalar);
      const float* xs = S == 2 ? xp : x;
      for (; k + S * W <= k1; k += S * W) {
        prefetch_next_rows<NR>(next, k * B / 8, S * W * B / 8);
        F raw[NR][S];
        for (int r = 0; r < NR; ++r) dec[r].raw(rows[r] + k * B / 8, raw[r]);
        for (int m = 0; m < MB; ++m) {
          for (int j = 0; j < S; ++j) {
            F xv = Isa::load(xs + m * K + k + j * W);
            sx[m] = Isa::add(sx[m], xv);
            for (int r = 0; r < NR; ++r) sxr[m][r] = Isa::fma(xv, raw[r][j], sxr[m][r]);
          }
        }
      }
    }
    for (; k < k1; k += W) scalar(k, static_cast<int>(std::min<int64_t>(W, k1 - k)));
    for (int m = 0; m < MB; ++m)
      for (int r = 0; r < NR; ++r) acc[m][r] = dec[r].finish(sxr[m][r], sx[m], acc[m][r]);
    k0 = k1;
  }
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) y[m * ldy + n + r] = Isa::hsum(acc[m][r]);
}

// Whether every group is a run of whole SPLIT * W-code vectors on
// byte-aligned rows (the layouts the exporters write), for fused_block_whole.
template <class Isa, int SPLIT>
bool whole_groups(const CompressedWeight& w, int bits) {
  return (w.cols * bits) % 8 == 0 && w.col_block % (SPLIT * Isa::W) == 0;
}

// The s and b of every group of rows [n0, n1) (Dec::group_params), made once
// per call: group g's are s[g - first] and b[g - first].
struct GroupParams {
  const float* s = nullptr;
  const float* b = nullptr;
  int64_t first = 0;
  bool any_bias = false;
};

template <class Dec>
GroupParams group_params(const CompressedWeight& w, int64_t n0, int64_t n1) {
  thread_local std::vector<float> buf;
  const int64_t first = (n0 / w.row_block) * w.grid_cols;
  const int64_t count = ((n1 - 1) / w.row_block + 1) * w.grid_cols - first;
  buf.resize(static_cast<size_t>(2 * count));
  GroupParams p;
  p.s = buf.data();
  p.b = buf.data() + count;
  p.first = first;
  p.any_bias = Dec::group_params(w, first, count, buf.data(), buf.data() + count);
  return p;
}

// fused_block for whole_groups() weights: no partial vectors, and no sums of
// x in the inner loop: the offset term of group gc is b times
// xsum[m * grid_cols + gc], the sum of x over the group, made once per call.
// Scale decoders read every group's s and b from `params` (GroupParams), so
// a group ends in one FMA with a scale read from memory and the offset terms
// are summed after the row.
template <class Isa, class Dec, int MB, int NR>
void fused_block_whole(const float* xs, const float* xsum, const CompressedWeight& w, int64_t n, float* y, int64_t ldy,
                       const GroupParams& params) {
  using F = typename Isa::F;
  constexpr int W = Isa::W;
  constexpr int B = Dec::kBits;
  constexpr int S = Dec::kSplit;
  const int64_t K = w.cols, G = w.grid_cols, cb = w.col_block;
  const uint8_t* rows[NR];
  int64_t group_row[NR];
  for (int r = 0; r < NR; ++r) {
    rows[r] = w.codes + (n + r) * K * B / 8;
    group_row[r] = ((n + r) / w.row_block) * G;
  }
  const uint8_t* next = w.codes + (n + NR) * K * B / 8;
  F acc[MB][NR];
  float bias[MB][NR] = {};
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = Isa::zero();
  Dec dec[NR];
  for (int64_t gc = 0; gc < G; ++gc) {
    if constexpr (!Dec::kGroupScale) {
      for (int r = 0; r < NR; ++r) dec[r].begin(w, group_row[r] + gc);
    }
    F sxr[MB][NR];
    for (int m = 0; m < MB; ++m)
      for (int r = 0; r < NR; ++r) sxr[m][r] = Isa::zero();
    for (int64_t k = gc * cb; k < (gc + 1) * cb; k += S * W) {
      prefetch_next_rows<NR>(next, k * B / 8, S * W * B / 8);
      F raw[NR][S];
      for (int r = 0; r < NR; ++r) dec[r].raw(rows[r] + k * B / 8, raw[r]);
      for (int m = 0; m < MB; ++m) {
        for (int j = 0; j < S; ++j) {
          F xv = Isa::load(xs + m * K + k + j * W);
          for (int r = 0; r < NR; ++r) sxr[m][r] = Isa::fma(xv, raw[r][j], sxr[m][r]);
        }
      }
    }
    for (int m = 0; m < MB; ++m) {
      for (int r = 0; r < NR; ++r) {
        if constexpr (Dec::kGroupScale) {
          acc[m][r] = Isa::fma(sxr[m][r], Isa::set1(params.s[group_row[r] - params.first + gc]), acc[m][r]);
        } else {
          acc[m][r] = dec[r].scaled(sxr[m][r], acc[m][r]);
        }
      }
    }
  }
  if constexpr (Dec::kGroupScale) {
    if (params.any_bias) {
      for (int m = 0; m < MB; ++m)
        for (int r = 0; r < NR; ++r)
          for (int64_t gc = 0; gc < G; ++gc)
            bias[m][r] += params.b[group_row[r] - params.first + gc] * xsum[m * G + gc];
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) y[m * ldy + n + r] = Isa::hsum(acc[m][r]) + bias[m][r];
}

// `whole`: w is whole_groups(), and xsum holds the sums of x over groups if
// the decoder has_bias().
template <class Isa, class Dec, int MB>
void fused_rows(const float* x, const float* xp, bool whole, const float* xsum, const CompressedWeight& w, float* y,
                int64_t ldy, int64_t n0, int64_t n1) {
  constexpr int NR = MB == 1 ? 4 : MB == 2 ? 2 : 1;  // MB * NR >= 3 independent accumulator chains
  int64_t n = n0;
  if (whole) {
    const float* xs = Dec::kSplit == 2 ? xp : x;
    GroupParams params;
    if constexpr (Dec::kGroupScale) params = group_params<Dec>(w, n0, n1);
    for (; n + NR <= n1; n += NR) fused_block_whole<Isa, Dec, MB, NR>(xs, xsum, w, n, y, ldy, params);
    for (; n < n1; ++n) fused_block_whole<Isa, Dec, MB, 1>(xs, xsum, w, n, y, ldy, params);
    return;
  }
  for (; n + NR <= n1; n += NR) fused_block<Isa, Dec, MB, NR>(x, xp, w, n, y, ldy);
  for (; n < n1; ++n) fused_block<Isa, Dec, MB, 1>(x, xp, w, n, y, ldy);
}

// x's rows with every whole 2W-element chunk reordered as its even
// elements, then its odd ones (the order of 4-bit codes under SPLIT 2).
template <int W>
void permute_pairs(const float* x, int64_t M, int64_t K, float* out) {
  for (int64_t m = 0; m < M; ++m) {
    const float* src = x + m * K;
    float* dst = out + m * K;
    int64_t c = 0;
    for (; c + 2 * W <= K; c += 2 * W) {
      for (int j = 0; j < W; ++j) {
        dst[c + j] = src[c + 2 * j];
        dst[c + W + j] = src[c + 2 * j + 1];
      }
    }
    for (; c < K; ++c) dst[c] = src[c];
  }
}

// out[(n - n0) * (c1 - c0) + k - c0] = W(n, k) for n in [n0, n1), k in [c0, c1).
template <class Isa, class Dec>
void decode_rows(const CompressedWeight& w, int64_t n0, int64_t n1, int64_t c0, int64_t c1, float* out) {
  using F = typename Isa::F;
  for (int64_t n = n0; n < n1; ++n, out += c1 - c0) {
    Dec dec[1];
    walk_rows<Isa, Dec, 1>(
        w, n, c0, c1, dec, [&](int64_t k, const F* wv) { Isa::store(out + (k - c0), wv[0]); },
        [&](int64_t k, int len, const F* wv) { Isa::store_part(out + (k - c0), wv[0], len); });
  }
}

using DenseNt = void (*)(const float*, int64_t, int64_t, const void*, WeightType, float*, int64_t, int64_t, int64_t);

// Rows up to this many go through fused_rows; more share an expanded tile.
constexpr int64_t kFusedMaxM = 4;

// Fused products for small M (Dec may split codes).
template <class Isa, class Dec>
void fused_gemm(const float* x, int64_t M, const CompressedWeight& w, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  const float* xp = x;
  if constexpr (Dec::kSplit == 2) {
    thread_local AlignedVector<float> permuted;
    permuted.resize(static_cast<size_t>(M * w.cols));
    permute_pairs<Isa::W>(x, M, w.cols, permuted.data());
    xp = permuted.data();
  }
  const bool whole = whole_groups<Isa, Dec::kSplit>(w, Dec::kBits);
  const float* xsum = nullptr;
  if (whole && Dec::has_bias(w)) {
    thread_local std::vector<float> sums;
    const int64_t G = w.grid_cols;
    sums.resize(static_cast<size_t>(M * G));
    // Group by group, k in order (no division per element: this runs for
    // every chunk of every decode linear).
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t g = 0; g < G; ++g) {
        const float* xm = x + m * w.cols;
        float s = 0.f;
        for (int64_t k = g * w.col_block; k < std::min(w.cols, (g + 1) * w.col_block); ++k) s += xm[k];
        sums[m * G + g] = s;
      }
    }
    xsum = sums.data();
  }
  switch (M) {
    case 1: return fused_rows<Isa, Dec, 1>(x, xp, whole, xsum, w, y, ldy, n0, n1);
    case 2: return fused_rows<Isa, Dec, 2>(x, xp, whole, xsum, w, y, ldy, n0, n1);
    case 3: return fused_rows<Isa, Dec, 3>(x, xp, whole, xsum, w, y, ldy, n0, n1);
    default: return fused_rows<Isa, Dec, 4>(x, xp, whole, xsum, w, y, ldy, n0, n1);
  }
}

// Larger M: a tile of kWholePanelCols rows (whole panels of the dense
// kernels) per thread, expanded once and multiplied by all of x.
template <class Isa, class Dec>
void tiled_gemm(const float* x, int64_t M, const CompressedWeight& w, float* y, int64_t ldy, int64_t n0, int64_t n1,
                DenseNt dense) {
  constexpr int64_t kTileRows = kWholePanelCols;
  thread_local AlignedVector<float> tile;
  tile.resize(static_cast<size_t>(kTileRows * w.cols));
  for (int64_t n = n0; n < n1; n += kTileRows) {
    const int64_t nb = std::min(kTileRows, n1 - n);
    decode_rows<Isa, Dec>(w, n, n + nb, 0, w.cols, tile.data());
    dense(x, M, w.cols, tile.data(), WeightType::kF32, y + n, ldy, 0, nb);
  }
}

template <class T>
struct Tag {
  using type = T;
};

// Calls fn(Tag<Dec>{}) with the decoder for w's kind and code width
// (compressed_kernel_supports() lists the combinations). SPLIT 2 needs
// 4-bit rows starting on a byte and groups of whole 2W-code chunks.
template <class Isa, int SPLIT, class Fn>
void with_decoder(const CompressedWeight& w, Fn&& fn) {
  if (w.kind == CompressedWeight::Kind::kScale) {
    if (w.bits == 8) {
      return w.is_signed ? fn(Tag<ScaleDecoder<Isa, 8, true, 1>>{}) : fn(Tag<ScaleDecoder<Isa, 8, false, 1>>{});
    }
    return w.is_signed ? fn(Tag<ScaleDecoder<Isa, 4, true, SPLIT>>{}) : fn(Tag<ScaleDecoder<Isa, 4, false, SPLIT>>{});
  }
  switch (w.bits) {
    case 1: return fn(Tag<LutDecoder<Isa, 1, 1>>{});
    case 2: return fn(Tag<LutDecoder<Isa, 2, 1>>{});
    case 3: return fn(Tag<LutDecoder<Isa, 3, 1>>{});
    case 4: return fn(Tag<LutDecoder<Isa, 4, SPLIT>>{});
    case 6: return fn(Tag<LutDecoder<Isa, 6, 1>>{});
    default: return fn(Tag<LutDecoder<Isa, 8, 1>>{});
  }
}

template <class Isa>
bool can_split(const CompressedWeight& w) {
  return w.bits == 4 && w.cols % 2 == 0 && w.col_block % (2 * Isa::W) == 0;
}

template <class Isa>
void gemm_nt_compressed_impl(const float* x, int64_t M, const CompressedWeight& w, float* y, int64_t ldy, int64_t n0,
                             int64_t n1, DenseNt dense) {
  if (M > kFusedMaxM) {
    return with_decoder<Isa, 1>(
        w, [&](auto tag) { tiled_gemm<Isa, typename decltype(tag)::type>(x, M, w, y, ldy, n0, n1, dense); });
  }
  auto fused = [&](auto tag) { fused_gemm<Isa, typename decltype(tag)::type>(x, M, w, y, ldy, n0, n1); };
  if (can_split<Isa>(w)) return with_decoder<Isa, 2>(w, fused);
  with_decoder<Isa, 1>(w, fused);
}

template <class Isa>
void decode_compressed_block_impl(const CompressedWeight& w, int64_t n0, int64_t n1, int64_t c0, int64_t c1,
                                  float* out) {
  with_decoder<Isa, 1>(w, [&](auto tag) { decode_rows<Isa, typename decltype(tag)::type>(w, n0, n1, c0, c1, out); });
}

template <class Isa>
void decode_compressed_rows_impl(const CompressedWeight& w, int64_t n0, int64_t n1, float* out) {
  decode_compressed_block_impl<Isa>(w, n0, n1, 0, w.cols, out);
}

}  // namespace staticllm::mil::detail
