// cond and while_loop on hand-written programs: their nested blocks read
// block inputs, outer run-time values and outer constants; type disagreements
// are refused when the method is planned, naming function, op and block.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "mil/executor.h"
#include "mil/planner.h"
#include "mil/program.h"
#include "program_json.h"
#include "staticllm/errors.h"

using namespace staticllm;
using namespace staticllm::mil;
using namespace staticllm::test;
using nlohmann::json;

namespace {

const json kF1 = tensor_type("FLOAT32", {1});
const json kBool1 = tensor_type("BOOL", {1});

json block(const json& inputs, const json& ops, const std::vector<std::string>& outputs) {
  return {{"inputs", inputs}, {"operations", ops}, {"outputs", outputs}};
}

json binary(const std::string& type, const std::string& x, const std::string& y, const std::string& out,
            const json& out_type) {
  return op(type, {{"x", named(x)}, {"y", named(y)}}, out, out_type);
}

json outputs(const std::vector<std::string>& names, const json& type) {
  json a = json::array();
  for (const auto& n : names) a.push_back({{"name", n}, {"type", type}});
  return a;
}

json scalar_const(const std::string& name, float v) {
  return const_op(name, immediate("FLOAT32", {1}, {{"floats", {{"values", {v}}}}}));
}

// (i, acc) = (0, x); while i < n: (i, acc) = (i + 1, acc * two); the blocks
// read n (an outer input) and two (an outer constant). With `grow` the body
// tiles acc to fp32 [2] instead, which a loop may not do.
json counting_loop(bool grow = false) {
  json cond = block(json::array({input("i_c", "FLOAT32", {1}), input("acc_c", "FLOAT32", {1})}),
                    json::array({binary("less", "i_c", "n", "go", kBool1)}), {"go"});
  json body_ops = json::array({scalar_const("one", 1.0f), binary("add", "i_b", "one", "i_next", kF1)});
  if (grow) {
    body_ops.push_back(const_op("reps", immediate("INT32", {1}, {{"ints", {{"values", {2}}}}})));
    body_ops.push_back(
        op("tile", {{"x", named("acc_b")}, {"reps", named("reps")}}, "acc_next", tensor_type("FLOAT32", {2})));
  } else {
    body_ops.push_back(binary("mul", "acc_b", "two", "acc_next", kF1));
  }
  json body = block(json::array({input("i_b", "FLOAT32", {1}), input("acc_b", "FLOAT32", {1})}), body_ops,
                    {"i_next", "acc_next"});
  json vars = {{"arguments", json::array({json{{"name", "zero"}}, json{{"name", "x"}}})}};
  json loop = {{"type", "while_loop"},
               {"inputs", {{"loop_vars", vars}}},
               {"outputs", outputs({"i", "acc"}, kF1)},
               {"blocks", json::array({cond, body})}};
  json ops = json::array({scalar_const("zero", 0.0f), scalar_const("two", 2.0f), loop});
  return program(json::array({input("x", "FLOAT32", {1}), input("n", "FLOAT32", {1})}), ops, {"i", "acc"});
}

MethodMetadata loop_method() {
  MethodMetadata m;
  m.name = m.function_name = "main";
  m.inputs = {spec("x", DType::kFloat32, {1}), spec("n", DType::kFloat32, {1})};
  m.outputs = {spec("i", DType::kFloat32, {1}), spec("acc", DType::kFloat32, {1})};
  return m;
}

// y = p ? x + 1 : x * two, with p a bool input and two an outer constant;
// `false_type` is the type the false block declares for its value.
json cond_program(const json& false_type = kF1) {
  json t = block(json::array(), json::array({scalar_const("one", 1.0f), binary("add", "x", "one", "t", kF1)}), {"t"});
  json f = block(json::array(), json::array({binary("mul", "x", "two", "f", false_type)}), {"f"});
  json c = {{"type", "cond"},
            {"inputs", {{"pred", named("p")}}},
            {"outputs", outputs({"y"}, kF1)},
            {"blocks", json::array({t, f})}};
  json ops = json::array({scalar_const("two", 2.0f), c});
  return program(json::array({input("x", "FLOAT32", {1}), input("p", "BOOL", {})}), ops, {"y"});
}

MethodMetadata cond_method() {
  MethodMetadata m;
  m.name = m.function_name = "main";
  m.inputs = {spec("x", DType::kFloat32, {1}), spec("p", DType::kBool, {})};
  m.outputs = {spec("y", DType::kFloat32, {1})};
  return m;
}

Tensor f1(float v) {
  Tensor t(DType::kFloat32, {1});
  t.data_as<float>()[0] = v;
  return t;
}

Tensor flag(bool v) {
  Tensor t(DType::kBool, {});
  t.data_as<uint8_t>()[0] = v ? 1 : 0;
  return t;
}

std::shared_ptr<const Plan> plan_of(const json& doc, const MethodMetadata& m) {
  Program p = load_program(write_json(doc), nullptr);
  return plan_function(p.functions.at("main"), m);
}

}  // namespace

