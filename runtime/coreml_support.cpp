#include "staticllm/coreml_support.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "staticllm/errors.h"

namespace fs = std::filesystem;

namespace staticllm {

ComputeUnits parse_compute_units(const std::string& name) {
  if (name == "all") return ComputeUnits::kAll;
  if (name == "cpu_only") return ComputeUnits::kCpuOnly;
  if (name == "cpu_and_gpu") return ComputeUnits::kCpuAndGpu;
  if (name == "cpu_and_ne") return ComputeUnits::kCpuAndNeuralEngine;
  throw InputError("unknown compute units '" + name + "'; choose all, cpu_only, cpu_and_gpu or cpu_and_ne");
}

namespace {

constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

void fnv(uint64_t& h, const char* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<uint8_t>(data[i]);
    h *= kFnvPrime;
  }
}

}  // namespace

std::string package_content_key(const std::string& mlpackage_dir) {
  std::error_code ec;
  if (!fs::is_directory(mlpackage_dir, ec)) throw BundleError("package not found: " + mlpackage_dir);
  std::vector<fs::path> files;
  for (auto it = fs::recursive_directory_iterator(mlpackage_dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file()) files.push_back(fs::relative(it->path(), mlpackage_dir));
  }
  if (ec) throw BundleError("cannot list " + mlpackage_dir + ": " + ec.message());
  std::sort(files.begin(), files.end());
  uint64_t h = kFnvOffset;
  std::vector<char> buf(1 << 16);
  for (const fs::path& rel : files) {
    std::string name = rel.generic_string();
    fnv(h, name.data(), name.size() + 1);
    std::ifstream in(fs::path(mlpackage_dir) / rel, std::ios::binary);
    if (!in) throw BundleError("cannot read " + (fs::path(mlpackage_dir) / rel).string());
    while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
      fnv(h, buf.data(), static_cast<size_t>(in.gcount()));
    }
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

std::string compiled_model_path(const std::string& cache_dir, const std::string& key) {
  fs::path dir;
  if (!cache_dir.empty()) {
    dir = cache_dir;
  } else if (const char* env = std::getenv("STATICLLM_CACHE_DIR")) {
    dir = env;
  } else if (const char* xdg = std::getenv("XDG_CACHE_HOME")) {
    dir = fs::path(xdg) / "staticllm";
  } else {
    const char* home = std::getenv("HOME");
#ifdef __APPLE__
    dir = fs::path(home ? home : "/tmp") / "Library/Caches/staticllm";
#else
    dir = fs::path(home ? home : "/tmp") / ".cache/staticllm";
#endif
  }
  return (dir / (key + ".mlmodelc")).string();
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

void strided_copy(const void* src, const std::vector<int64_t>& src_strides, void* dst,
                  const std::vector<int64_t>& dst_strides, const Shape& shape, size_t elem_size) noexcept {
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  const size_t rank = shape.size();
  if (rank == 0) {
    std::memcpy(d, s, elem_size);
    return;
  }
  for (int64_t n : shape) {
    if (n == 0) return;
  }
  // The innermost dimension is copied as one run when both sides are contiguous there.
  const int64_t inner = shape[rank - 1];
  const bool runs = src_strides[rank - 1] == 1 && dst_strides[rank - 1] == 1;
  std::vector<int64_t> idx(rank, 0);
  while (true) {
    int64_t so = 0, doff = 0;
    for (size_t k = 0; k + 1 < rank; ++k) {
      so += idx[k] * src_strides[k];
      doff += idx[k] * dst_strides[k];
    }
    if (runs) {
      std::memcpy(d + doff * elem_size, s + so * elem_size, static_cast<size_t>(inner) * elem_size);
    } else {
      for (int64_t i = 0; i < inner; ++i) {
        std::memcpy(d + (doff + i * dst_strides[rank - 1]) * elem_size,
                    s + (so + i * src_strides[rank - 1]) * elem_size, elem_size);
      }
    }
    // Advance the outer dimensions like an odometer.
    size_t k = rank - 1;
    while (k > 0) {
      --k;
      if (++idx[k] < shape[k]) break;
      idx[k] = 0;
      if (k == 0) return;
    }
    if (rank == 1) return;
  }
}

}  // namespace staticllm
