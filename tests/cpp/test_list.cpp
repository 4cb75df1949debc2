// MIL lists: the list ops' errors (indices out of range are InputErrors
// naming the op; lengths known only at run time ask for the eager path;
// element types that cannot be known are refused), and lists carried through
// while_loop: a fixed-length list written at run-time indices runs in one
// plan, a list that grows runs on the eager path.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "mil/executor.h"
#include "mil/planner.h"
#include "mil/program.h"
#include "op_harness.h"
#include "program_json.h"
#include "staticllm/errors.h"

using namespace staticllm;
using namespace staticllm::mil;
using namespace staticllm::test;
using nlohmann::json;

namespace {

Tensor three_rows() { return f32({3, 2}, {1, 2, 3, 4, 5, 6}); }
Tensor index(int32_t i) { return i32({}, {i}); }

}  // namespace

TEST_CASE("list indices out of range are InputErrors naming the op", "[list]") {
  const std::string where = "op 'list_read' (list_read): ";
  REQUIRE_THROWS_AS(run_op("list_read", {{"ls", {list(three_rows(), false)}}, {"index", {input(index(3))}}}),
                    InputError);
  REQUIRE_THROWS_WITH(run_op("list_read", {{"ls", {list(three_rows(), false)}}, {"index", {input(index(3))}}}),
                      where + "list index 3 out of range for a list of length 3");
  // a dynamic-length list grows on writes, never on reads
  REQUIRE_THROWS_WITH(run_op("list_read", {{"ls", {list(three_rows(), true)}}, {"index", {constant(index(-1))}}}),
                      where + "list index -1 out of range for a list of length 3");
  // a constant index is checked when the op is planned
  REQUIRE_THROWS_AS(run_op("list_write", {{"ls", {list(three_rows(), false)}},
                                          {"index", {constant(index(3))}},
                                          {"value", {input(f32({2}, {0, 0}))}}}),
                    InputError);
  REQUIRE_THROWS_WITH(
      run_op("list_write",
             {{"ls", {list(three_rows(), false)}}, {"index", {input(index(5))}}, {"value", {input(f32({2}, {0, 0}))}}}),
      "op 'list_write' (list_write): list index 5 out of range for a list of length 3");
  REQUIRE_THROWS_WITH(
      run_op("list_gather", {{"ls", {list(three_rows(), false)}}, {"indices", {input(i32({2}, {0, -1}))}}}),
      "op 'list_gather' (list_gather): list index -1 out of range for a list of length 3");
  REQUIRE_THROWS_WITH(run_op("list_scatter", {{"ls", {list(three_rows(), false)}},
                                              {"indices", {input(i32({1}, {3}))}},
                                              {"value", {input(f32({1, 2}, {0, 0}))}}}),
                      "op 'list_scatter' (list_scatter): list index 3 out of range for a list of length 3");
}

TEST_CASE("a list length known only at run time asks for the eager path", "[list]") {
  REQUIRE_THROWS_AS(run_op("make_list", {{"init_length", {input(index(2))}}, {"elem_shape", {constant(index(2))}}}),
                    RuntimeValueNeeded);
  REQUIRE_THROWS_WITH(
      run_op("list_write",
             {{"ls", {list(three_rows(), true)}}, {"index", {input(index(1))}}, {"value", {input(f32({2}, {0, 0}))}}}),
      "list_write: 'index' is known only at run time, and a write past the end of a dynamic-length "
      "list grows it");
  REQUIRE_THROWS_AS(run_op("list_scatter", {{"ls", {list(three_rows(), true)}},
                                            {"indices", {input(i32({1}, {0}))}},
                                            {"value", {input(f32({1, 2}, {0, 0}))}}}),
                    RuntimeValueNeeded);
}

TEST_CASE("list element types that cannot be known or do not match are refused", "[list]") {
  REQUIRE_THROWS_WITH(run_op("make_list", {{"elem_shape", {str("s0")}}}),
                      Catch::StartsWith("make_list: 'elem_shape' dimension 0 is not a constant integer (a symbolic "
                                        "element shape is not supported"));
  REQUIRE_THROWS_WITH(run_op("make_list", {{"elem_shape", {constant(index(2))}}, {"dtype", {str("complex")}}}),
                      "make_list: unsupported element dtype 'complex'");
  REQUIRE_THROWS_WITH(run_op("list_write", {{"ls", {list(three_rows(), false)}},
                                            {"index", {input(index(0))}},
                                            {"value", {input(f32({3}, {0, 0, 0}))}}}),
                      "list_write: 'value' is fp32 [3], the list's elements need fp32 [2]");
  REQUIRE_THROWS_WITH(run_op("list_length", {{"ls", {input(three_rows())}}}),
                      "list_length: 'ls' must be a list, got fp32 [3, 2]");
}

