// program.json parsing, planning and execution on hand-written programs in
// protobuf's JSON mapping (the form coremltools' MessageToDict produces).
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "mil/executor.h"
#include "mil/half.h"
#include "mil/planner.h"
#include "mil/program.h"
#include "program_json.h"
#include "staticllm/errors.h"

using namespace staticllm;
using namespace staticllm::mil;
using namespace staticllm::test;
using nlohmann::json;

namespace {

// y = reshape(x + c, [3, 2]) * 2 over x: fp32 [2, 3].
json affine_program() {
  json ops = {
      const_op("c", immediate("FLOAT32", {3}, {{"floats", {{"values", {1.0, 2.0, 3.0}}}}})),
      op("add", {{"x", named("x")}, {"y", named("c")}}, "a", tensor_type("FLOAT32", {2, 3})),
      const_op("shape", immediate("INT32", {2}, {{"ints", {{"values", {3, 2}}}}})),
      op("reshape", {{"x", named("a")}, {"shape", named("shape")}}, "r", tensor_type("FLOAT32", {3, 2})),
      const_op("two", immediate("FLOAT32", {}, {{"floats", {{"values", {2.0}}}}})),
      op("mul", {{"x", named("r")}, {"y", named("two")}}, "y", tensor_type("FLOAT32", {3, 2})),
  };
  return program(json::array({input("x", "FLOAT32", {2, 3})}), ops, {"y"});
}

MethodMetadata affine_method() {
  MethodMetadata m;
  m.name = "forward";
  m.function_name = "main";
  m.inputs = {spec("x", DType::kFloat32, {2, 3})};
  m.outputs = {spec("y", DType::kFloat32, {3, 2})};
  return m;
}

Tensor f32(Shape shape, std::vector<float> v) {
  Tensor t(DType::kFloat32, std::move(shape));
  std::copy(v.begin(), v.end(), t.data_as<float>());
  return t;
}

std::vector<float> floats(const Tensor& t) { return {t.data_as<float>(), t.data_as<float>() + t.numel()}; }

const OpDecl& find_op(const FunctionDecl& fn, const std::string& name) {
  for (const OpDecl& o : fn.ops) {
    if (o.name == name) return o;
  }
  FAIL("no op " << name);
  throw;
}

}  // namespace

TEST_CASE("program.json functions, ops and immediates are parsed", "[program]") {
  Program p = load_program(write_json(affine_program()), nullptr);
  REQUIRE(p.functions.size() == 1);
  const FunctionDecl& fn = p.functions.at("main");
  REQUIRE(fn.inputs.size() == 1);
  CHECK(fn.inputs[0].type.shape == Shape{2, 3});
  CHECK(fn.outputs == std::vector<std::string>{"y"});
  REQUIRE(fn.ops.size() == 6);
  const OpDecl& add = find_op(fn, "a");
  CHECK(add.type == "add");
  CHECK(add.inputs.at("y")[0].name == "c");
  const Tensor& c = find_op(fn, "c").const_val->tensor;
  CHECK(floats(c) == std::vector<float>{1, 2, 3});
  CHECK(find_op(fn, "two").const_val->tensor.shape().empty());
}

