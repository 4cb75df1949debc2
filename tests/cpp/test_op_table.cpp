// Every registered interpreter op against its op-table entries
// (tests/cpp/op_table/): the coverage check names each op without an entry;
// the run check plans and runs each entry in fp32 and fp16 (once in its own
// dtypes when it takes no floats) and compares with the entry's reference.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "op_harness.h"
#include "op_table/op_table.h"

using namespace staticllm;
using namespace staticllm::test;
using namespace staticllm::test::optable;

namespace {

Array read_tensor(const Tensor& t) { return {t.dtype(), t.shape(), doubles(t)}; }

bool is_float(DType t) { return t == DType::kFloat16 || t == DType::kFloat32 || t == DType::kFloat64; }

// Empty when `got` matches `want`; else what differs (at most a few elements).
std::string compare(const std::string& what, const Array& got, const Array& want, const Entry& e) {
  std::ostringstream msg;
  if (got.dtype != want.dtype || got.shape != want.shape) {
    msg << what << ": got " << spec_to_string(got.dtype, got.shape) << ", expected "
        << spec_to_string(want.dtype, want.shape) << "\n";
    return msg.str();
  }
  Tol tol = got.dtype == DType::kFloat16 ? e.fp16 : e.fp32;
  int shown = 0;
  for (size_t i = 0; i < got.v.size(); ++i) {
    double g = got.v[i], w = want.v[i];
    bool ok = is_float(got.dtype)
                  ? (std::isnan(w) ? std::isnan(g) : (g == w || std::abs(g - w) <= tol.atol + tol.rtol * std::abs(w)))
                  : g == w;
    if (!ok && shown++ < 4) msg << what << "[" << i << "]: got " << g << ", expected " << w << "\n";
  }
  if (shown > 4) msg << what << ": " << shown << " elements differ\n";
  return msg.str();
}

// Runs one entry with `run_float` standing in for its float dtype; returns the failures.
std::string run_entry(const Entry& e, DType run_float) {
  std::map<std::string, std::vector<Arg>> params;
  std::map<std::string, std::vector<Tensor>> tensors;  // share storage with the op's (written states)
  Inputs inputs;
  inputs.float_dtype = run_float;
  for (const auto& p : e.params) {
    if (!p.spec.str.empty()) {
      params[p.name].push_back(str(p.spec.str));
      continue;
    }
    Tensor t = tensor_of(p.spec.dtype.value_or(run_float), p.spec.shape, p.spec.v);
    params[p.name].push_back(p.spec.is_list ? list(t, p.spec.dynamic_length, p.is_const)
                             : p.is_const   ? constant(t)
                                            : input(t));
    tensors[p.name].push_back(t);
    inputs.by_name[p.name].push_back(read_tensor(t));
  }
  std::vector<mil::ValueType> declared;
  if (!e.declared_like.empty()) {
    const Tensor& t = tensors.at(e.declared_like).at(0);
    declared.push_back({t.dtype(), t.shape()});
  }
  for (const Spec& s : e.declared) declared.push_back({s.dtype.value_or(run_float), s.shape});
  std::vector<Array> want = e.ref(inputs);
  std::vector<Tensor> outs = run_op(e.op, params, declared);
  std::vector<Array> got;
  for (const auto& t : outs) got.push_back(read_tensor(t));
  for (const auto& name : e.written) got.push_back(read_tensor(tensors.at(name).at(0)));
  if (got.size() != want.size()) {
    return std::to_string(got.size()) + " results (outputs and written inputs), expected " +
           std::to_string(want.size()) + "\n";
  }
  std::string failures;
  for (size_t i = 0; i < got.size(); ++i) {
    std::string what = i < outs.size() ? "output " + std::to_string(i) : "written " + e.written[i - outs.size()];
    failures += compare(what, got[i], want[i], e);
  }
  return failures;
}

}  // namespace

TEST_CASE("every registered interpreter op has an op-table entry", "[ops][op_table]") {
  std::set<std::string> covered;
  for (const auto& e : entries()) covered.insert(e.op);
  std::vector<std::string> registered = mil::OpRegistry::instance().op_types();
  std::string missing, unknown;
  for (const auto& t : registered) {
    if (!covered.count(t)) missing += " " + t;
  }
  for (const auto& t : covered) {
    if (std::find(registered.begin(), registered.end(), t) == registered.end()) unknown += " " + t;
  }
  INFO(registered.size() << " registered ops, " << covered.size() << " with entries");
  INFO("ops without an entry in tests/cpp/op_table/:" << missing);
  CHECK(missing.empty());
  INFO("op-table entries for ops that are not registered:" << unknown);
  CHECK(unknown.empty());
}

TEST_CASE("every op-table entry matches its reference", "[ops][op_table]") {
  REQUIRE(!entries().empty());
  for (const auto& e : entries()) {
    std::vector<DType> runs =
        e.takes_floats() ? std::vector<DType>{DType::kFloat32, DType::kFloat16} : std::vector<DType>{DType::kFloat32};
    for (DType run : runs) {
      std::string label = e.op + " (" + e.what + ")" + (e.takes_floats() ? std::string(", ") + dtype_name(run) : "");
      std::string failures;
      try {
        failures = run_entry(e, run);
      } catch (const std::exception& ex) {
        failures = std::string("threw: ") + ex.what();
      }
      INFO(label << ":\n" << failures);
      CHECK(failures.empty());
    }
  }
}
