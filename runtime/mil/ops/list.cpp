// MIL lists: make_list, list_length, list_read, list_write, list_gather,
// list_scatter. A list is held as its elements stacked, a tensor
// [length, *element shape] (ValueType::is_list), whose length every plan
// knows: make_list's init_length and the indices that grow a dynamic-length
// list must be constants when the op is planned. Where they are known only at
// run time the op asks for the eager path (RuntimeValueNeeded), which plans
// the call with them as constants; a while_loop whose list grows runs there
// (control_flow.cpp).
#include <algorithm>
#include <cstring>

#include "mil/ops/indices.h"

namespace staticllm::mil {

namespace {

// The list parameter `ls`, which must be a list.
const ValueType& list_type(const OpPlanContext& ctx) {
  const ValueType& t = ctx.type("ls");
  if (!t.is_list || t.shape.empty()) ctx.fail("'ls' must be a list, got " + type_string(t));
  return t;
}

Shape element_shape(const ValueType& list) { return Shape(list.shape.begin() + 1, list.shape.end()); }

size_t element_bytes(const ValueType& list) {
  return static_cast<size_t>(shape_numel(element_shape(list))) * dtype_size(list.dtype);
}

ValueType with_length(ValueType list, int64_t length) {
  list.shape[0] = length;
  return list;
}

// An index of a list of `length` elements; InputError naming the op when
// it is out of range (lists take no negative indices).
int64_t checked_index(const std::string& where, int64_t index, int64_t length) {
  if (index < 0 || index >= length) {
    throw InputError(where + ": list index " + std::to_string(index) + " out of range for a list of length " +
                     std::to_string(length));
  }
  return index;
}

// The integer index parameter's values when it is a constant, checked to be
// integers with `count` elements (-1: a scalar, any rank of one element).
const Tensor* index_param(const OpPlanContext& ctx, const std::string& param, int64_t rank) {
  const ValueType& t = ctx.type(param);
  const bool shape_ok = rank == 0 ? shape_numel(t.shape) == 1 : t.shape.size() == 1;
  if (!is_index_dtype(t.dtype) || !shape_ok) {
    ctx.fail("'" + param + "' must be " + (rank == 0 ? "one integer" : "a rank-1 integer tensor") + ", got " +
             type_string(t));
  }
  return ctx.constant(param);
}

// The length of a list after writing at `indices` (constants): a
// dynamic-length list grows to hold the largest, a fixed-length one must
// already hold them all.
int64_t length_after_writes(const OpPlanContext& ctx, const ValueType& list, const Tensor& indices) {
  int64_t length = list.shape[0];
  const std::string where = index_rule(ctx).where;
  for (int64_t i = 0; i < indices.numel(); ++i) {
    const int64_t index = read_index(indices, i);
    if (list.dynamic_length && index >= length) length = index + 1;
    checked_index(where, index, length);
  }
  return length;
}

// The output length of a write at the `indices` parameter: fixed for a
// fixed-length list, known for constant indices, else on the eager path.
int64_t planned_write_length(const OpPlanContext& ctx, const ValueType& list, const std::string& param) {
  const Tensor* indices = ctx.constant(param);
  if (indices != nullptr) return length_after_writes(ctx, list, *indices);
  if (list.dynamic_length) {
    ctx.fail_run_time("'" + param +
                      "' is known only at run time, and a write past the end of a dynamic-length list grows it");
  }
  return list.shape[0];
}

// The element `value` a write stores must be the list's element type
// (`leading` extra dimensions in front: list_scatter's one per index).
void check_value(const OpPlanContext& ctx, const ValueType& list, const Shape& leading) {
  const ValueType& v = ctx.type("value");
  Shape want = leading;
  for (int64_t d : element_shape(list)) want.push_back(d);
  if (v.is_list || v.dtype != list.dtype || v.shape != want) {
    ctx.fail("'value' is " + type_string(v) + ", the list's elements need " + spec_to_string(list.dtype, want));
  }
}

// The input list's bytes into the (possibly longer) output, the new
// elements zero, as make_list's are.
void copy_grown(const Tensor& in, Tensor& out) {
  std::memcpy(out.data(), in.data(), in.nbytes());
  std::memset(static_cast<uint8_t*>(out.data()) + in.nbytes(), 0, out.nbytes() - in.nbytes());
}

// make_list(init_length, dynamic_length, elem_shape, dtype): a list of
// init_length zero elements.
PlannedOp build_make_list(OpPlanContext& ctx) {
  ValueType list;
  list.is_list = true;
  list.dynamic_length = ctx.const_bool_or("dynamic_length", true);
  if (ctx.has("dtype") && !dtype_from_name(ctx.const_string("dtype"), &list.dtype))
    ctx.fail("unsupported element dtype '" + ctx.const_string("dtype") + "'");
  if (ctx.has("init_length") && ctx.constant("init_length") == nullptr)
    ctx.fail_run_time("'init_length' is known only at run time, and a list's length must be known when it is planned");
  const int64_t length = ctx.const_int_or("init_length", 1);
  if (length < 0) ctx.fail("'init_length' must not be negative, got " + std::to_string(length));
  list.shape.push_back(length);
  // elem_shape is a tuple of constants, one argument a dimension; a string
  // names a dimension known only when the list is first written, which
  // this interpreter does not follow.
  for (size_t i = 0; i < ctx.arity("elem_shape"); ++i) {
    const Tensor* d = ctx.constant("elem_shape", i);
    if (d == nullptr || !is_index_dtype(d->dtype()) || d->numel() != 1) {
      ctx.fail("'elem_shape' dimension " + std::to_string(i) +
               " is not a constant integer (a symbolic element shape is not supported: the interpreter needs a "
               "list's element shape when it plans the list)");
    }
    const int64_t size = read_index(*d, 0);
    if (size < 0) ctx.fail("'elem_shape' dimension " + std::to_string(i) + " is negative");
    list.shape.push_back(size);
  }
  PlannedOp op;
  op.outputs.push_back(list);
  op.run = [](const KernelCall& call) { std::memset(call.out(0).data(), 0, call.out(0).nbytes()); };
  return op;
}

// list_length(ls): int32 scalar, the length the plan knows.
PlannedOp build_list_length(OpPlanContext& ctx) {
  const int32_t length = static_cast<int32_t>(list_type(ctx).shape[0]);
  PlannedOp op;
  op.outputs.push_back({DType::kInt32, {}});
  op.run = [length](const KernelCall& call) { call.out(0).data_as<int32_t>()[0] = length; };
  return op;
}

// list_read(ls, index): the element at index.
PlannedOp build_list_read(OpPlanContext& ctx) {
  const ValueType& list = list_type(ctx);
  if (const Tensor* index = index_param(ctx, "index", 0))
    checked_index(index_rule(ctx).where, read_index(*index, 0), list.shape[0]);
  const int ls = ctx.input("ls"), index = ctx.input("index");
  PlannedOp op;
  op.outputs.push_back({list.dtype, element_shape(list)});
  op.run = [ls, index, where = index_rule(ctx).where, length = list.shape[0],
            bytes = element_bytes(list)](const KernelCall& call) {
    const int64_t at = checked_index(where, read_index(call.in(index), 0), length);
    std::memcpy(call.out(0).data(), static_cast<const uint8_t*>(call.in(ls).data()) + at * bytes, bytes);
  };
  return op;
}

// list_write(ls, index, value): the list with value at index; a
// dynamic-length list grows to hold it (new elements zero).
PlannedOp build_list_write(OpPlanContext& ctx) {
  const ValueType& list = list_type(ctx);
  index_param(ctx, "index", 0);
  check_value(ctx, list, {});
  const int64_t length = planned_write_length(ctx, list, "index");
  const int ls = ctx.input("ls"), index = ctx.input("index"), value = ctx.input("value");
  PlannedOp op;
  op.outputs.push_back(with_length(list, length));
  op.run = [ls, index, value, where = index_rule(ctx).where, length,
            bytes = element_bytes(list)](const KernelCall& call) {
    const int64_t at = checked_index(where, read_index(call.in(index), 0), length);
    copy_grown(call.in(ls), call.out(0));
    std::memcpy(static_cast<uint8_t*>(call.out(0).data()) + at * bytes, call.in(value).data(), bytes);
  };
  return op;
}

// list_gather(ls, indices): the elements at indices, stacked [K, *elem].
PlannedOp build_list_gather(OpPlanContext& ctx) {
  const ValueType& list = list_type(ctx);
  index_param(ctx, "indices", 1);
  const int64_t count = ctx.type("indices").shape[0];
  Shape shape = element_shape(list);
  shape.insert(shape.begin(), count);
  const int ls = ctx.input("ls"), indices = ctx.input("indices");
  PlannedOp op;
  op.outputs.push_back({list.dtype, shape});
  op.run = [ls, indices, count, where = index_rule(ctx).where, length = list.shape[0],
            bytes = element_bytes(list)](const KernelCall& call) {
    const auto* src = static_cast<const uint8_t*>(call.in(ls).data());
    auto* dst = static_cast<uint8_t*>(call.out(0).data());
    for (int64_t k = 0; k < count; ++k) {
      const int64_t at = checked_index(where, read_index(call.in(indices), k), length);
      std::memcpy(dst + k * bytes, src + at * bytes, bytes);
    }
  };
  return op;
}

// list_scatter(ls, indices, value): value[k] written at indices[k]; a
// dynamic-length list grows to hold the largest index.
PlannedOp build_list_scatter(OpPlanContext& ctx) {
  const ValueType& list = list_type(ctx);
  index_param(ctx, "indices", 1);
  const int64_t count = ctx.type("indices").shape[0];
  check_value(ctx, list, {count});
  const int64_t length = planned_write_length(ctx, list, "indices");
  const int ls = ctx.input("ls"), indices = ctx.input("indices"), value = ctx.input("value");
  PlannedOp op;
  op.outputs.push_back(with_length(list, length));
  op.run = [ls, indices, value, count, where = index_rule(ctx).where, length,
            bytes = element_bytes(list)](const KernelCall& call) {
    // every index checked before anything is written
    for (int64_t k = 0; k < count; ++k) checked_index(where, read_index(call.in(indices), k), length);
    copy_grown(call.in(ls), call.out(0));
    const auto* src = static_cast<const uint8_t*>(call.in(value).data());
    auto* dst = static_cast<uint8_t*>(call.out(0).data());
    for (int64_t k = 0; k < count; ++k)
      std::memcpy(dst + read_index(call.in(indices), k) * bytes, src + k * bytes, bytes);
  };
  return op;
}

}  // namespace

void register_list_ops(OpRegistry& r) {
  r.add("make_list", build_make_list);
  r.add("list_length", build_list_length);
  r.add("list_read", build_list_read);
  r.add("list_write", build_list_write);
  r.add("list_gather", build_list_gather);
  r.add("list_scatter", build_list_scatter);
}

}  // namespace staticllm::mil