TEST_CASE("immediate encodings: fp16 bytes, int64 strings, bools, strings, packed int4", "[program]") {
  json ops = {
      // fp16 [1.0, 2.0] little-endian: 00 3c 00 40
      const_op("h", immediate("FLOAT16", {2}, {{"bytes", {{"values", "ADwAQA=="}}}})),
      const_op("l", immediate("INT64", {2}, {{"longInts", {{"values", {"9007199254740993", "-5"}}}}})),
      const_op("b", immediate("BOOL", {2}, {{"bools", {{"values", {true, false}}}}})),
      const_op("s", immediate("STRING", {}, {{"strings", {{"values", {"fp16"}}}}})),
      // int4 [1, -2, 3, -8]: bytes e1 83
      const_op("q", immediate("INT4", {4}, {{"bytes", {{"values", "4YM="}}}})),
      const_op("u", immediate("UINT2", {4}, {{"bytes", {{"values", "5A=="}}}})),
  };
  Program p = load_program(write_json(program(json::array(), ops, {})), nullptr);
  const FunctionDecl& fn = p.functions.at("main");
  const Tensor& h = find_op(fn, "h").const_val->tensor;
  CHECK(half_to_float(h.data_as<uint16_t>()[0]) == 1.0f);
  CHECK(half_to_float(h.data_as<uint16_t>()[1]) == 2.0f);
  const Tensor& l = find_op(fn, "l").const_val->tensor;
  CHECK(l.data_as<int64_t>()[0] == 9007199254740993LL);  // not representable as a double
  CHECK(l.data_as<int64_t>()[1] == -5);
  const Tensor& b = find_op(fn, "b").const_val->tensor;
  CHECK(b.dtype() == DType::kBool);
  CHECK((b.data_as<uint8_t>()[0] == 1 && b.data_as<uint8_t>()[1] == 0));
  CHECK(find_op(fn, "s").const_val->is_string);
  CHECK(find_op(fn, "s").const_val->str == "fp16");
  const Tensor& q = find_op(fn, "q").const_val->tensor;
  CHECK(q.dtype() == DType::kInt8);
  CHECK(std::vector<int>(q.data_as<int8_t>(), q.data_as<int8_t>() + 4) == std::vector<int>{1, -2, 3, -8});
  const Tensor& u = find_op(fn, "u").const_val->tensor;
  CHECK(std::vector<int>(u.data_as<uint8_t>(), u.data_as<uint8_t>() + 4) == std::vector<int>{0, 1, 2, 3});
}

TEST_CASE("malformed programs are BundleErrors naming file and place", "[program]") {
  auto error = [](const json& doc) -> std::string {
    try {
      load_program(write_json(doc), nullptr);
    } catch (const BundleError& e) {
      return e.what();
    }
    return "";
  };
  json variadic = affine_program();
  variadic["functions"]["main"]["inputs"][0]["type"]["tensorType"]["dimensions"][0] = {
      {"unknown", {{"variadic", true}}}};
  CHECK_THAT(error(variadic), Catch::Contains("function 'main' input: a variadic dimension must be the only one"));

  json open_const = affine_program();
  auto& first_op = open_const["functions"]["main"]["blockSpecializations"]["CoreML8"]["operations"][0];
  REQUIRE(first_op["type"] == "const");
  first_op["attributes"]["val"]["type"]["tensorType"]["dimensions"][0] = {{"unknown", json::object()}};
  CHECK_THAT(error(open_const), Catch::Contains("a constant's shape must be fixed, got [-1"));

  json no_block = affine_program();
  no_block["functions"]["main"]["opset"] = "CoreML7";
  CHECK_THAT(error(no_block), Catch::Contains("no block for its opset 'CoreML7'"));

  json short_imm = program(
      json::array(), json::array({const_op("c", immediate("FLOAT32", {3}, {{"floats", {{"values", {1.0}}}}}))}), {});
  CHECK_THAT(error(short_imm), Catch::Contains("immediate value has 1 elements, shape [3] needs 3"));
  // the tensor used to be allocated from the declared shape (here 4 TB) before the count check
  json huge_imm = program(
      json::array(),
      json::array({const_op("c", immediate("FLOAT32", {1 << 20, 1 << 20}, {{"floats", {{"values", {1.0}}}}}))}), {});
  CHECK_THAT(error(huge_imm), Catch::Contains("immediate value has 1 elements, shape [1048576, 1048576] needs"));

  json short_bytes = program(
      json::array(), json::array({const_op("c", immediate("FLOAT16", {3}, {{"bytes", {{"values", "ADw="}}}}))}), {});
  CHECK_THAT(error(short_bytes), Catch::Contains("bytes value holds 2 bytes, shape [3] needs 6"));

  json blob = {{"type", tensor_type("FLOAT32", {4})},
               {"blobFileValue", {{"fileName", "@model_path/weights/weight.bin"}, {"offset", "64"}}}};
  CHECK_THAT(error(program(json::array(), json::array({const_op("w", blob)}), {})),
             Catch::Contains("which the package lacks"));

  json huge = program(json::array({input("x", "FLOAT32", {1 << 30, 1 << 30, 4})}), json::array(), {});
  CHECK_THAT(error(huge), Catch::Contains("has too many elements"));

  // numbers beyond what the element type or int64 holds
  json wide_float = program(
      json::array(), json::array({const_op("c", immediate("FLOAT32", {1}, {{"doubles", {{"values", {1e300}}}}}))}), {});
  CHECK_THAT(error(wide_float), Catch::Contains("op 'c' (const): float immediate value") &&
                                    Catch::Contains("out of the element type's range"));
  json wide_half = program(
      json::array(), json::array({const_op("c", immediate("FLOAT16", {1}, {{"doubles", {{"values", {-1e39}}}}}))}), {});
  CHECK_THAT(error(wide_half), Catch::Contains("out of the element type's range"));
  json wide_rank = affine_program();
  wide_rank["functions"]["main"]["inputs"][0]["type"]["tensorType"]["rank"] = uint64_t{1} << 63;
  CHECK_THAT(error(wide_rank), Catch::Contains("integer 9223372036854775808 is out of the int64 range"));
  json wide_string = affine_program();
  wide_string["functions"]["main"]["inputs"][0]["type"]["tensorType"]["rank"] = "99999999999999999999";
  CHECK_THAT(error(wide_string), Catch::Contains("expected an integer, got \"99999999999999999999\""));
  std::string overflow = write_json(affine_program());
  std::ofstream(overflow) << "{\"functions\": {\"main\": {\"opset\": 1e999}}}";
  REQUIRE_THROWS_WITH(load_program(overflow, nullptr), Catch::Contains("not valid JSON") && Catch::Contains("1e999"));

  CHECK_THAT(error(json{{"functions", 3}}), Catch::Contains("expected an object"));
  // found by tests/fuzz: a value nested 65536 levels deep overflowed the stack when printed
  std::string deep = write_json(affine_program());
  std::ofstream(deep) << "{\"functions\": {}, \"x\": " << std::string(65536, '[') << std::string(65536, ']') << "}";
  REQUIRE_THROWS_WITH(load_program(deep, nullptr), Catch::Contains("nested more than 256 levels deep"));
  std::string path = write_json(affine_program());
  std::ofstream(path) << "{\"functions\": ";
  CHECK_THAT(error(json()), Catch::Contains("missing 'functions'"));
  REQUIRE_THROWS_WITH(load_program(path, nullptr), Catch::Contains("not valid JSON"));
}