namespace {

json list_type(const std::vector<int64_t>& elem_shape, int64_t length) {
  return {
      {"listType",
       {{"type", tensor_type("FLOAT32", elem_shape)}, {"length", {{"constant", {{"size", std::to_string(length)}}}}}}}};
}

json int_const(const std::string& name, int32_t v) {
  return const_op(name, immediate("INT32", {}, {{"ints", {{"values", {v}}}}}));
}

json block(const json& inputs, const json& ops, const std::vector<std::string>& outputs) {
  return {{"inputs", inputs}, {"operations", ops}, {"outputs", outputs}};
}

json list_input(const std::string& name) { return {{"name", name}, {"type", list_type({2}, 2)}}; }

// ls = make_list(2 elements of [2], dynamic_length); i = 0;
// while i < n: ls[i] = row * i; i += 1. Outputs the list's length and its
// elements 0 and 1 (list_gather). With n <= 2 the list keeps its length; with
// a dynamic-length list and n > 2 it grows.
json filling_loop(bool dynamic_length) {
  const json kI = tensor_type("INT32", {});
  json make = op("make_list",
                 {{"init_length", inline_value(immediate("INT32", {}, {{"ints", {{"values", {2}}}}}))},
                  {"dynamic_length", inline_value(immediate("BOOL", {}, {{"bools", {{"values", {dynamic_length}}}}}))},
                  {"elem_shape", inline_value(immediate("INT32", {}, {{"ints", {{"values", {2}}}}}))}},
                 "ls0", list_type({2}, 2));
  json cond =
      block(json::array({input("i_c", "INT32", {}), list_input("ls_c")}),
            json::array({op("less", {{"x", named("i_c")}, {"y", named("n")}}, "go", tensor_type("BOOL", {}))}), {"go"});
  json fp32 = immediate("STRING", {}, {{"strings", {{"values", {"fp32"}}}}});
  json body_ops = json::array({
      int_const("one", 1),
      op("add", {{"x", named("i_b")}, {"y", named("one")}}, "i_next", kI),
      op("cast", {{"x", named("i_b")}, {"dtype", inline_value(fp32)}}, "f", tensor_type("FLOAT32", {})),
      op("mul", {{"x", named("row")}, {"y", named("f")}}, "v", tensor_type("FLOAT32", {2})),
      op("list_write", {{"ls", named("ls_b")}, {"index", named("i_b")}, {"value", named("v")}}, "ls_next",
         list_type({2}, 2)),
  });
  json body = block(json::array({input("i_b", "INT32", {}), list_input("ls_b")}), body_ops, {"i_next", "ls_next"});
  json vars = {{"arguments", json::array({json{{"name", "zero"}}, json{{"name", "ls0"}}})}};
  json loop = {
      {"type", "while_loop"},
      {"inputs", {{"loop_vars", vars}}},
      {"outputs", json::array({json{{"name", "i"}, {"type", kI}}, json{{"name", "ls"}, {"type", list_type({2}, 2)}}})},
      {"blocks", json::array({cond, body})}};
  json ops = json::array({
      int_const("zero", 0),
      make,
      loop,
      op("list_length", {{"ls", named("ls")}}, "len", kI),
      op("list_gather",
         {{"ls", named("ls")}, {"indices", inline_value(immediate("INT32", {2}, {{"ints", {{"values", {0, 1}}}}}))}},
         "g", tensor_type("FLOAT32", {2, 2})),
  });
  return program(json::array({input("n", "INT32", {}), input("row", "FLOAT32", {2})}), ops, {"len", "g"});
}

MethodMetadata filling_method() {
  MethodMetadata m;
  m.name = m.function_name = "main";
  m.inputs = {spec("n", DType::kInt32, {}), spec("row", DType::kFloat32, {2})};
  m.outputs = {spec("len", DType::kInt32, {}), spec("g", DType::kFloat32, {2, 2})};
  return m;
}

}  // namespace