TEST_CASE("while_loop counts to an input, reading outer inputs and constants", "[control_flow]") {
  Executor exec(plan_of(counting_loop(), loop_method()));
  for (int n : {0, 1, 3, 10}) {
    std::vector<Tensor> out = exec.execute({f1(1.5f), f1(static_cast<float>(n))});
    CHECK(out[0].data_as<float>()[0] == static_cast<float>(n));
    CHECK(out[1].data_as<float>()[0] == 1.5f * static_cast<float>(1 << n));
  }
}

TEST_CASE("cond picks a block by its predicate", "[control_flow]") {
  Executor exec(plan_of(cond_program(), cond_method()));
  CHECK(exec.execute({f1(3.0f), flag(true)})[0].data_as<float>()[0] == 4.0f);
  CHECK(exec.execute({f1(3.0f), flag(false)})[0].data_as<float>()[0] == 6.0f);
}

TEST_CASE("a while_loop nested in a cond reads the scopes around both", "[control_flow]") {
  // y = p ? (the counting loop's acc) : x
  json doc = counting_loop();
  json& ops = doc["functions"]["main"]["blockSpecializations"]["CoreML8"]["operations"];
  json loop = ops[2];
  json t = block(json::array(), json::array({loop}), {"acc"});
  json f = block(json::array(), json::array(), {"x"});
  ops[2] = {{"type", "cond"},
            {"inputs", {{"pred", named("p")}}},
            {"outputs", outputs({"y"}, kF1)},
            {"blocks", json::array({t, f})}};
  doc["functions"]["main"]["inputs"].push_back(input("p", "BOOL", {}));
  doc["functions"]["main"]["blockSpecializations"]["CoreML8"]["outputs"] = {"y"};
  MethodMetadata m = loop_method();
  m.inputs.push_back(spec("p", DType::kBool, {}));
  m.outputs = {spec("y", DType::kFloat32, {1})};
  Executor exec(plan_of(doc, m));
  CHECK(exec.execute({f1(1.0f), f1(4.0f), flag(true)})[0].data_as<float>()[0] == 16.0f);
  CHECK(exec.execute({f1(1.0f), f1(4.0f), flag(false)})[0].data_as<float>()[0] == 1.0f);
}

TEST_CASE("control flow whose types disagree is refused when planned", "[control_flow]") {
  // A loop whose variables change shape runs once its inputs are known (the
  // eager path), and there its types must still fit the op's declaration.
  REQUIRE_THROWS_AS(plan_of(counting_loop(true), loop_method()), RuntimeValueNeeded);
  REQUIRE_THROWS_WITH(plan_of(counting_loop(true), loop_method()),
                      "function 'main', op 'i' (type 'while_loop'): loop variable 1 ('acc_b') enters the body as fp32 "
                      "[1] and leaves it as fp32 [2]: the loop runs once its inputs are known");
  const std::vector<Tensor> call = {f1(1.0f), f1(2.0f)};
  PlanFor eager;
  eager.input_values = &call;
  Program grows = load_program(write_json(counting_loop(true)), nullptr);
  REQUIRE_THROWS_WITH(plan_function(grows.functions.at("main"), loop_method(), nullptr, eager),
                      "function 'main', op 'i' (type 'while_loop'): loop variable 1 ('acc_b') leaves the body as "
                      "fp32 [2], the op declares fp32 [1]");
  REQUIRE_THROWS_WITH(plan_of(cond_program(tensor_type("FLOAT32", {2})), cond_method()),
                      "function 'main/y.false', op 'f' (type 'mul'): output 'f' is declared fp32 [2] but the op "
                      "computes fp32 [1]");

  json two_values = cond_program();
  json& blocks = two_values["functions"]["main"]["blockSpecializations"]["CoreML8"]["operations"][1]["blocks"];
  blocks[1]["outputs"] = {"f", "f"};
  REQUIRE_THROWS_WITH(plan_of(two_values, cond_method()),
                      "function 'main', op 'y' (type 'cond'): the false block yields 2 values, the op declares 1");

  json float_pred = cond_program();
  float_pred["functions"]["main"]["inputs"][1] = input("p", "FLOAT32", {});
  MethodMetadata m = cond_method();
  m.inputs[1].dtype = DType::kFloat32;
  REQUIRE_THROWS_WITH(plan_of(float_pred, m),
                      "function 'main', op 'y' (type 'cond'): 'pred' must be a bool with one element, got fp32 []");

  json unknown = cond_program();
  unknown["functions"]["main"]["blockSpecializations"]["CoreML8"]["operations"][1]["blocks"][0]["outputs"] = {
      "nowhere"};
  REQUIRE_THROWS_WITH(plan_of(unknown, cond_method()),
                      "function 'main', op 'y' (type 'cond'): a block reads unknown value 'nowhere'");

  json unsupported = counting_loop();
  unsupported["functions"]["main"]["blockSpecializations"]["CoreML8"]["operations"][2]["blocks"][1]["operations"][1]
             ["type"] = "fancy_add";
  REQUIRE_THROWS_AS(plan_of(unsupported, loop_method()), UnsupportedOpError);
  REQUIRE_THROWS_WITH(plan_of(unsupported, loop_method()),
                      Catch::StartsWith("function 'main/i.body', op 'i_next' (type 'fancy_add'): op not supported"));
}