TEST_CASE("a planned function folds constants, aliases reshapes and runs", "[program]") {
  Program p = load_program(write_json(affine_program()), nullptr);
  auto plan = plan_function(p.functions.at("main"), affine_method());
  // add and mul run; the reshape shares the add's bytes instead of copying
  REQUIRE(plan->steps.size() == 2);
  CHECK(plan->steps[0].op_type == "add");
  CHECK(plan->steps[1].op_type == "mul");
  Executor exec(plan);
  std::vector<Tensor> out = exec.execute({f32({2, 3}, {0, 1, 2, 3, 4, 5})});
  REQUIRE(out.size() == 1);
  CHECK(out[0].shape() == Shape{3, 2});
  CHECK(floats(out[0]) == std::vector<float>{2, 6, 10, 8, 12, 16});
}

TEST_CASE("a contiguous slice views its input's bytes; a strided one copies", "[program]") {
  auto ints = [](const std::string& name, std::vector<int> v) {
    return const_op(name, immediate("INT32", {static_cast<int64_t>(v.size())}, {{"ints", {{"values", v}}}}));
  };
  auto slice = [](const std::string& x, const std::string& b, const std::string& e, const std::string& out,
                  Shape shape) {
    return op("slice_by_index", {{"x", named(x)}, {"begin", named(b)}, {"end", named(e)}}, out,
              tensor_type("FLOAT32", shape));
  };
  json ops = {
      op("add", {{"x", named("x")}, {"y", named("x")}}, "a", tensor_type("FLOAT32", {4, 6})),
      ints("rows_b", {1, 0}),
      ints("rows_e", {3, 6}),
      ints("cols_b", {0, 1}),
      ints("cols_e", {4, 3}),
      ints("last_b", {3, 0}),
      ints("last_e", {4, 6}),
      slice("a", "rows_b", "rows_e", "rows", {2, 6}),  // rows 1..2 of the arena value: a view
      slice("a", "cols_b", "cols_e", "cols", {4, 2}),  // columns 1..2: copied
      slice("x", "last_b", "last_e", "last", {1, 6}),  // the input's last row: a view of the caller's buffer
      op("add", {{"x", named("rows")}, {"y", named("rows")}}, "y_rows", tensor_type("FLOAT32", {2, 6})),
      op("add", {{"x", named("cols")}, {"y", named("cols")}}, "y_cols", tensor_type("FLOAT32", {4, 2})),
      op("add", {{"x", named("last")}, {"y", named("last")}}, "y_last", tensor_type("FLOAT32", {1, 6})),
  };
  MethodMetadata m;
  m.name = "forward";
  m.function_name = "main";
  m.inputs = {spec("x", DType::kFloat32, {4, 6})};
  m.outputs = {spec("y_rows", DType::kFloat32, {2, 6}), spec("y_cols", DType::kFloat32, {4, 2}),
               spec("y_last", DType::kFloat32, {1, 6})};
  json prog = program(json::array({input("x", "FLOAT32", {4, 6})}), ops, {"y_rows", "y_cols", "y_last"});
  Program p = load_program(write_json(prog), nullptr);
  auto plan = plan_function(p.functions.at("main"), m);
  std::vector<std::string> types;
  for (const PlanStep& s : plan->steps) types.push_back(s.op_type);
  CHECK(types == std::vector<std::string>{"add", "slice_by_index", "add", "add", "add"});
  std::vector<float> x(24);
  for (int i = 0; i < 24; ++i) x[i] = static_cast<float>(i);
  std::vector<Tensor> out = Executor(plan).execute({f32({4, 6}, x)});
  CHECK(floats(out[0]) == std::vector<float>{24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 68});
  CHECK(floats(out[1]) == std::vector<float>{4, 8, 28, 32, 52, 56, 76, 80});
  CHECK(floats(out[2]) == std::vector<float>{36, 38, 40, 42, 44, 46});
}

