// The interpreter op table: one entry (or more) per registered op, each
// running the op on known inputs against a double-precision reference or
// literal values, in fp32 and fp16 when the op takes floats.
// test_op_table.cpp fails for any op in OpRegistry::op_types() without an entry.
//
// Entries live in tests/cpp/op_table/<family>.cpp, one file per op family
// (mirroring runtime/mil/ops/<family>.cpp), and register themselves:
//
//   const bool registered = add_entries({
//       op("relu", "negative values to 0").in("x", F({4}, {-2, -0.5, 0, 3})).expect({F({4}, {0, 0, 0, 3})}),
//   });
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "staticllm/tensor.h"

namespace staticllm::test::optable {

// A tensor of an entry: values given in double, converted to `dtype`.
// No dtype means "the float dtype of the run": fp32 in one run, fp16 in the other.
struct Spec {
  std::optional<DType> dtype;
  Shape shape;
  std::vector<double> v;
  std::string str;       // a string constant (cast's dtype, gelu's mode) when non-empty
  bool is_list = false;  // a MIL list: `shape` is [length, *element shape]
  bool dynamic_length = false;
};

Spec F(Shape shape, std::vector<double> v);
Spec I32(Shape shape, std::vector<double> v);
Spec Bool(Shape shape, std::vector<double> v);
Spec Typed(DType dtype, Shape shape, std::vector<double> v);
// `elements` stacked as a list ([length, *element shape]), which list
// writes may grow when `dynamic_length`.
Spec List(Spec elements, bool dynamic_length);

// A tensor in double precision: what references read (the inputs as the op
// saw them, fp16 rounding included) and return.
struct Array {
  DType dtype = DType::kFloat32;
  Shape shape;
  std::vector<double> v;
  int64_t numel() const { return shape_numel(shape); }
};

// An entry's inputs by parameter name; variadic parameters have several.
class Inputs {
 public:
  const Array& operator[](const std::string& name) const { return all(name).at(0); }
  const std::vector<Array>& all(const std::string& name) const;
  bool has(const std::string& name) const { return by_name.count(name) > 0; }
  std::map<std::string, std::vector<Array>> by_name;
  DType float_dtype = DType::kFloat32;  // the run's float dtype
};

// |got - want| <= atol + rtol * |want|, chosen by the dtype of each float output.
struct Tol {
  double rtol = 0, atol = 0;
};

using Reference = std::function<std::vector<Array>(const Inputs&)>;

struct Entry {
  std::string op, what;
  struct Param {
    std::string name;
    Spec spec;
    bool is_const;
  };
  std::vector<Param> params;  // a name repeated = a variadic parameter (concat's values)
  Reference ref;
  std::vector<std::string> written;  // inputs the op writes into (states), checked after the outputs
  std::string declared_like;         // the program declares one output of this input's type
  std::vector<Spec> declared;        // or these output types (values unused; no dtype: the run's float)
  Tol fp32{1e-6, 1e-6}, fp16{1e-3, 1e-3};

  Entry& in(const std::string& name, Spec s);                   // run-time input
  Entry& konst(const std::string& name, Spec s);                // constant
  Entry& ints(const std::string& name, std::vector<double> v);  // rank-1 int32 constant
  Entry& scalar_int(const std::string& name, int64_t v);        // rank-0 int32 constant
  Entry& scalar(const std::string& name, double v);             // rank-0 float constant (run dtype)
  Entry& flag(const std::string& name, bool v);                 // rank-0 bool constant
  Entry& string(const std::string& name, const std::string& s);
  Entry& reference(Reference r);
  Entry& expect(std::vector<Spec> outputs);  // literal outputs (shape and indexing ops)
  Entry& writes(const std::string& name);
  Entry& declares_output_like(const std::string& name);
  Entry& declares(std::vector<Spec> outputs);
  Entry& tol32(double rtol, double atol);
  Entry& tol16(double rtol, double atol);
  bool takes_floats() const;  // some parameter has the run's float dtype
};

Entry op(std::string type, std::string what);

// Registers entries; returns true so a family file can do it in a static initialiser.
bool add_entries(std::vector<Entry> entries);
const std::vector<Entry>& entries();

// --- double-precision reference helpers -------------------------------------

// Deterministic values in [lo, hi) (a fixed LCG; no <random> distribution
// differences across standard libraries).
std::vector<double> values_in(int64_t n, double lo, double hi, uint32_t seed = 1);

Array map(const Array& x, const std::function<double(double)>& f);
// numpy-broadcast elementwise function of a and b; the result has dtype `out`.
Array zip(const Array& a, const Array& b, DType out, const std::function<double(double, double)>& f);
// Reduces each group of `axes` (normalised, any order) with `f`; dtype `out`.
Array reduce(const Array& x, std::vector<int64_t> axes, bool keep_dims, DType out,
             const std::function<double(const std::vector<double>&)>& f);
// Batched [.., M, K] x [.., K, N] with broadcast batch dims; dtype of a.
Array matmul(const Array& a, const Array& b);
Array transpose_last2(const Array& x);
// An array of `out_shape` whose element at multi-index idx is x.v[src(idx)]
// (transposes, tiles, gathers, resizes written as index maps).
Array pick(const Array& x, const Shape& out_shape, const std::function<int64_t(const std::vector<int64_t>&)>& src);

}  // namespace staticllm::test::optable
