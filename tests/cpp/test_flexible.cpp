// Flexible shapes: specs with ranges and enumerated shapes, a plan per input
// shape in a bounded cache, and the eager path for shapes that follow from
// run-time values.
#include <catch2/catch.hpp>
#include <functional>

#include "mil/plan_cache.h"
#include "program_json.h"
#include "staticllm/errors.h"
#include "staticllm/serde_json.h"

using namespace staticllm;
using namespace staticllm::mil;
using namespace staticllm::test;

namespace {

// A program dimension known only at run time.
json open_type(const std::string& dtype, const std::vector<int64_t>& shape) {
  json t = tensor_type(dtype, shape);
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == kFlexibleDim) t["tensorType"]["dimensions"][i] = {{"unknown", json::object()}};
  }
  return t;
}

json open_input(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape) {
  return {{"name", name}, {"type", open_type(dtype, shape)}};
}

// y = relu(x) * 2 for x of fp32 [2, ?].
json scaled_relu_program() {
  json two = immediate("FLOAT32", {}, {{"floats", {{"values", json::array({2.0})}}}});
  json ops = json::array({
      const_op("two", two),
      op("relu", {{"x", named("x")}}, "r", open_type("FLOAT32", {2, kFlexibleDim})),
      op("mul", {{"x", named("r")}, {"y", named("two")}}, "y", open_type("FLOAT32", {2, kFlexibleDim})),
  });
  return program(json::array({open_input("x", "FLOAT32", {2, kFlexibleDim})}), ops, {"y"});
}

MethodMetadata method_of(std::vector<TensorSpec> inputs, std::vector<TensorSpec> outputs) {
  MethodMetadata m;
  m.name = "main";
  m.function_name = "main";
  m.inputs = std::move(inputs);
  m.outputs = std::move(outputs);
  return m;
}

TensorSpec range_input() {
  TensorSpec x = spec("x", DType::kFloat32, {2, kFlexibleDim});
  x.shape_range = {{2, 2}, {1, 64}};
  x.default_shape = {2, 3};
  return x;
}

TensorSpec open_output(const std::string& name, DType dtype) {
  TensorSpec y = spec(name, dtype, {});
  y.any_rank = true;
  return y;
}

Tensor f32_iota(Shape shape, float start) {
  Tensor t(DType::kFloat32, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = start + static_cast<float>(i);
  return t;
}

Tensor i32(Shape shape, std::vector<int32_t> v) {
  Tensor t(DType::kInt32, std::move(shape));
  std::copy(v.begin(), v.end(), t.data_as<int32_t>());
  return t;
}

std::vector<int32_t> ints(const Tensor& t) { return {t.data_as<int32_t>(), t.data_as<int32_t>() + t.numel()}; }

}  // namespace

TEST_CASE("flexible specs accept their range or enumeration and say what they allow", "[flexible]") {
  TensorSpec x = range_input();
  CHECK_FALSE(x.is_fixed());
  CHECK(x.accepts({2, 1}));
  CHECK(x.accepts({2, 64}));
  CHECK_FALSE(x.accepts({2, 65}));
  CHECK_FALSE(x.accepts({3, 5}));
  CHECK_FALSE(x.accepts({2, 5, 1}));
  CHECK(x.allowed() == "fp32 [2, 1..64]");
  x.shape_range[1].upper = kFlexibleDim;
  CHECK(x.accepts({2, 1000}));
  CHECK(x.allowed() == "fp32 [2, 1..]");

  TensorSpec e = spec("e", DType::kFloat16, {1, kFlexibleDim});
  e.enumerated_shapes = {{1, 3}, {1, 5}, {1, 9}};
  e.default_shape = {1, 3};
  CHECK(e.accepts({1, 5}));
  CHECK_FALSE(e.accepts({1, 4}));
  CHECK(e.allowed() == "fp16 [1, 3], [1, 5] or [1, 9]");

  TensorSpec any = open_output("y", DType::kInt32);
  CHECK(any.accepts({}));
  CHECK(any.accepts({7, 2}));
  CHECK(spec("f", DType::kFloat32, {2, 3}).is_fixed());
}