TEST_CASE("ops on constants only are evaluated once at plan time", "[program]") {
  json ops = {
      const_op("c", immediate("FLOAT32", {2}, {{"floats", {{"values", {1.0, 2.0}}}}})),
      op("add", {{"x", named("c")}, {"y", named("c")}}, "cc", tensor_type("FLOAT32", {2})),
      op("add", {{"x", named("x")}, {"y", named("cc")}}, "y", tensor_type("FLOAT32", {2})),
  };
  MethodMetadata m;
  m.name = "forward";
  m.function_name = "main";
  m.inputs = {spec("x", DType::kFloat32, {2})};
  m.outputs = {spec("y", DType::kFloat32, {2})};
  Program p = load_program(write_json(program(json::array({input("x", "FLOAT32", {2})}), ops, {"y"})), nullptr);
  auto plan = plan_function(p.functions.at("main"), m);
  REQUIRE(plan->steps.size() == 1);
  CHECK(floats(Executor(plan).execute({f32({2}, {10, 20})})[0]) == std::vector<float>{12, 24});
}

TEST_CASE("the arena reuses the space of dead values", "[program]") {
  // a chain of 8 adds over [1024] fp32: live values never exceed two
  json ops = json::array();
  std::string prev = "x";
  for (int i = 0; i < 8; ++i) {
    std::string out = "v" + std::to_string(i);
    ops.push_back(op("add", {{"x", named(prev)}, {"y", named("x")}}, out, tensor_type("FLOAT32", {1024})));
    prev = out;
  }
  MethodMetadata m;
  m.name = "forward";
  m.function_name = "main";
  m.inputs = {spec("x", DType::kFloat32, {1024})};
  m.outputs = {spec(prev, DType::kFloat32, {1024})};
  Program p = load_program(write_json(program(json::array({input("x", "FLOAT32", {1024})}), ops, {prev})), nullptr);
  auto plan = plan_function(p.functions.at("main"), m);
  CHECK(plan->arena_bytes <= 2 * 4096);
  for (const PlanValue& v : plan->values) {
    if (v.offset >= 0) CHECK(v.offset % 64 == 0);
  }
  Tensor x(DType::kFloat32, {1024});
  for (int i = 0; i < 1024; ++i) x.data_as<float>()[i] = static_cast<float>(i);
  Tensor y = Executor(plan).execute({x})[0];
  CHECK(y.data_as<float>()[1023] == 9 * 1023.0f);
}

