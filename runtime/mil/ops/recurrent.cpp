// Recurrent layers over x [seq, batch, input]: rnn, gru (iOS18 reset_after
// and input_bias included) and lstm (peepholes, cell clip, bidirectional).
// Gates follow MIL's weight layouts (gru: reset, output, update; lstm:
// input, forget, output, cell). A reverse direction walks the sequence from
// its end and emits its states in that order; the backward half of a
// bidirectional lstm is aligned to input positions (as torch's). fp16 is
// read and written as such; the recurrence runs in fp32.
#include <cmath>

#include "mil/ops/elementwise_util.h"

namespace staticllm::mil {

namespace {

using Act = float (*)(float);

float act_sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }
float act_tanh(float v) { return std::tanh(v); }
float act_relu(float v) { return v > 0 ? v : 0.0f; }
float act_hard_sigmoid(float v) { return std::min(std::max(0.2f * v + 0.5f, 0.0f), 1.0f); }
float act_linear(float v) { return v; }

Act read_act(const OpPlanContext& ctx, const char* param, const char* fallback) {
  std::string name = ctx.has(param) ? ctx.const_string(param) : fallback;
  if (name == "sigmoid") return act_sigmoid;
  if (name == "tanh" || name == "scaled_tanh") return act_tanh;
  if (name == "relu") return act_relu;
  if (name == "hard_sigmoid" || name == "sigmoid_hard") return act_hard_sigmoid;
  if (name == "linear") return act_linear;
  ctx.fail(std::string(param) + " '" + name + "' is not supported");
  return act_linear;  // not reached
}

// y[r] = sum_k w[r * n + k] * v[k] (+ y's value when `add`)
void matvec(const float* w, const float* v, int64_t rows, int64_t n, float* y, bool add) {
  for (int64_t r = 0; r < rows; ++r) {
    float acc = add ? y[r] : 0.0f;
    for (int64_t k = 0; k < n; ++k) acc += w[r * n + k] * v[k];
    y[r] = acc;
  }
}

// A constant of `n` floats, or zeros when absent.
std::vector<float> floats_or_zero(const OpPlanContext& ctx, const std::string& param, int64_t n) {
  if (!ctx.has(param)) return std::vector<float>(static_cast<size_t>(n), 0.f);
  std::vector<float> v = const_floats(ctx, param);
  if (static_cast<int64_t>(v.size()) != n) ctx.fail("'" + param + "' must hold " + std::to_string(n) + " values");
  return v;
}

std::vector<float> weights(const OpPlanContext& ctx, const std::string& param, int64_t rows, int64_t cols) {
  if (ctx.type(param).shape != Shape{rows, cols}) {
    ctx.fail("'" + param + "' must be " + shape_to_string({rows, cols}) + ", got " +
             shape_to_string(ctx.type(param).shape));
  }
  return const_floats(ctx, param);
}

struct Dims {
  int64_t S = 0, B = 0, I = 0, H = 0;
};

Dims read_dims(const OpPlanContext& ctx, int64_t gates, int64_t directions) {
  const ValueType& xt = ctx.type("x");
  if (xt.shape.size() != 3 || !is_float_dtype(xt.dtype)) ctx.fail("x must be a float [seq, batch, input] tensor");
  Dims d{xt.shape[0], xt.shape[1], xt.shape[2], 0};
  const Shape& ws = ctx.type("weight_ih").shape;
  if (ws.size() != 2 || ws[0] % gates != 0) ctx.fail("weight_ih must be [" + std::to_string(gates) + " * H, input]");
  d.H = ws[0] / gates;
  if (ctx.type("initial_h").shape != Shape{d.B, directions * d.H})
    ctx.fail("initial_h must be [batch, directions * H]");
  return d;
}

bool reversed(const OpPlanContext& ctx) {
  std::string dir = ctx.has("direction") ? ctx.const_string("direction") : "forward";
  if (dir != "forward" && dir != "reverse") ctx.fail("direction must be forward or reverse, got '" + dir + "'");
  return dir == "reverse";
}

// Output shapes: the sequence (or its last state) and the final state.
std::vector<ValueType> seq_outputs(DType t, const Dims& d, int64_t width, bool sequence, int extra_states) {
  std::vector<ValueType> outs{{t, {sequence ? d.S : 1, d.B, width}}};
  for (int i = 0; i < extra_states; ++i) outs.push_back({t, {d.B, width}});
  return outs;
}

PlannedOp build_rnn(OpPlanContext& ctx) {
  const Dims d = read_dims(ctx, 1, 1);
  const std::vector<float> wi = weights(ctx, "weight_ih", d.H, d.I), wh = weights(ctx, "weight_hh", d.H, d.H);
  const std::vector<float> bias = floats_or_zero(ctx, "bias", d.H);
  const bool reverse = reversed(ctx), sequence = ctx.const_bool_or("output_sequence", false);
  const Act act = read_act(ctx, "activation", "tanh");
  const DType t = ctx.type("x").dtype;
  int xs = ctx.input("x"), hs = ctx.input("initial_h");
  PlannedOp op;
  op.outputs = seq_outputs(t, d, d.H, sequence, 1);
  op.scratch_bytes = static_cast<size_t>(d.S * d.B * d.I + d.B * d.H * 2 + d.H) * sizeof(float);
  op.run = [=](const KernelCall& call) {
    auto* x = static_cast<float*>(call.scratch);
    float* h = x + d.S * d.B * d.I;
    float* pre = h + d.B * d.H;
    const float* xv = floats_of(call.in(xs), x);
    const float* h0 = floats_of(call.in(hs), pre + d.H);
    std::copy(h0, h0 + d.B * d.H, h);
    for (int64_t step = 0; step < d.S; ++step) {
      const int64_t s = reverse ? d.S - 1 - step : step;
      for (int64_t b = 0; b < d.B; ++b) {
        float* hb = h + b * d.H;
        std::copy(bias.begin(), bias.end(), pre);
        matvec(wi.data(), xv + (s * d.B + b) * d.I, d.H, d.I, pre, true);
        matvec(wh.data(), hb, d.H, d.H, pre, true);
        for (int64_t k = 0; k < d.H; ++k) hb[k] = act(pre[k]);
        if (sequence) store_run<float>(t, call.out(0).data(), (step * d.B + b) * d.H, d.H, hb);
      }
    }
    if (!sequence) store_run<float>(t, call.out(0).data(), 0, d.B * d.H, h);
    store_run<float>(t, call.out(1).data(), 0, d.B * d.H, h);
  };
  return op;
}

PlannedOp build_gru(OpPlanContext& ctx) {
  const Dims d = read_dims(ctx, 3, 1);
  const int64_t H = d.H;
  const std::vector<float> wi = weights(ctx, "weight_ih", 3 * H, d.I), wh = weights(ctx, "weight_hh", 3 * H, H);
  const std::vector<float> hb = floats_or_zero(ctx, "bias", 3 * H), ib = floats_or_zero(ctx, "input_bias", 3 * H);
  const bool reverse = reversed(ctx), sequence = ctx.const_bool_or("output_sequence", false);
  const bool reset_after = ctx.const_bool_or("reset_after", false);
  const Act gate = read_act(ctx, "recurrent_activation", "sigmoid"), act = read_act(ctx, "activation", "tanh");
  const DType t = ctx.type("x").dtype;
  int xs = ctx.input("x"), hs = ctx.input("initial_h");
  PlannedOp op;
  op.outputs = seq_outputs(t, d, H, sequence, 1);
  // x, h, input part [3H], hidden part [3H], r * h [H]
  op.scratch_bytes = static_cast<size_t>(d.S * d.B * d.I + d.B * H + 7 * H + d.B * H) * sizeof(float);
  op.run = [=](const KernelCall& call) {
    auto* x = static_cast<float*>(call.scratch);
    float* h = x + d.S * d.B * d.I;
    float* gi = h + d.B * H;
    float* gh = gi + 3 * H;
    float* rh = gh + 3 * H;
    const float* xv = floats_of(call.in(xs), x);
    const float* h0 = floats_of(call.in(hs), rh + H);
    std::copy(h0, h0 + d.B * H, h);
    for (int64_t step = 0; step < d.S; ++step) {
      const int64_t s = reverse ? d.S - 1 - step : step;
      for (int64_t b = 0; b < d.B; ++b) {
        float* hv = h + b * H;
        for (int64_t k = 0; k < 3 * H; ++k) gi[k] = ib[k] + (reset_after ? 0.f : hb[k]);
        matvec(wi.data(), xv + (s * d.B + b) * d.I, 3 * H, d.I, gi, true);
        if (reset_after) {  // o = act(Wx + ib + r * (R h + b)), torch's GRU
          std::copy(hb.begin(), hb.end(), gh);
          matvec(wh.data(), hv, 3 * H, H, gh, true);
        } else {                                                       // o = act(Wx + R (r * h) + b)
          matvec(wh.data(), hv, H, H, gh, false);                      // reset rows
          matvec(wh.data() + 2 * H * H, hv, H, H, gh + 2 * H, false);  // update rows
        }
        for (int64_t k = 0; k < H; ++k) rh[k] = gate(gi[k] + gh[k]) * (reset_after ? 1.f : hv[k]);
        if (!reset_after) matvec(wh.data() + H * H, rh, H, H, gh + H, false);
        for (int64_t k = 0; k < H; ++k) {
          const float r = reset_after ? rh[k] : 1.f;
          const float o = act(gi[H + k] + r * gh[H + k]);
          const float z = gate(gi[2 * H + k] + gh[2 * H + k]);
          hv[k] = (1 - z) * o + z * hv[k];
        }
        if (sequence) store_run<float>(t, call.out(0).data(), (step * d.B + b) * H, H, hv);
      }
    }
    if (!sequence) store_run<float>(t, call.out(0).data(), 0, d.B * H, h);
    store_run<float>(t, call.out(1).data(), 0, d.B * H, h);
  };
  return op;
}

// One lstm direction's parameters.
struct LstmDir {
  std::vector<float> wi, wh, bias, peep;
};

PlannedOp build_lstm(OpPlanContext& ctx) {
  std::string dir = ctx.has("direction") ? ctx.const_string("direction") : "forward";
  if (dir != "forward" && dir != "reverse" && dir != "bidirectional") ctx.fail("unknown direction '" + dir + "'");
  const int64_t D = dir == "bidirectional" ? 2 : 1;
  const Dims d = read_dims(ctx, 4, D);
  const int64_t H = d.H;
  if (ctx.type("initial_c").shape != Shape{d.B, D * H}) ctx.fail("initial_c must be [batch, directions * H]");
  std::vector<LstmDir> dirs;
  for (int64_t k = 0; k < D; ++k) {
    const std::string sfx = k == 0 ? "" : "_back";
    dirs.push_back({weights(ctx, "weight_ih" + sfx, 4 * H, d.I), weights(ctx, "weight_hh" + sfx, 4 * H, H),
                    floats_or_zero(ctx, "bias" + sfx, 4 * H), floats_or_zero(ctx, "peephole" + sfx, 3 * H)});
  }
  const bool sequence = ctx.const_bool_or("output_sequence", false), reverse = dir == "reverse";
  const bool has_clip = ctx.has("clip");
  const float clip = has_clip ? static_cast<float>(ctx.const_float("clip")) : 0.f;
  const Act gate = read_act(ctx, "recurrent_activation", "sigmoid"), cell = read_act(ctx, "cell_activation", "tanh"),
            act = read_act(ctx, "activation", "tanh");
  const DType t = ctx.type("x").dtype;
  int xs = ctx.input("x"), hs = ctx.input("initial_h"), cs = ctx.input("initial_c");
  PlannedOp op;
  op.outputs = seq_outputs(t, d, D * H, sequence, 2);
  op.scratch_bytes = static_cast<size_t>(d.S * d.B * d.I + 4 * d.B * D * H + 4 * H) * sizeof(float);
  op.run = [=](const KernelCall& call) {
    auto* x = static_cast<float*>(call.scratch);
    float* h = x + d.S * d.B * d.I;  // [B, D * H]
    float* c = h + d.B * D * H;
    float* pre = c + d.B * D * H;  // 4H
    float* tmp = pre + 4 * H;      // 2 * B * D * H for the initial states
    const float* xv = floats_of(call.in(xs), x);
    const float* h0 = floats_of(call.in(hs), tmp);
    std::copy(h0, h0 + d.B * D * H, h);
    const float* c0 = floats_of(call.in(cs), tmp);
    std::copy(c0, c0 + d.B * D * H, c);
    for (int64_t k = 0; k < D; ++k) {
      const LstmDir& p = dirs[k];
      const bool back = reverse || k == 1;
      for (int64_t step = 0; step < d.S; ++step) {
        const int64_t s = back ? d.S - 1 - step : step;
        for (int64_t b = 0; b < d.B; ++b) {
          float* hv = h + b * D * H + k * H;
          float* cv = c + b * D * H + k * H;
          std::copy(p.bias.begin(), p.bias.end(), pre);
          matvec(p.wi.data(), xv + (s * d.B + b) * d.I, 4 * H, d.I, pre, true);
          matvec(p.wh.data(), hv, 4 * H, H, pre, true);
          for (int64_t j = 0; j < H; ++j) {
            const float i = gate(pre[j] + cv[j] * p.peep[j]);
            const float f = gate(pre[H + j] + cv[j] * p.peep[H + j]);
            const float g = cell(pre[3 * H + j]);
            float cn = f * cv[j] + i * g;
            if (has_clip) cn = std::min(std::max(cn, -clip), clip);
            const float o = gate(pre[2 * H + j] + cn * p.peep[2 * H + j]);
            cv[j] = cn;
            hv[j] = o * act(cn);
          }
          // a bidirectional backward state goes to its input position; others in step order
          const int64_t at = D == 2 ? s : step;
          if (sequence) store_run<float>(t, call.out(0).data(), (at * d.B + b) * D * H + k * H, H, hv);
        }
      }
    }
    if (!sequence) store_run<float>(t, call.out(0).data(), 0, d.B * D * H, h);
    store_run<float>(t, call.out(1).data(), 0, d.B * D * H, h);
    store_run<float>(t, call.out(2).data(), 0, d.B * D * H, c);
  };
  return op;
}

}  // namespace

void register_recurrent_ops(OpRegistry& r) {
  r.add("rnn", build_rnn);
  r.add("gru", build_gru);
  r.add("lstm", build_lstm);
}

}  // namespace staticllm::mil