TEST_CASE("flexible specs round-trip through metadata.json; bad ones are errors naming the key", "[flexible]") {
  ModelMetadata md;
  md.identifier = "flex";
  md.default_method = "main";
  TensorSpec e = spec("e", DType::kFloat32, {1, kFlexibleDim});
  e.enumerated_shapes = {{1, 3}, {1, 5}};
  e.default_shape = {1, 5};
  md.methods = {method_of({range_input(), e}, {open_output("y", DType::kFloat32), spec("z", DType::kInt32, {4})})};
  json doc = metadata_to_json(md);
  CHECK(doc["methods"][0]["inputs"][0]["shape"] == json::parse("[2, null]"));
  CHECK(doc["methods"][0]["inputs"][0]["shape_range"] == json::parse("[[2, 2], [1, 64]]"));
  CHECK(doc["methods"][0]["outputs"][0]["shape"].is_null());
  ModelMetadata back = metadata_from_json(doc);
  const MethodMetadata& m = back.methods[0];
  CHECK(m.inputs[0].shape_range == md.methods[0].inputs[0].shape_range);
  CHECK(m.inputs[0].default_shape == Shape{2, 3});
  CHECK(m.inputs[1].enumerated_shapes == e.enumerated_shapes);
  CHECK(m.outputs[0].any_rank);
  CHECK(m.outputs[1].is_fixed());
  CHECK(metadata_to_json(back) == doc);

  auto error_of = [&](const std::function<void(json&)>& edit) -> std::string {
    json d = doc;
    edit(d);
    try {
      metadata_from_json(d);
    } catch (const MetadataError& err) {
      return err.what();
    }
    return "";
  };
  CHECK(error_of([](json& d) {
          d["methods"][0]["inputs"][0]["default_shape"] = {2, 65};
        }) ==
        "metadata.json: methods[0].inputs[0].default_shape: [2, 65] is not a shape the input allows (fp32 [2, "
        "1..64])");
  CHECK(error_of([](json& d) { d["methods"][0]["inputs"][0].erase("default_shape"); }) ==
        "metadata.json: methods[0].inputs[0].default_shape: missing key (the input is flexible)");
  CHECK(error_of([](json& d) {
          d["methods"][0]["inputs"][0]["shape_range"][1] = {5, 4};
        }) ==
        "metadata.json: methods[0].inputs[0].shape_range[1]: expected [lower, upper] with 0 < lower <= upper "
        "(upper null: unbounded), got [5,4]");
  CHECK(error_of([](json& d) { d["methods"][0]["inputs"][0]["shape"] = nullptr; }) ==
        "metadata.json: methods[0].inputs[0].shape: expected a list for an input, got null");
  CHECK(error_of([](json& d) {
          d["methods"][0]["states"] = json::parse(R"([{"name": "s", "dtype": "fp32", "shape": [null]}])");
        }) == "metadata.json: methods[0].states[0].shape[0]: expected a positive integer, got null");
}