TEST_CASE("unsupported ops and type disagreements fail the plan, not the run", "[program]") {
  Program p = load_program(write_json(affine_program()), nullptr);
  FunctionDecl fn = p.functions.at("main");

  FunctionDecl unknown = fn;
  unknown.ops[1].type = "fancy_add";
  REQUIRE_THROWS_AS(plan_function(unknown, affine_method()), UnsupportedOpError);
  REQUIRE_THROWS_WITH(plan_function(unknown, affine_method()),
                      Catch::StartsWith("function 'main', op 'a' (type 'fancy_add'): op not supported by the portable "
                                        "interpreter; supported: ") &&
                          Catch::Contains("linear"));

  FunctionDecl nested = fn;  // blocks on an op other than cond and while_loop
  nested.ops[1].blocks.emplace_back();
  REQUIRE_THROWS_AS(plan_function(nested, affine_method()), UnsupportedOpError);
  REQUIRE_THROWS_WITH(plan_function(nested, affine_method()), Catch::Contains("ops with nested blocks"));

  FunctionDecl wrong_type = fn;
  wrong_type.ops[1].outputs[0].type.dtype = DType::kFloat16;
  REQUIRE_THROWS_WITH(plan_function(wrong_type, affine_method()),
                      Catch::Contains("output 'a' is declared fp16 [2, 3] but the op computes fp32 [2, 3]"));

  MethodMetadata bad_out = affine_method();
  bad_out.outputs[0].shape = {6};
  REQUIRE_THROWS_WITH(plan_function(fn, bad_out),
                      Catch::Contains("metadata output 'y' is fp32 [6] but the program declares fp32 [3, 2]"));
  MethodMetadata bad_in = affine_method();
  bad_in.inputs[0].name = "z";
  REQUIRE_THROWS_WITH(plan_function(fn, bad_in), Catch::Contains("program input 'x' is not in the method's metadata"));
}

TEST_CASE("an unsupported op with unparseable types is reported as unsupported", "[program]") {
  json doc = affine_program();
  json loop = {{"type", "custom_loop"},
               {"outputs", output("w", {{"tupleType", json::object()}})},
               {"blocks", json::array({json::object()})}};
  doc["functions"]["main"]["blockSpecializations"]["CoreML8"]["operations"].push_back(loop);
  Program p = load_program(write_json(doc), nullptr);
  REQUIRE_THROWS_AS(plan_function(p.functions.at("main"), affine_method()), UnsupportedOpError);
  REQUIRE_THROWS_WITH(plan_function(p.functions.at("main"), affine_method()),
                      Catch::StartsWith("function 'main', op 'w' (type 'custom_loop'): op not supported"));

  // while_loop is supported: its tuple-typed loop variable fails the load
  doc["functions"]["main"]["blockSpecializations"]["CoreML8"]["operations"].back()["type"] = "while_loop";
  REQUIRE_THROWS_WITH(load_program(write_json(doc), nullptr),
                      Catch::Contains("function 'main': only tensor, state and list values are supported (tuples"));
}

