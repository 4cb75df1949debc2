#include "staticllm/coreml_support.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "staticllm/errors.h"
#include "staticllm/function_selection.h"

namespace staticllm {

ComputeUnits parse_compute_units(const std::string& name) {
  if (name == "all") return ComputeUnits::kAll;
  if (name == "cpu_only") return ComputeUnits::kCpuOnly;
  if (name == "cpu_and_gpu") return ComputeUnits::kCpuAndGpu;
  if (name == "cpu_and_ne") return ComputeUnits::kCpuAndNeuralEngine;
  throw InputError("unknown compute units '" + name + "'; choose all, cpu_only, cpu_and_gpu or cpu_and_ne");
}

std::optional<DType> dtype_from_array_code(int64_t code) {
  for (const auto& d : dtype_table()) {
    if (d.array_code != 0 && d.array_code == code) return d.dtype;
  }
  return std::nullopt;
}

int64_t array_code(DType dtype, const std::string& what) {
  int64_t code = dtype_info(dtype).array_code;
  if (code == 0) {
    throw InputError(what + ": Core ML arrays hold fp16, fp32, fp64, int32 or int8, not " + dtype_name(dtype));
  }
  return code;
}

std::vector<int64_t> dense_strides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) strides[i - 1] = strides[i] * shape[i];
  return strides;
}

bool strided_fits(const Shape& shape, const std::vector<int64_t>& strides, int64_t elems) {
  if (strides.size() != shape.size() || elems < 0) return false;
  int64_t last = 0;  // offset of the last element
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] < 0 || strides[d] < 0) return false;
    if (shape[d] == 0) return true;  // no elements at all
    // Division instead of multiplication so a huge stride cannot overflow.
    if (strides[d] != 0 && shape[d] - 1 > (elems - 1 - last) / strides[d]) return false;
    last += (shape[d] - 1) * strides[d];
  }
  return last < elems;
}

namespace {

// One dimension per level, so no index array is allocated; the innermost
// dimension is one run when both sides are contiguous there.
void copy_dim(const uint8_t* s, const int64_t* ss, uint8_t* d, const int64_t* ds, const int64_t* shape, size_t rank,
              size_t elem) noexcept {
  if (rank == 1) {
    if (ss[0] == 1 && ds[0] == 1) {
      std::memcpy(d, s, static_cast<size_t>(shape[0]) * elem);
      return;
    }
    for (int64_t i = 0; i < shape[0]; ++i) std::memcpy(d + i * ds[0] * elem, s + i * ss[0] * elem, elem);
    return;
  }
  for (int64_t i = 0; i < shape[0]; ++i) {
    copy_dim(s + i * ss[0] * static_cast<int64_t>(elem), ss + 1, d + i * ds[0] * static_cast<int64_t>(elem), ds + 1,
             shape + 1, rank - 1, elem);
  }
}

}  // namespace

void strided_copy(const void* src, const std::vector<int64_t>& src_strides, void* dst,
                  const std::vector<int64_t>& dst_strides, const Shape& shape, size_t elem_size) noexcept {
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  if (shape.empty()) {
    std::memcpy(d, s, elem_size);
    return;
  }
  for (int64_t n : shape) {
    if (n == 0) return;
  }
  copy_dim(s, src_strides.data(), d, dst_strides.data(), shape.data(), shape.size(), elem_size);
}

bool is_valid_utf8(const std::string& text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > n) return false;
    uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};  // shortest form of each length
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

namespace {

// A name as error messages can show it: bytes that are not printable ASCII
// (NUL, invalid UTF-8) escaped as \xNN when the name is not valid text.
std::string printable(const std::string& name) {
  if (is_valid_utf8(name) && name.find('\0') == std::string::npos) return name;
  std::string out;
  for (unsigned char c : name) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char hex[5];
      std::snprintf(hex, sizeof(hex), "\\x%02x", c);
      out += hex;
    }
  }
  return out;
}

// Empty when Core ML with `features` takes a tensor of `spec`, else why not.
std::string tensor_problem(const TensorSpec& spec, const CoreMLFeatures& features) {
  if (!is_valid_utf8(spec.name) || spec.name.find('\0') != std::string::npos) {
    return "its name is not valid UTF-8 text without NUL characters, which Core ML feature names must be";
  }
  if (dtype_info(spec.dtype).array_code == 0) {
    return std::string("it is ") + dtype_name(spec.dtype) +
           ", which Core ML arrays cannot hold (they hold fp16, fp32, fp64, int32 and int8)";
  }
  if (spec.dtype == DType::kFloat16 && !features.fp16_arrays) {
    return "it is fp16, which Core ML arrays hold only from macOS 12 / iOS 16";
  }
  if (spec.dtype == DType::kInt8 && !features.int8_arrays) {
    return "it is int8, which Core ML arrays hold only from macOS 26 / iOS 26";
  }
  return "";
}

}  // namespace

void check_coreml_method(const ModelMetadata& model, const MethodMetadata& method, const CoreMLFeatures& features) {
  const std::string where = "method '" + method.name + "'";
  if (coreml_function_name(model, method) && !features.functions) {
    throw BundleError(where + ": multifunction packages need macOS 15 / iOS 18 or later");
  }
  if (!method.states.empty() && !features.states) {
    throw BundleError(where + " has Core ML states, which need macOS 15 / iOS 18 or later");
  }
  for (const auto& [kind, specs] : {std::pair<const char*, const std::vector<TensorSpec>*>{"input", &method.inputs},
                                    {"output", &method.outputs},
                                    {"state", &method.states}}) {
    for (const TensorSpec& s : *specs) {
      std::string problem = tensor_problem(s, features);
      if (!problem.empty()) throw BundleError(where + ": " + kind + " '" + printable(s.name) + "': " + problem);
    }
  }
}

}  // namespace staticllm
