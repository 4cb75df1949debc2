// The interface between the interpreter's planner and its op kernels.
//
// Each op family file (runtime/mil/ops/*.cpp) registers builders. A builder
// runs once per op when a method is planned: it reads the op's input types and
// constant arguments, validates them (throwing through ctx.fail, which names
// function, op and type), computes the output types and returns a kernel
// closure that captures every decision (strides, axes, sizes) so that running
// it allocates nothing and branches little.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "staticllm/errors.h"
#include "staticllm/tensor.h"

namespace staticllm::mil {

class ThreadPool;
struct CompressedWeight;  // kernels/compressed.h
struct PackedInts;        // weight_store.h

// A program's declaration of a value whose rank is known only at run time
// (a variadic dimension): its whole shape is {kAnyRank}.
constexpr int64_t kAnyRank = -2;

struct ValueType {
  DType dtype = DType::kFloat32;
  // may hold kFlexibleDim or be {kAnyRank} in a program's declarations, never in a plan
  Shape shape;
  // A MIL list (make_list and the list_* ops) is held as its elements
  // stacked: shape [length, *element shape]. In a plan the length is what the
  // list holds at that point; a program declares only its initial length
  // (the proto records no more), which a growing list leaves behind.
  bool is_list = false;
  bool dynamic_length = false;  // planned lists only: writes past the end grow it
};

// Whether a computed type is one the program's declaration allows: open
// dimensions (flexible inputs, values known at run time) take any size, and a
// list any length.
bool fits_declared(const ValueType& declared, const ValueType& got);
// "fp32 [2, 3]"; a list "list of 3 fp32 [2]".
std::string type_string(const ValueType& t);

// Thrown while planning when an op needs as a constant a value the function
// computes at run time (reshape's shape, fill's shape, non_zero's input), or
// its output shape follows from such values. The planner then runs the
// function on the eager path (planner.h). A BundleError, so that where no
// eager path exists it reads as the error it was before.
class RuntimeValueNeeded : public BundleError {
 public:
  using BundleError::BundleError;
};

// What a kernel sees when it runs. Input slots are numbered in the order the
// builder called OpPlanContext::input(); outputs in the op's output order.
struct KernelCall {
  const Tensor* const* inputs = nullptr;
  Tensor* const* outputs = nullptr;
  ThreadPool* pool = nullptr;
  void* scratch = nullptr;  // `scratch_bytes` requested by the builder, 64-byte aligned

  const Tensor& in(int slot) const { return *inputs[slot]; }
  Tensor& out(int i) const { return *outputs[i]; }
};

using KernelFn = std::function<void(const KernelCall&)>;

struct PlannedOp {
  KernelFn run;
  std::vector<ValueType> outputs;  // checked against the types the program declares
  size_t scratch_bytes = 0;
  // The kernel only copies its one input's bytes into a new shape
  // (reshape-like ops): the planner may let the output share those bytes.
  bool byte_copy = false;
  // The output is the bytes of its one input from this byte offset on, in
  // order (a slice or transpose that moves no element relative to the
  // others): the planner may let the output view them. -1: it is not.
  int64_t view_offset = -1;
  // Decompression ops (constexpr_*) whose output the kernels can read as
  // stored: the planner keeps this instead of folding the op, and makes the
  // dense constant only for an op that asks for it (with `run`).
  std::shared_ptr<const CompressedWeight> compressed;
  // Control flow run while it is planned (a loop whose variables change
  // shape from one iteration to the next, all its inputs known): its
  // outputs, which the planner makes constants; `run` is then unused.
  std::vector<Tensor> results;
};

// Plan-time view of one op. Parameter names are the MIL names ("x", "y", "axes").
class OpPlanContext {
 public:
  virtual ~OpPlanContext() = default;
  virtual const std::string& op_type() const = 0;
  virtual const std::string& op_name() const = 0;  // the op's first output name
  virtual bool has(const std::string& param) const = 0;
  // Number of bindings of a parameter (variadic params like concat's "values").
  virtual size_t arity(const std::string& param) const = 0;
  virtual const ValueType& type(const std::string& param, size_t i = 0) const = 0;
  // The constant bound to a parameter, or nullptr if it is computed at run time.
  virtual const Tensor* constant(const std::string& param, size_t i = 0) const = 0;
  // A constant weight the compressed kernels can read as stored (the output
  // of a decompression op), or nullptr. A builder that uses it must not also
  // ask for constant() or input() of the parameter, which make it dense.
  virtual std::shared_ptr<const CompressedWeight> compressed(const std::string& param, size_t i = 0) const {
    return nullptr;
  }
  // A constant of sub-byte integers still packed as stored, or nullptr.
  virtual const PackedInts* packed(const std::string& param, size_t i = 0) const { return nullptr; }
  // Declares that the kernel reads this parameter when it runs; returns its slot.
  virtual int input(const std::string& param, size_t i = 0) = 0;
  // The output types the program declares (for ops whose result type is only
  // known from the program, e.g. a cast's target is in `dtype`).
  virtual const std::vector<ValueType>& declared_outputs() const = 0;
  // Throws BundleError: "<function>/<op name> (<op type>): <message>".
  [[noreturn]] virtual void fail(const std::string& message) const = 0;
  // The same message as RuntimeValueNeeded: the op cannot be planned before
  // the values it needs are computed (it can be on the eager path).
  [[noreturn]] virtual void fail_run_time(const std::string& message) const {
    throw RuntimeValueNeeded(op_type() + ": " + message);
  }
  // True when the parameter is a tensor computed at run time (not a constant).
  virtual bool is_run_time(const std::string& param, size_t i = 0) const { return false; }
  // The declared shape of output i; fail_run_time when the program leaves a
  // dimension of it open (the shape depends on run-time values).
  const Shape& declared_shape(size_t i) const;
  // String constants (e.g. cast's "dtype"), which have no Tensor form.
  virtual std::string const_string(const std::string& param) const = 0;
  // The iOS release of the function's opset (FunctionDecl::ios_opset), 0 if unknown.
  virtual int ios_opset() const { return 0; }