// Found by fuzzing: a string constant fed to a kernel as a tensor, which read
// through its null data pointer.
TEST_CASE("a string value where a tensor is expected is a BundleError", "[program]") {
  MethodMetadata m;
  m.name = "forward";
  m.function_name = "main";
  m.inputs = {spec("x", DType::kFloat32, {2})};
  m.outputs = {spec("y", DType::kFloat32, {2})};
  json ops = json::array({
      const_op("s", immediate("STRING", {}, {{"strings", {{"values", {"fp16"}}}}})),
      op("add", {{"x", named("x")}, {"y", named("s")}}, "y", tensor_type("FLOAT32", {2})),
  });
  Program p = load_program(write_json(program(json::array({input("x", "FLOAT32", {2})}), ops, {"y"})), nullptr);
  REQUIRE_THROWS_WITH(plan_function(p.functions.at("main"), m),
                      Catch::EndsWith("op 'y' (type 'add'): parameter 'y' is a string; expected a tensor"));
  // nor can a function take a string input
  Program q = load_program(write_json(program(json::array({input("x", "STRING", {})}), json::array(), {"x"})), nullptr);
  m.inputs = {spec("x", DType::kFloat32, {})};
  REQUIRE_THROWS_WITH(plan_function(q.functions.at("main"), m), Catch::Contains("program input 'x' is a string"));
}

// A shape constant can ask for terabytes; planning refuses
// before allocating rather than dying in the allocator or the OOM killer.
TEST_CASE("a program needing more memory than the machine has fails to load", "[program]") {
  MethodMetadata m;
  m.name = "forward";
  m.function_name = "main";
  m.inputs = {spec("x", DType::kFloat32, {2, 3})};
  auto plan_error = [&](const json& ops, const std::string& out, const std::vector<int64_t>& shape) -> std::string {
    m.outputs = {spec(out, DType::kFloat32, shape)};
    json doc = program(json::array({input("x", "FLOAT32", {2, 3})}), ops, {out});
    Program p = load_program(write_json(doc), nullptr);
    try {
      plan_function(p.functions.at("main"), m);
    } catch (const BundleError& e) {
      return e.what();
    }
    return "";
  };
  const int64_t big = int64_t{1} << 19;  // [2^19, 2^19] fp32 = 1 TB
  // folded at plan time (all inputs constant)
  json fill_ops = json::array({
      const_op("shape", immediate("INT32", {2}, {{"ints", {{"values", {big, big}}}}})),
      op("fill", {{"shape", named("shape")}}, "f", tensor_type("FLOAT32", {big, big})),
  });
  CHECK_THAT(plan_error(fill_ops, "f", {big, big}),
             Catch::Contains("op 'f' (type 'fill'): the method needs 1048576 MB of working memory by here"));
  // a run-time value in the arena
  json tile_ops = json::array({
      const_op("reps", immediate("INT32", {2}, {{"ints", {{"values", {big / 2, big / 3}}}}})),
      op("tile", {{"x", named("x")}, {"reps", named("reps")}}, "t", tensor_type("FLOAT32", {big, big / 3 * 3})),
  });
  CHECK_THAT(plan_error(tile_ops, "t", {big, big / 3 * 3}),
             Catch::Contains("method 'forward' (function 'main'): the method needs") &&
                 Catch::Contains("STATICLLM_MAX_MEMORY_MB"));
}

TEST_CASE("one executor serves concurrent callers and survives kernel errors", "[program]") {
  // json::array: `json ops = {op(...)}` is a one-element array for GCC but a
  // copy of the op object for clang (one-element brace lists of json).
  json ops = json::array({
      op("gather",
         {{"x", named("table")},
          {"indices", named("idx")},
          {"axis", inline_value(immediate("INT32", {}, {{"ints", {{"values", {0}}}}}))}},
         "g", tensor_type("FLOAT32", {2, 3})),
  });
  MethodMetadata m;
  m.name = "forward";
  m.function_name = "main";
  m.inputs = {spec("table", DType::kFloat32, {4, 3}), spec("idx", DType::kInt32, {2})};
  m.outputs = {spec("g", DType::kFloat32, {2, 3})};
  json inputs = json::array({input("table", "FLOAT32", {4, 3}), input("idx", "INT32", {2})});
  Program p = load_program(write_json(program(inputs, ops, {"g"})), nullptr);
  Executor exec(plan_function(p.functions.at("main"), m));
  Tensor table(DType::kFloat32, {4, 3});
  for (int i = 0; i < 12; ++i) table.data_as<float>()[i] = static_cast<float>(i);
  auto idx = [](int a, int b) {
    Tensor t(DType::kInt32, {2});
    t.data_as<int32_t>()[0] = a;
    t.data_as<int32_t>()[1] = b;
    return t;
  };
  REQUIRE_THROWS_AS(exec.execute({table, idx(0, 4)}), InputError);

  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        int row = (t + i) % 4;
        Tensor g = exec.execute({table, idx(row, 3 - row)})[0];
        ok[t] += g.data_as<float>()[0] == 3.0f * row && g.data_as<float>()[5] == 3.0f * (3 - row) + 2;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(ok == std::vector<int>(4, 200));
  CHECK(exec.context_count() <= 5);
}

