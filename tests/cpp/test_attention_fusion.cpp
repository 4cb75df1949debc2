// Attention over a cache plus the call's own keys (attention_fusion.h), as
// the LLM exporters write it: planned as one fused step, whose outputs must
// match the program's ops run one by one (STATICLLM_NO_FUSION) for masks that
// hide the whole cache, part of it, nothing, or every key of a row.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "mil/executor.h"
#include "mil/half.h"
#include "mil/planner.h"
#include "mil/program.h"
#include "program_json.h"

using namespace staticllm;
using namespace staticllm::mil;
using namespace staticllm::test;

namespace {

// 2 kv heads of 2 query heads each, 5 new rows, head size 8, value size 6,
// 9 cache slots: q [1, 2, 10, 8], scores [1, 2, 10, 14].
constexpr int64_t kH = 2, kG = 2, kL = 5, kE = 8, kEv = 6, kS0 = 9, kSt = kS0 + kL;

json ints(const std::vector<int64_t>& v) {
  return inline_value(immediate("INT32", {static_cast<int64_t>(v.size())}, {{"ints", {{"values", v}}}}));
}
json scalar_int(int64_t v) { return inline_value(immediate("INT32", {}, {{"ints", {{"values", {v}}}}})); }
json flag(bool v) { return inline_value(immediate("BOOL", {}, {{"bools", {{"values", {v}}}}})); }

json attention_program(const std::string& dt, bool expose_concat) {
  auto t = [&](const std::vector<int64_t>& s) { return tensor_type(dt, s); };
  auto mm = [&](const std::string& x, const std::string& y, bool ty, const std::string& out, std::vector<int64_t> s) {
    return op("matmul", {{"x", named(x)}, {"y", named(y)}, {"transpose_x", flag(false)}, {"transpose_y", flag(ty)}},
              out, t(s));
  };
  auto slice = [&](int64_t begin, int64_t end, const std::string& out) {
    return op("slice_by_index",
              {{"x", named("r2")}, {"begin", ints({0, 0, 0, begin})}, {"end", ints({1, kH, kG * kL, end})}}, out,
              t({1, kH, kG * kL, end - begin}));
  };
  json ops = json::array({
      mm("q", "k0", true, "s0", {1, kH, kG * kL, kS0}),
      mm("q", "k1", true, "s1", {1, kH, kG * kL, kL}),
      op("concat",
         {{"values", {{"arguments", json::array({json{{"name", "s0"}}, json{{"name", "s1"}}})}}},
          {"axis", scalar_int(-1)},
          {"interleave", flag(false)}},
         "c", t({1, kH, kG * kL, kSt})),
      op("mul", {{"x", named("c")}, {"y", inline_value(immediate(dt, {}, {{"floats", {{"values", {0.35}}}}}))}}, "sc",
         t({1, kH, kG * kL, kSt})),
      op("reshape", {{"x", named("sc")}, {"shape", ints({1, kH, kG, kL, kSt})}}, "r1", t({1, kH, kG, kL, kSt})),
      op("reshape", {{"x", named("mask")}, {"shape", ints({1, 1, 1, kL, kSt})}}, "mr", t({1, 1, 1, kL, kSt})),
      op("add", {{"x", named("r1")}, {"y", named("mr")}}, "a", t({1, kH, kG, kL, kSt})),
      op("softmax", {{"x", named("a")}, {"axis", scalar_int(-1)}}, "sm", t({1, kH, kG, kL, kSt})),
      op("reshape", {{"x", named("sm")}, {"shape", ints({1, kH, kG * kL, kSt})}}, "r2", t({1, kH, kG * kL, kSt})),
      slice(0, kS0, "p0"),
      slice(kS0, kSt, "p1"),
      mm("p0", "v0", false, "o0", {1, kH, kG * kL, kEv}),
      mm("p1", "v1", false, "o1", {1, kH, kG * kL, kEv}),
      op("add", {{"x", named("o0")}, {"y", named("o1")}}, "out", t({1, kH, kG * kL, kEv})),
  });
  json inputs = json::array({input("q", dt, {1, kH, kG * kL, kE}), input("k0", dt, {1, kH, kS0, kE}),
                             input("k1", dt, {1, kH, kL, kE}), input("v0", dt, {1, kH, kS0, kEv}),
                             input("v1", dt, {1, kH, kL, kEv}), input("mask", dt, {1, kL, kSt})});
  std::vector<std::string> outs = {"out"};
  if (expose_concat) outs.push_back("c");
  return program(inputs, ops, outs);
}

MethodMetadata attention_method(DType dt, bool expose_concat) {
  MethodMetadata m;
  m.name = m.function_name = "main";
  m.inputs = {spec("q", dt, {1, kH, kG * kL, kE}), spec("k0", dt, {1, kH, kS0, kE}), spec("k1", dt, {1, kH, kL, kE}),
              spec("v0", dt, {1, kH, kS0, kEv}),   spec("v1", dt, {1, kH, kL, kEv}), spec("mask", dt, {1, kL, kSt})};
  m.outputs = {spec("out", dt, {1, kH, kG * kL, kEv})};
  if (expose_concat) m.outputs.push_back(spec("c", dt, {1, kH, kG * kL, kSt}));
  return m;
}

Tensor filled(DType dt, const Shape& shape, const std::vector<float>& v) {
  Tensor t(dt, shape);
  for (size_t i = 0; i < v.size(); ++i) {
    if (dt == DType::kFloat16)
      t.data_as<uint16_t>()[i] = float_to_half(v[i]);
    else
      t.data_as<float>()[i] = v[i];
  }
  return t;
}

std::vector<float> floats(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = t.dtype() == DType::kFloat16 ? half_to_float(t.data_as<uint16_t>()[i]) : t.data_as<float>()[i];
  return out;
}

Tensor random_tensor(DType dt, const Shape& shape, std::mt19937& gen) {
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (auto& x : v) x = dist(gen);
  return filled(dt, shape, v);
}

// The mask [1, L, St]: cache slots [0, visible) seen by every row, the new
// keys causally; `blind_row` (if >= 0) sees nothing.
Tensor mask_tensor(DType dt, int64_t visible, bool causal, int64_t blind_row) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> m(static_cast<size_t>(kL * kSt), 0.f);
  for (int64_t l = 0; l < kL; ++l) {
    for (int64_t s = 0; s < kSt; ++s) {
      const bool seen = s < kS0 ? s < visible : !causal || s - kS0 <= l;
      m[static_cast<size_t>(l * kSt + s)] = seen && l != blind_row ? 0.f : -inf;
    }
  }
  return filled(dt, {1, kL, kSt}, m);
}

