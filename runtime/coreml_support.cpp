#include "staticllm/coreml_support.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
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

}  // namespace staticllm
