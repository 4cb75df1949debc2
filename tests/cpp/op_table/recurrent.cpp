// Op-table entries of runtime/mil/ops/recurrent.cpp against double-precision
// recurrences written from MIL's equations: rnn forward, gru in reverse with
// every step emitted, gru with reset_after (torch's form), lstm with
// peepholes and a cell clip, and a bidirectional lstm.
#include <cmath>
#include <functional>

#include "op_table.h"

namespace staticllm::test::optable {
namespace {

constexpr int64_t S = 3, B = 2, I = 2, H = 2;

double sigmoid(double v) { return 1 / (1 + std::exp(-v)); }

// sum_k w[row * n + k] * v[k]
double dot(const Array& w, int64_t row, const std::vector<double>& v) {
  double acc = 0;
  for (size_t k = 0; k < v.size(); ++k) acc += w.v[row * static_cast<int64_t>(v.size()) + k] * v[k];
  return acc;
}

std::vector<double> x_at(const Array& x, int64_t s, int64_t b) {
  return {x.v.begin() + (s * B + b) * I, x.v.begin() + (s * B + b + 1) * I};
}

double at(const Inputs& in, const std::string& name, int64_t i) { return in.has(name) ? in[name].v[i] : 0.0; }

// Runs `cell(x, h, b)` (returning the new h) over the sequence for each batch
// row; outputs the states in step order (all, or the last) and the final one.
std::vector<Array> run_seq(
    const Inputs& in, bool reverse, bool sequence,
    const std::function<std::vector<double>(const std::vector<double>&, const std::vector<double>&)>& cell) {
  const Array& x = in["x"];
  Array seq{x.dtype, {sequence ? S : 1, B, H}, {}}, last{x.dtype, {B, H}, {}};
  std::vector<std::vector<double>> h(B);
  for (int64_t b = 0; b < B; ++b) h[b] = {in["initial_h"].v.begin() + b * H, in["initial_h"].v.begin() + (b + 1) * H};
  for (int64_t step = 0; step < S; ++step) {
    for (int64_t b = 0; b < B; ++b) {
      h[b] = cell(x_at(x, reverse ? S - 1 - step : step, b), h[b]);
      if (sequence || step == S - 1) seq.v.insert(seq.v.end(), h[b].begin(), h[b].end());
    }
  }
  for (int64_t b = 0; b < B; ++b) last.v.insert(last.v.end(), h[b].begin(), h[b].end());
  return {seq, last};
}

Spec rand(Shape s, uint32_t seed) { return F(s, values_in(shape_numel(s), -1, 1, seed)); }

Entry recurrent(const std::string& type, const std::string& what, int64_t gates) {
  return op(type, what)
      .in("x", rand({S, B, I}, 51))
      .in("initial_h", rand({B, H}, 52))
      .konst("weight_ih", rand({gates * H, I}, 53))
      .konst("weight_hh", rand({gates * H, H}, 54))
      .konst("bias", rand({gates * H}, 55))
      .tol16(1e-2, 1e-2);
}

std::vector<Entry> recurrent_entries() {
  return {
      recurrent("rnn", "forward, tanh, last state", 1).reference([](const Inputs& in) {
        return run_seq(in, false, false, [&](const std::vector<double>& x, const std::vector<double>& h) {
          std::vector<double> n(H);
          for (int64_t j = 0; j < H; ++j)
            n[j] = std::tanh(dot(in["weight_ih"], j, x) + dot(in["weight_hh"], j, h) + at(in, "bias", j));
          return n;
        });
      }),
      recurrent("gru", "reverse, every step", 3)
          .string("direction", "reverse")
          .flag("output_sequence", true)
          .reference([](const Inputs& in) {
            return run_seq(in, true, true, [&](const std::vector<double>& x, const std::vector<double>& h) {
              std::vector<double> n(H), rh(H);
              for (int64_t j = 0; j < H; ++j)
                rh[j] = h[j] * sigmoid(dot(in["weight_ih"], j, x) + dot(in["weight_hh"], j, h) + at(in, "bias", j));
              for (int64_t j = 0; j < H; ++j) {
                double o =
                    std::tanh(dot(in["weight_ih"], H + j, x) + dot(in["weight_hh"], H + j, rh) + at(in, "bias", H + j));
                double z = sigmoid(dot(in["weight_ih"], 2 * H + j, x) + dot(in["weight_hh"], 2 * H + j, h) +
                                   at(in, "bias", 2 * H + j));
                n[j] = (1 - z) * o + z * h[j];
              }
              return n;
            });
          }),
      recurrent("gru", "reset_after with input_bias (torch's GRU)", 3)
          .konst("input_bias", rand({3 * H}, 56))
          .flag("reset_after", true)
          .reference([](const Inputs& in) {
            return run_seq(in, false, false, [&](const std::vector<double>& x, const std::vector<double>& h) {
              std::vector<double> n(H);
              auto gi = [&](int64_t r) { return dot(in["weight_ih"], r, x) + at(in, "input_bias", r); };
              auto gh = [&](int64_t r) { return dot(in["weight_hh"], r, h) + at(in, "bias", r); };
              for (int64_t j = 0; j < H; ++j) {
                double r = sigmoid(gi(j) + gh(j)), z = sigmoid(gi(2 * H + j) + gh(2 * H + j));
                double o = std::tanh(gi(H + j) + r * gh(H + j));
                n[j] = (1 - z) * o + z * h[j];
              }
              return n;
            });
          }),
  };
}

// lstm over the sequence, one direction: returns (states per input position, h, c).
void lstm_dir(const Inputs& in, const std::string& sfx, bool back, int64_t k, int64_t D, Array& seq, Array& hn,
              Array& cn, double clip) {
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> h(in["initial_h"].v.begin() + (b * D + k) * H, in["initial_h"].v.begin() + (b * D + k + 1) * H);
    std::vector<double> c(in["initial_c"].v.begin() + (b * D + k) * H, in["initial_c"].v.begin() + (b * D + k + 1) * H);
    for (int64_t step = 0; step < S; ++step) {
      const int64_t s = back ? S - 1 - step : step;
      std::vector<double> x = x_at(in["x"], s, b), pre(4 * H), nh(H);
      for (int64_t r = 0; r < 4 * H; ++r)
        pre[r] = dot(in["weight_ih" + sfx], r, x) + dot(in["weight_hh" + sfx], r, h) + at(in, "bias" + sfx, r);
      for (int64_t j = 0; j < H; ++j) {
        double i = sigmoid(pre[j] + c[j] * at(in, "peephole" + sfx, j));
        double f = sigmoid(pre[H + j] + c[j] * at(in, "peephole" + sfx, H + j));
        double cnew = std::min(std::max(f * c[j] + i * std::tanh(pre[3 * H + j]), -clip), clip);
        double o = sigmoid(pre[2 * H + j] + cnew * at(in, "peephole" + sfx, 2 * H + j));
        c[j] = cnew;
        nh[j] = o * std::tanh(cnew);
      }
      h = nh;
      for (int64_t j = 0; j < H; ++j) seq.v[((D == 2 ? s : step) * B + b) * D * H + k * H + j] = h[j];
    }
    for (int64_t j = 0; j < H; ++j) {
      hn.v[b * D * H + k * H + j] = h[j];
      cn.v[b * D * H + k * H + j] = c[j];
    }
  }
}

std::vector<Entry> lstm_entries() {
  auto lstm = [](const std::string& what, int64_t D) {
    Entry e = op("lstm", what)
                  .in("x", rand({S, B, I}, 61))
                  .in("initial_h", rand({B, D * H}, 62))
                  .in("initial_c", rand({B, D * H}, 63))
                  .konst("weight_ih", rand({4 * H, I}, 64))
                  .konst("weight_hh", rand({4 * H, H}, 65))
                  .konst("bias", rand({4 * H}, 66))
                  .flag("output_sequence", true)
                  .tol16(1e-2, 1e-2);
    return e;
  };
  auto reference = [](int64_t D, double clip) {
    return [D, clip](const Inputs& in) {
      Array seq{in["x"].dtype, {S, B, D * H}, std::vector<double>(S * B * D * H)};
      Array hn{in["x"].dtype, {B, D * H}, std::vector<double>(B * D * H)}, cn = hn;
      for (int64_t k = 0; k < D; ++k) lstm_dir(in, k == 0 ? "" : "_back", k == 1, k, D, seq, hn, cn, clip);
      return std::vector<Array>{seq, hn, cn};
    };
  };
  return {
      lstm("peepholes and a cell clip of 0.5", 1)
          .konst("peephole", rand({3 * H}, 67))
          .scalar("clip", 0.5)
          .reference(reference(1, 0.5)),
      lstm("bidirectional", 2)
          .konst("weight_ih_back", rand({4 * H, I}, 68))
          .konst("weight_hh_back", rand({4 * H, H}, 69))
          .konst("bias_back", rand({4 * H}, 70))
          .string("direction", "bidirectional")
          .reference(reference(2, 1e30)),
  };
}

[[maybe_unused]] const bool registered = add_entries(recurrent_entries()) && add_entries(lstm_entries());

}  // namespace
}  // namespace staticllm::test::optable