  // Constant helpers: fail() when the parameter is missing, not constant or of
  // the wrong kind. Integers accept any integer dtype; floats any float dtype.
  int64_t const_int(const std::string& param) const;
  std::vector<int64_t> const_ints(const std::string& param) const;
  double const_float(const std::string& param) const;
  bool const_bool(const std::string& param) const;
  // Optional variants returning `fallback` if the parameter is absent.
  int64_t const_int_or(const std::string& param, int64_t fallback) const;
  bool const_bool_or(const std::string& param, bool fallback) const;
};

using OpBuilder = std::function<PlannedOp(OpPlanContext&)>;

class OpRegistry {
 public:
  static OpRegistry& instance();  // populated on first use by the register_* calls below
  void add(const std::string& op_type, OpBuilder builder);
  const OpBuilder* find(const std::string& op_type) const;
  std::vector<std::string> op_types() const;  // sorted

 private:
  std::vector<std::pair<std::string, OpBuilder>> builders_;
};

// One per op family file; OpRegistry::instance() calls them all.
void register_elementwise_binary_ops(OpRegistry& r);  // ops/elementwise_binary.cpp
void register_elementwise_unary_ops(OpRegistry& r);   // ops/elementwise_unary.cpp
void register_reduction_ops(OpRegistry& r);           // ops/reduction.cpp (reduce_*, softmax)
void register_shape_ops(
    OpRegistry& r);  // ops/shape.cpp (reshape, transpose, squeeze, expand_dims, tile, identity, shape)
void register_slicing_ops(OpRegistry& r);  // ops/slicing.cpp (slice_by_index/size, slice_update, split, concat, stack)
void register_gather_ops(OpRegistry& r);   // ops/gather.cpp (gather, gather_along_axis, gather_nd)
void register_select_ops(OpRegistry& r);   // ops/select.cpp (select, cast, fill, range_1d, band_part)
void register_linear_ops(OpRegistry& r);   // ops/linear.cpp (linear, matmul)
void register_conv_ops(OpRegistry& r);     // ops/conv.cpp (conv, conv_transpose)
void register_attention_ops(OpRegistry& r);      // ops/attention.cpp (scaled_dot_product_attention)
void register_quantization_ops(OpRegistry& r);   // ops/quantization.cpp (constexpr_*)
void register_state_ops(OpRegistry& r);          // ops/state.cpp (read_state, coreml_update_state)
void register_normalization_ops(OpRegistry& r);  // ops/normalization.cpp (batch/instance/layer/l2/local_response_norm)
void register_sort_ops(OpRegistry& r);           // ops/sort.cpp (argsort, topk)
void register_pooling_ops(OpRegistry& r);        // ops/pooling.cpp (max_pool, avg_pool, l2_pool)
void register_sparsity_ops(OpRegistry& r);       // ops/sparsity.cpp (constexpr_sparse_*, constexpr_lut_to_sparse)
void register_scatter_ops(OpRegistry& r);        // ops/scatter.cpp (scatter, scatter_along_axis, scatter_nd)
void register_rearrange_ops(OpRegistry& r);      // ops/rearrange.cpp (reverse*, *_to_space, space_to_*, pixel_*)
void register_pad_ops(OpRegistry& r);            // ops/pad.cpp (pad)
void register_image_ops(OpRegistry& r);          // ops/image.cpp (resize*, upsample*, crop*, resample, affine)
void register_einsum_ops(OpRegistry& r);         // ops/einsum.cpp (einsum)
void register_recurrent_ops(OpRegistry& r);      // ops/recurrent.cpp (rnn, gru, lstm)
void register_random_ops(OpRegistry& r);         // ops/random.cpp (random_uniform/normal/bernoulli/categorical)
void register_value_shaped_ops(OpRegistry& r);   // ops/value_shaped.cpp (non_zero)
void register_detection_ops(OpRegistry& r);      // ops/detection.cpp (non_maximum_suppression)
void register_list_ops(OpRegistry& r);           // ops/list.cpp (make_list, list_*)

// Row-major strides (in elements) of a shape.
std::vector<int64_t> contiguous_strides(const Shape& shape);
// numpy broadcasting of two shapes; returns false if they do not broadcast.
bool broadcast_shapes(const Shape& a, const Shape& b, Shape* out);
// Normalises a possibly negative axis against `rank`; fails through ctx.
int64_t normalize_axis(const OpPlanContext& ctx, int64_t axis, int64_t rank);

}  // namespace staticllm::mil
