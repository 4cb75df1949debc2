// Op-table entries of runtime/mil/ops/elementwise_binary.cpp: each op on a
// [2, 3] x [3] broadcast in the run's float dtype, the arithmetic ones in
// int32 too, the logical ones on bools.
#include <cmath>

#include "op_table.h"

namespace staticllm::test::optable {
namespace {

using Fn = double (*)(double, double);

double py_floor_div(double a, double b) { return std::floor(a / b); }
double py_mod(double a, double b) { return a - b * std::floor(a / b); }  // the sign follows the divisor

// x [2, 3] against y [3], which broadcasts over the rows.
Entry binary(const std::string& type, Spec x, Spec y, bool to_bool, Fn f) {
  return op(type, "[2, 3] with [3] broadcast")
      .in("x", std::move(x))
      .in("y", std::move(y))
      .reference([=](const Inputs& in) {
        DType out = to_bool ? DType::kBool : in["x"].dtype;
        return std::vector<Array>{zip(in["x"], in["y"], out, f)};
      });
}

std::vector<Entry> arithmetic() {
  const std::vector<std::pair<const char*, Fn>> ops = {
      {"add", [](double a, double b) { return a + b; }},
      {"sub", [](double a, double b) { return a - b; }},
      {"mul", [](double a, double b) { return a * b; }},
      {"real_div", [](double a, double b) { return a / b; }},
      {"maximum", [](double a, double b) { return std::max(a, b); }},
      {"minimum", [](double a, double b) { return std::min(a, b); }},
      {"floor_div", py_floor_div},
      {"mod", py_mod},
  };
  std::vector<Entry> out;
  for (const auto& [type, f] : ops) {
    // No quotient lands near an integer (floor is exact either side of it), except exact ones.
    out.push_back(binary(type, F({2, 3}, {-7, 7.5, 5, 9, -3.5, 1}), F({3}, {2, -2.5, 3}), false, f));
    Entry ints = binary(type, I32({2, 3}, {-7, 7, 5, 9, -3, 0}), I32({3}, {2, -2, 3}), false, f);
    ints.what += ", int32";
    if (std::string(type) != "real_div") out.push_back(ints);
  }
  return out;
}

std::vector<Entry> powers() {
  Fn p = [](double a, double b) { return std::pow(a, b); };
  return {
      binary("pow", F({2, 3}, {0.5, 2, 3.25, 1.5, 4, 0.75}), F({3}, {2, 0.5, 3}), false, p),
      binary("pow", F({2, 3}, {-3, 1.5, -2, 0, 4, -1}), F({3}, {2, 2, 3}), false, p).tol16(2e-3, 1e-3),
  };
}

std::vector<Entry> comparisons() {
  const std::vector<std::pair<const char*, Fn>> ops = {
      {"equal", [](double a, double b) { return a == b ? 1.0 : 0.0; }},
      {"not_equal", [](double a, double b) { return a != b ? 1.0 : 0.0; }},
      {"less", [](double a, double b) { return a < b ? 1.0 : 0.0; }},
      {"less_equal", [](double a, double b) { return a <= b ? 1.0 : 0.0; }},
      {"greater", [](double a, double b) { return a > b ? 1.0 : 0.0; }},
      {"greater_equal", [](double a, double b) { return a >= b ? 1.0 : 0.0; }},
  };
  std::vector<Entry> out;
  for (const auto& [type, f] : ops) {
    out.push_back(binary(type, F({2, 3}, {1, 2.5, -3, 0.1, 2.5, 7}), F({3}, {1, 2.5, -2}), true, f));
    Entry ints = binary(type, I32({2, 3}, {1, 2, -3, 0, 5, -2}), I32({3}, {1, 3, -2}), true, f);
    ints.what += ", int32";
    out.push_back(ints);
  }
  return out;
}

std::vector<Entry> logical() {
  const std::vector<std::pair<const char*, Fn>> ops = {
      {"logical_and", [](double a, double b) { return a != 0 && b != 0 ? 1.0 : 0.0; }},
      {"logical_or", [](double a, double b) { return a != 0 || b != 0 ? 1.0 : 0.0; }},
      {"logical_xor", [](double a, double b) { return (a != 0) != (b != 0) ? 1.0 : 0.0; }},
  };
  std::vector<Entry> out;
  for (const auto& [type, f] : ops) {
    out.push_back(op(type, "[2, 2] with [2] broadcast, every pair")
                      .in("x", Bool({2, 2}, {0, 0, 1, 1}))
                      .in("y", Bool({2}, {0, 1}))
                      .reference([f = f](const Inputs& in) {
                        return std::vector<Array>{zip(in["x"], in["y"], DType::kBool, f)};
                      }));
  }
  return out;
}

[[maybe_unused]] const bool registered =
    add_entries(arithmetic()) && add_entries(powers()) && add_entries(comparisons()) && add_entries(logical());

}  // namespace
}  // namespace staticllm::test::optable
