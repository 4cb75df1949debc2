// States kept across calls (Method::make_state, execute(inputs, state)) and
// the call without a State, through Runtime on a bundle written here: three
// functions over a state 'acc' fp32 [2, 3]. accumulate: acc += x, returns
// 2 * acc; peek: returns acc; wide: a state 'acc' of another shape.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <thread>

#include <unistd.h>

#include "program_json.h"
#include "staticllm/errors.h"
#include "staticllm/runtime.h"
#include "staticllm/serde_json.h"

using namespace staticllm;
using namespace staticllm::test;
namespace fs = std::filesystem;

namespace {

const json kAcc = tensor_type("FLOAT32", {2, 3});

json accumulate_fn() {
  json ops = json::array({
      op("read_state", {{"input", named("acc")}}, "r", kAcc),
      op("add", {{"x", named("r")}, {"y", named("x")}}, "s", kAcc),
      json{{"type", "write_state"}, {"inputs", {{"input", named("acc")}, {"data", named("s")}}}},
      const_op("two", immediate("FLOAT32", {}, {{"floats", {{"values", {2.0}}}}})),
      op("mul", {{"x", named("s")}, {"y", named("two")}}, "out", kAcc),
  });
  return function(json::array({input("x", "FLOAT32", {2, 3}), state_input("acc", "FLOAT32", {2, 3})}), ops, {"out"});
}

json peek_fn() {
  json ops = json::array({op("read_state", {{"input", named("acc")}}, "out", kAcc)});
  return function(json::array({state_input("acc", "FLOAT32", {2, 3})}), ops, {"out"});
}

json wide_fn() {
  json t = tensor_type("FLOAT32", {3, 2});
  json ops = json::array({op("read_state", {{"input", named("acc")}}, "out", t)});
  return function(json::array({state_input("acc", "FLOAT32", {3, 2})}), ops, {"out"});
}

MethodMetadata method(const std::string& name, bool takes_x, Shape state_shape) {
  MethodMetadata m;
  m.name = name;
  m.function_name = name;
  if (takes_x) m.inputs = {spec("x", DType::kFloat32, {2, 3})};
  m.outputs = {spec("out", DType::kFloat32, state_shape)};
  m.states = {spec("acc", DType::kFloat32, state_shape)};
  return m;
}

std::string stateful_bundle() {
  static int counter = 0;
  fs::path dir =
      fs::temp_directory_path() / ("staticllm_state_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  fs::create_directories(dir);
  json doc = {{"version", "1"},
              {"functions", {{"accumulate", accumulate_fn()}, {"peek", peek_fn()}, {"wide", wide_fn()}}}};
  std::ofstream(dir / "program.json") << doc.dump();
  ModelMetadata md;
  md.identifier = "acc";
  md.multifunction = true;
  md.default_method = "accumulate";
  md.methods = {method("accumulate", true, {2, 3}), method("peek", false, {2, 3}), method("wide", false, {3, 2})};
  save_metadata_file(md, (dir / "metadata.json").string());
  return dir.string();
}

Tensor filled(float first) {
  Tensor t(DType::kFloat32, {2, 3});
  for (int i = 0; i < 6; ++i) t.data_as<float>()[i] = first + static_cast<float>(i);
  return t;
}

std::vector<float> floats(const Tensor& t) { return {t.data_as<float>(), t.data_as<float>() + t.numel()}; }

std::vector<float> scaled(float k, float first) {
  std::vector<float> v;
  for (int i = 0; i < 6; ++i) v.push_back(k * (first + static_cast<float>(i)));
  return v;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "no InputError";
}

}  // namespace

TEST_CASE("a State keeps the states across calls and is updated in place", "[state]") {
  auto rt = Runtime::load(stateful_bundle(), "mil");
  auto acc = rt->method("accumulate");
  std::shared_ptr<State> state = acc->make_state();
  REQUIRE(state->specs().size() == 1);
  REQUIRE(floats(state->read("acc")) == std::vector<float>(6, 0.0f));  // zero-filled
  std::vector<Tensor> first = acc->execute({filled(1)}, *state);
  REQUIRE(first.size() == 1);  // the outputs only: the states stay in the State
  REQUIRE(floats(first[0]) == scaled(2, 1));
  std::vector<Tensor> second = acc->execute({filled(1)}, *state);
  REQUIRE(floats(second[0]) == scaled(4, 1));
  REQUIRE(floats(state->read("acc")) == scaled(2, 1));
  state->write("acc", filled(10));
  REQUIRE(floats(acc->execute({filled(1)}, *state)[0]) == std::vector<float>{22, 26, 30, 34, 38, 42});
}

TEST_CASE("without a State, states are inputs and outputs as before", "[state]") {
  auto rt = Runtime::load(stateful_bundle(), "mil");
  auto acc = rt->method("accumulate");
  std::vector<Tensor> out = acc->execute({filled(1), filled(0)});
  REQUIRE(out.size() == 2);  // outputs, then the updated states
  REQUIRE(floats(out[0]) == std::vector<float>{2, 6, 10, 14, 18, 22});
  REQUIRE(floats(out[1]) == std::vector<float>{1, 3, 5, 7, 9, 11});
  Tensor given = filled(0);
  acc->execute({filled(1), given});
  REQUIRE(floats(given) == scaled(1, 0));  // the caller's state tensor is never written
  REQUIRE(error_of([&] { acc->execute({filled(1)}); }) == "method 'accumulate': expected 1 inputs and 1 states, got 1");
  REQUIRE(error_of([&] {
            acc->execute({filled(1), Tensor(DType::kFloat16, {2, 3})});
          }) == "method 'accumulate': state 'acc' expects fp32 [2, 3], got fp16 [2, 3]");
}

TEST_CASE("a State serves every method of the Runtime with the same states", "[state]") {
  auto rt = Runtime::load(stateful_bundle(), "mil");
  auto state = rt->method("accumulate")->make_state();
  rt->method("accumulate")->execute({filled(1)}, *state);
  // made by accumulate, read by peek: one cache shared like prefill and decode
  REQUIRE(floats(rt->method("peek")->execute({}, *state)[0]) == scaled(1, 1));
  auto from_peek = rt->method("peek")->make_state();
  rt->method("accumulate")->execute({filled(0)}, *from_peek);
  REQUIRE(floats(from_peek->read("acc")) == scaled(1, 0));

  REQUIRE(error_of([&] { rt->method("wide")->execute({}, *state); }) ==
          "method 'wide': state 'acc' is fp32 [2, 3] in the State, the method expects fp32 [3, 2]");
  auto other = Runtime::load(stateful_bundle(), "mil");
  REQUIRE_THAT(error_of([&] { other->method("peek")->execute({}, *state); }),
               Catch::StartsWith("method 'peek': the State was made by a method of another Runtime"));
  REQUIRE(error_of([&] {
            rt->method("accumulate")->execute({filled(1), filled(1)}, *state);
          }) == "method 'accumulate': expected 1 inputs, got 2");
}

TEST_CASE("State.read and State.write check names, dtypes and shapes", "[state]") {
  auto rt = Runtime::load(stateful_bundle(), "mil");
  auto state = rt->method("peek")->make_state();
  REQUIRE(error_of([&] { state->read("kv"); }) == "the State has no state 'kv'; it holds: acc");
  REQUIRE(error_of([&] {
            state->write("acc", Tensor(DType::kFloat32, {3, 2}));
          }) == "state 'acc' expects fp32 [2, 3], got fp32 [3, 2]");
  Tensor value = filled(5);
  state->write("acc", value);
  value.data_as<float>()[0] = -1;  // the State holds a copy
  REQUIRE(floats(state->read("acc")) == scaled(1, 5));
}

TEST_CASE("state mismatches say what differs", "[state]") {
  std::vector<TensorSpec> kv = {spec("k", DType::kFloat16, {1, 8}), spec("v", DType::kFloat16, {1, 8})};
  std::vector<TensorSpec> vk = {kv[1], kv[0]};
  REQUIRE(state_mismatch(kv, vk).empty());  // order does not matter
  REQUIRE(state_mismatch({}, {}).empty());
  REQUIRE(state_mismatch(kv, {kv[0]}) == "the State has no state 'v' (it holds: k)");
  REQUIRE(state_mismatch({kv[0]}, kv) == "the State holds 'v', which the method does not have (its states: k)");
  REQUIRE(state_mismatch({}, kv) == "the State holds 'k', which the method does not have (its states: none)");
  REQUIRE(state_mismatch(kv, {kv[0], spec("v", DType::kFloat32, {1, 8})}) ==
          "state 'v' is fp32 [1, 8] in the State, the method expects fp16 [1, 8]");
}

TEST_CASE("calls sharing a State run one at a time; separate States run at once", "[state]") {
  auto rt = Runtime::load(stateful_bundle(), "mil");
  auto acc = rt->method("accumulate");
  auto shared = acc->make_state();
  std::vector<std::shared_ptr<State>> own;
  for (int t = 0; t < 8; ++t) own.push_back(acc->make_state());
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        acc->execute({filled(1)}, *shared);
        acc->execute({filled(static_cast<float>(t))}, *own[t]);
      }
    });
  }
  for (auto& th : threads) th.join();
  // 400 serialized increments of small integers: exact in fp32, and any lost
  // update (two calls reading the same old value) would show
  REQUIRE(floats(shared->read("acc")) == scaled(400, 1));
  for (int t = 0; t < 8; ++t) REQUIRE(floats(own[t]->read("acc")) == scaled(50, static_cast<float>(t)));
}