size_t fused_steps(const Plan& plan) {
  size_t n = 0;
  for (const PlanStep& s : plan.steps) n += s.op_type == "split_kv_attention";
  return n;
}

std::shared_ptr<const Plan> plan_attention(const Program& p, DType dt, bool expose_concat, bool fuse) {
  if (!fuse) ::setenv("STATICLLM_NO_FUSION", "1", 1);
  auto plan = plan_function(p.functions.at("main"), attention_method(dt, expose_concat));
  ::unsetenv("STATICLLM_NO_FUSION");
  return plan;
}

}  // namespace

TEST_CASE("attention over a cache plus new keys runs fused, as the unfused ops compute it", "[fusion]") {
  for (DType dt : {DType::kFloat32, DType::kFloat16}) {
    const bool half = dt == DType::kFloat16;
    Program p = load_program(write_json(attention_program(half ? "FLOAT16" : "FLOAT32", false)), nullptr);
    auto fused = plan_attention(p, dt, false, true);
    auto plain = plan_attention(p, dt, false, false);
    REQUIRE(fused_steps(*fused) == 1);
    REQUIRE(fused->steps.size() == 1);  // the mask's reshape is a view
    REQUIRE(fused_steps(*plain) == 0);
    Executor run_fused(fused), run_plain(plain);
    std::mt19937 gen(11);
    std::vector<Tensor> in = {random_tensor(dt, {1, kH, kG * kL, kE}, gen), random_tensor(dt, {1, kH, kS0, kE}, gen),
                              random_tensor(dt, {1, kH, kL, kE}, gen),      random_tensor(dt, {1, kH, kS0, kEv}, gen),
                              random_tensor(dt, {1, kH, kL, kEv}, gen),     Tensor()};
    struct Case {
      const char* name;
      int64_t visible;
      bool causal;
      int64_t blind_row;
    };
    for (const Case& c :
         {Case{"first prefill: no cache slot in use", 0, true, -1}, Case{"4 cache slots in use", 4, true, -1},
          Case{"nothing masked", kS0, false, -1}, Case{"a row that sees no key", 4, true, 2}}) {
      in[5] = mask_tensor(dt, c.visible, c.causal, c.blind_row);
      const std::vector<float> got = floats(run_fused.execute(in)[0]), want = floats(run_plain.execute(in)[0]);
      // fp32: the sums' order differs; fp16: that order can move a value by one fp16 ulp (2^-11 relative)
      const float tol = half ? 2e-3f : 2e-6f;
      for (size_t i = 0; i < got.size(); ++i) {
        INFO((half ? "fp16 " : "fp32 ") << c.name << ", element " << i << ": " << got[i] << " vs " << want[i]);
        const bool blind = c.blind_row >= 0 && static_cast<int64_t>(i / kEv) % kL == c.blind_row;
        if (blind) {
          REQUIRE(std::isnan(got[i]));
          REQUIRE(std::isnan(want[i]));
        } else {
          REQUIRE(std::abs(got[i] - want[i]) <= tol * (1.f + std::abs(want[i])));
        }
      }
    }
  }
}

TEST_CASE("attention whose scores are read elsewhere keeps its ops", "[fusion]") {
  Program p = load_program(write_json(attention_program("FLOAT32", true)), nullptr);
  auto plan = plan_attention(p, DType::kFloat32, true, true);
  CHECK(fused_steps(*plan) == 0);
  CHECK(plan->steps.size() > 8);
}