TEST_CASE("a method with a flexible input plans each input shape once, in a bounded cache", "[flexible]") {
  Program p = load_program(write_json(scaled_relu_program()), nullptr);
  auto program = std::make_shared<const Program>(std::move(p));
  MethodMetadata m = method_of({range_input()}, {open_output("y", DType::kFloat32)});
  auto pool = std::make_shared<ConstPool>();
  MethodPlans plans(program, program->functions.at("main"), m, pool, 2);
  pool.reset();  // a Method outlives its Runtime, whose pool its later plans use
  CHECK_FALSE(plans.fixed());
  CHECK_FALSE(plans.eager());
  CHECK(plans.plans_made() == 1);  // the default shape, at load
  for (int64_t n : {3, 5, 7, 5, 9, 3, 3}) {
    Tensor x = f32_iota({2, n}, -4.f);
    std::vector<Tensor> out = plans.execute({x}, {});
    REQUIRE(out.size() == 1);
    REQUIRE(out[0].shape() == Shape{2, n});
    for (int64_t i = 0; i < x.numel(); ++i) {
      CHECK(out[0].data_as<float>()[i] == 2 * std::max(0.f, x.data_as<float>()[i]));
    }
    CHECK(plans.cached_plans() <= 2);
  }
  // 3 (cached at load), 5, 7 (evicts 3), 5 hit, 9 (evicts 7), 3 (evicts 5), 3 hit
  CHECK(plans.plans_made() == 5);
}

TEST_CASE("STATICLLM_PLAN_CACHE sets the cache bound; anything but a positive integer means 8", "[flexible]") {
  CHECK(plan_cache_capacity(nullptr) == 8);
  CHECK(plan_cache_capacity("3") == 3);
  CHECK(plan_cache_capacity("0") == 8);
  CHECK(plan_cache_capacity("-1") == 8);
  CHECK(plan_cache_capacity("4x") == 8);
  CHECK(plan_cache_capacity("") == 8);
}

TEST_CASE("a fixed method is planned once at load, as before", "[flexible]") {
  json doc = scaled_relu_program();
  doc["functions"]["main"]["inputs"][0]["type"] = tensor_type("FLOAT32", {2, 3});
  auto program = std::make_shared<const Program>(load_program(write_json(doc), nullptr));
  MethodMetadata m = method_of({spec("x", DType::kFloat32, {2, 3})}, {spec("y", DType::kFloat32, {2, 3})});
  auto pool = std::make_shared<ConstPool>();
  MethodPlans plans(program, program->functions.at("main"), m, pool);
  CHECK(plans.fixed());
  CHECK(plans.plans_made() == 0);
  CHECK(plans.execute({f32_iota({2, 3}, -1.f)}, {})[0].data_as<float>()[5] == 8.f);
}

TEST_CASE("shapes that follow from run-time values run on the eager path", "[flexible]") {
  // y = non_zero(x), z = reshape(w, shape=s): both shapes come from values
  json ops = json::array({
      op("non_zero", {{"x", named("x")}}, "y", open_type("INT32", {kFlexibleDim, 1})),
      op("reshape", {{"x", named("w")}, {"shape", named("s")}}, "z",
         open_type("FLOAT32", {kFlexibleDim, kFlexibleDim})),
  });
  json inputs = json::array({input("x", "INT32", {5}), input("w", "FLOAT32", {6}), input("s", "INT32", {2})});
  json doc = program(inputs, ops, {"y", "z"});
  auto prog = std::make_shared<const Program>(load_program(write_json(doc), nullptr));
  MethodMetadata m =
      method_of({spec("x", DType::kInt32, {5}), spec("w", DType::kFloat32, {6}), spec("s", DType::kInt32, {2})},
                {open_output("y", DType::kInt32), open_output("z", DType::kFloat32)});
  auto pool = std::make_shared<ConstPool>();
  MethodPlans plans(prog, prog->functions.at("main"), m, pool);
  CHECK(plans.eager());
  std::vector<Tensor> out = plans.execute({i32({5}, {0, 4, 0, -1, 2}), f32_iota({6}, 0.f), i32({2}, {3, -1})}, {});
  CHECK(out[0].shape() == Shape{3, 1});
  CHECK(ints(out[0]) == std::vector<int32_t>{1, 3, 4});
  CHECK(out[1].shape() == Shape{3, 2});
  out = plans.execute({i32({5}, {0, 0, 0, 0, 0}), f32_iota({6}, 0.f), i32({2}, {1, 6})}, {});
  CHECK(out[0].shape() == Shape{0, 1});
  CHECK(out[1].shape() == Shape{1, 6});
  // a run-time error in an eager op is the op's own error
  CHECK_THROWS_WITH(plans.execute({i32({5}, {0, 0, 0, 0, 0}), f32_iota({6}, 0.f), i32({2}, {4, 4})}, {}),
                    Catch::Contains("reshape"));
}

