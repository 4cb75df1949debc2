// Reading and checking index tensors (gathers, scatters): any integer dtype,
// negative values counting from the end where the opset allows it, and every
// value checked against its axis before anything is read or written at it.
#pragma once

#include <string>

#include "mil/op.h"
#include "staticllm/errors.h"

namespace staticllm::mil {

inline bool is_index_dtype(DType t) {
  return t == DType::kInt32 || t == DType::kInt64 || t == DType::kInt16 || t == DType::kUInt16 || t == DType::kInt8 ||
         t == DType::kUInt8;
}

inline int64_t read_index(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kInt32: return t.data_as<int32_t>()[i];
    case DType::kInt64: return t.data_as<int64_t>()[i];
    case DType::kInt16: return t.data_as<int16_t>()[i];
    case DType::kUInt16: return t.data_as<uint16_t>()[i];
    case DType::kInt8: return t.data_as<int8_t>()[i];
    case DType::kUInt8: return t.data_as<uint8_t>()[i];
    default: return 0;
  }
}

// How an op treats index values: the axis range they address and whether a
// negative value counts from the end (iOS15/16) or is out of range (iOS17+).
struct IndexRule {
  std::string where;  // "op 'name' (type)", for messages
  bool negative_wraps = true;

  // The index in [0, dim); InputError for a value out of range (raised before
  // the kernel writes anything that depends on it).
  int64_t operator()(int64_t idx, int64_t dim) const {
    int64_t v = idx < 0 && negative_wraps ? idx + dim : idx;
    if (v < 0 || v >= dim) {
      throw InputError(where + ": index " + std::to_string(idx) + " out of range for axis of size " +
                       std::to_string(dim) +
                       (idx < 0 && !negative_wraps ? " (iOS17 ops take no negative indices)" : ""));
    }
    return v;
  }
};

inline IndexRule index_rule(const OpPlanContext& ctx) {
  return {"op '" + ctx.op_name() + "' (" + ctx.op_type() + ")", ctx.ios_opset() < 17};
}

}  // namespace staticllm::mil