TEST_CASE("a fixed-length list written in a while_loop runs in one plan", "[list][control_flow]") {
  Program p = load_program(write_json(filling_loop(false)), nullptr);
  Executor exec(plan_function(p.functions.at("main"), filling_method()));
  std::vector<Tensor> out = exec.execute({index(2), f32({2}, {1, 2})});
  CHECK(out[0].data_as<int32_t>()[0] == 2);
  CHECK(values(out[1]) == std::vector<float>{0, 0, 1, 2});
  out = exec.execute({index(1), f32({2}, {1, 2})});
  CHECK(values(out[1]) == std::vector<float>{0, 0, 0, 0});
  // the third write is past the end of the list
  REQUIRE_THROWS_WITH(exec.execute({index(3), f32({2}, {1, 2})}),
                      "op 'ls_next' (list_write): list index 2 out of range for a list of length 2");
}

TEST_CASE("a list that grows in a while_loop runs on the eager path", "[list][control_flow]") {
  Program p = load_program(write_json(filling_loop(true)), nullptr);
  const FunctionDecl& fn = p.functions.at("main");
  REQUIRE_THROWS_AS(plan_function(fn, filling_method()), RuntimeValueNeeded);
  for (int32_t n : {0, 2, 5}) {
    const std::vector<Tensor> call = {index(n), f32({2}, {1, 2})};
    PlanFor eager;
    eager.input_values = &call;
    Executor exec(plan_function(fn, filling_method(), nullptr, eager));
    std::vector<Tensor> out = exec.execute(call);
    CHECK(out[0].data_as<int32_t>()[0] == std::max(n, 2));
    CHECK(values(out[1]) == (n == 0 ? std::vector<float>{0, 0, 0, 0} : std::vector<float>{0, 0, 1, 2}));
  }
}

namespace {

// ls = p ? (ls0 with row at 2) : (ls0 with row at 0), ls0 a dynamic-length
// list of one element [2]: the branches leave it 3 and 1 long.
json branching_writes() {
  json make = op("make_list", {{"elem_shape", inline_value(immediate("INT32", {}, {{"ints", {{"values", {2}}}}}))}},
                 "ls0", list_type({2}, 1));
  auto write_at = [](int32_t at, const std::string& out) {
    json index = inline_value(immediate("INT32", {}, {{"ints", {{"values", {at}}}}}));
    json w =
        op("list_write", {{"ls", named("ls0")}, {"index", index}, {"value", named("row")}}, out, list_type({2}, 1));
    return block(json::array(), json::array({w}), {out});
  };
  json c = {{"type", "cond"},
            {"inputs", {{"pred", named("p")}}},
            {"outputs", json::array({json{{"name", "ls"}, {"type", list_type({2}, 1)}}})},
            {"blocks", json::array({write_at(2, "t"), write_at(0, "f")})}};
  json ops = json::array({make, c, op("list_length", {{"ls", named("ls")}}, "len", tensor_type("INT32", {}))});
  return program(json::array({input("p", "BOOL", {}), input("row", "FLOAT32", {2})}), ops, {"len"});
}

}  // namespace

TEST_CASE("a cond whose branches leave lists of different lengths runs on the eager path", "[list][control_flow]") {
  Program p = load_program(write_json(branching_writes()), nullptr);
  MethodMetadata m;
  m.name = m.function_name = "main";
  m.inputs = {spec("p", DType::kBool, {}), spec("row", DType::kFloat32, {2})};
  m.outputs = {spec("len", DType::kInt32, {})};
  REQUIRE_THROWS_WITH(plan_function(p.functions.at("main"), m),
                      "function 'main', op 'ls' (type 'cond'): the branches yield list of 3 fp32 [2] and list of 1 "
                      "fp32 [2] as output 0");
  for (bool pred : {true, false}) {
    const std::vector<Tensor> call = {boolean({}, {pred}), f32({2}, {1, 2})};
    PlanFor eager;
    eager.input_values = &call;
    Executor exec(plan_function(p.functions.at("main"), m, nullptr, eager));
    CHECK(exec.execute(call)[0].data_as<int32_t>()[0] == (pred ? 3 : 1));
  }
}