namespace {

// y = x W^T (and s = W + W) for W = constexpr_blockwise_shift_scale(d, sc):
// int8 codes d [4, 8] = i - 16, scales 0.5 for rows 0-1 and 0.25 for rows 2-3.
json compressed_program(bool with_sum) {
  std::vector<int> codes;
  for (int i = 0; i < 32; ++i) codes.push_back(i - 16);
  json ops = {
      const_op("d", immediate("INT8", {4, 8}, {{"ints", {{"values", codes}}}})),
      const_op("sc", immediate("FLOAT32", {2, 1}, {{"floats", {{"values", {0.5, 0.25}}}}})),
      op("constexpr_blockwise_shift_scale", {{"data", named("d")}, {"scale", named("sc")}}, "w",
         tensor_type("FLOAT32", {4, 8})),
      op("linear", {{"x", named("x")}, {"weight", named("w")}}, "y", tensor_type("FLOAT32", {1, 4})),
  };
  if (with_sum) ops.push_back(op("add", {{"x", named("w")}, {"y", named("w")}}, "s", tensor_type("FLOAT32", {4, 8})));
  return program(json::array({input("x", "FLOAT32", {1, 8})}), ops, {"y"});
}

const PlanValue& value_named(const Plan& plan, const std::string& name) {
  for (const PlanValue& v : plan.values) {
    if (v.name == name) return v;
  }
  throw std::runtime_error("no value " + name);
}

}  // namespace

TEST_CASE("a decompressed weight stays compressed for linear; functions planned together share constants",
          "[program]") {
  Program p = load_program(write_json(compressed_program(false)), nullptr);
  MethodMetadata m;
  m.name = "forward";
  m.function_name = "main";
  m.inputs = {spec("x", DType::kFloat32, {1, 8})};
  m.outputs = {spec("y", DType::kFloat32, {1, 4})};
  ConstPool pool;
  auto first = plan_function(p.functions.at("main"), m, &pool);
  auto second = plan_function(p.functions.at("main"), m, &pool);
  const PlanValue& w1 = value_named(*first, "w");
  REQUIRE(w1.lazy != nullptr);
  CHECK(w1.lazy == value_named(*second, "w").lazy);  // one constant for both functions
  REQUIRE(w1.lazy->compressed.at(0) != nullptr);
  CHECK_FALSE(w1.lazy->made());  // never expanded: linear reads the codes
  Tensor x = f32({1, 8}, {1, 1, 1, 1, 1, 1, 1, 1});
  std::vector<float> y = floats(Executor(first).execute({x})[0]);
  // row n: sum over k of (8n + k - 16) * scale(n)
  CHECK(y == std::vector<float>{-100.f * 0.5f, -36.f * 0.5f, 28.f * 0.25f, 92.f * 0.25f});
  CHECK(floats(Executor(second).execute({x})[0]) == y);

  // Another consumer expands W once; every function planned with the pool shares the result.
  Program q = load_program(write_json(compressed_program(true)), nullptr);
  ConstPool pool2;
  auto third = plan_function(q.functions.at("main"), m, &pool2);
  auto fourth = plan_function(q.functions.at("main"), m, &pool2);
  CHECK(value_named(*third, "w").lazy->made());
  const Tensor& s3 = value_named(*third, "s").constant;
  CHECK(s3.data() == value_named(*fourth, "s").constant.data());
  CHECK(s3.data_as<float>()[0] == -16.f);  // (0 - 16) * 0.5 * 2
  CHECK(floats(Executor(third).execute({x})[0]) == y);
}