TEST_CASE("a genuine error in a flexible or eager method still fails the load", "[flexible]") {
  MethodMetadata m = method_of({range_input()}, {open_output("y", DType::kFloat32)});
  auto pool = std::make_shared<ConstPool>();
  json unsupported = scaled_relu_program();
  unsupported["functions"]["main"]["blockSpecializations"]["CoreML8"]["operations"][1]["type"] = "no_such_op";
  auto p1 = std::make_shared<const Program>(load_program(write_json(unsupported), nullptr));
  CHECK_THROWS_AS(MethodPlans(p1, p1->functions.at("main"), m, pool), UnsupportedOpError);
  // fill's shape must be integers: a constant of floats is an error, not a reason to wait for run time
  json fill_prog = program(
      json::array({input("x", "FLOAT32", {2})}),
      json::array({op(
          "fill", {{"shape", inline_value(immediate("FLOAT32", {1}, {{"floats", {{"values", json::array({2.0})}}}}))}},
          "y", open_type("FLOAT32", {kFlexibleDim}))}),
      {"y"});
  auto p2 = std::make_shared<const Program>(load_program(write_json(fill_prog), nullptr));
  MethodMetadata fm = method_of({spec("x", DType::kFloat32, {2})}, {open_output("y", DType::kFloat32)});
  CHECK_THROWS_WITH(MethodPlans(p2, p2->functions.at("main"), fm, pool),
                    Catch::Contains("parameter 'shape' must be integers"));
}

TEST_CASE("the eager path runs a stateful function: state ops stay steps, the state is updated", "[flexible]") {
  // acc += x (a state), y = non_zero(x): the eager path with a state
  const json acc = tensor_type("FLOAT32", {4});
  json ops = json::array({
      op("read_state", {{"input", named("acc")}}, "r", acc),
      op("add", {{"x", named("r")}, {"y", named("x")}}, "s", acc),
      json{{"type", "write_state"}, {"inputs", {{"input", named("acc")}, {"data", named("s")}}}},
      op("non_zero", {{"x", named("x")}}, "y", open_type("INT32", {kFlexibleDim, 1})),
  });
  json inputs = json::array({input("x", "FLOAT32", {4}), state_input("acc", "FLOAT32", {4})});
  json doc = program(inputs, ops, {"y", "s"});
  auto prog = std::make_shared<const Program>(load_program(write_json(doc), nullptr));
  MethodMetadata m =
      method_of({spec("x", DType::kFloat32, {4})}, {open_output("y", DType::kInt32), spec("s", DType::kFloat32, {4})});
  m.states = {spec("acc", DType::kFloat32, {4})};
  MethodPlans plans(prog, prog->functions.at("main"), m, std::make_shared<ConstPool>());
  REQUIRE(plans.eager());
  Tensor state = f32_iota({4}, 0.f);  // 0 1 2 3
  Tensor x(DType::kFloat32, {4});
  std::vector<float> xs = {0.f, 5.f, 0.f, -1.f};
  std::copy(xs.begin(), xs.end(), x.data_as<float>());
  std::vector<Tensor> out = plans.execute({x}, {state});
  CHECK(ints(out[0]) == std::vector<int32_t>{1, 3});
  CHECK(std::vector<float>(state.data_as<float>(), state.data_as<float>() + 4) == std::vector<float>{0, 6, 2, 2});
  out = plans.execute({x}, {state});
  CHECK(std::vector<float>(out[1].data_as<float>(), out[1].data_as<float>() + 4) == std::vector<float>{0, 11, 2, 1});
}
