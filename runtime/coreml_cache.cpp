#include "staticllm/coreml_cache.h"

#include <stdlib.h>  // mkdtemp

#include <algorithm>
#include <cerrno>
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

namespace {

constexpr uint64_t kFnvOffset = 1469598103934665603ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

void fnv(uint64_t& h, const char* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<uint8_t>(data[i]);
    h *= kFnvPrime;
  }
}

// Removes a directory tree when it goes out of scope, whatever happened.
struct RemoveOnExit {
  fs::path path;
  ~RemoveOnExit() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

// A new empty directory beside `target`, named after it (mkdtemp: unique,
// so concurrent processes never share one).
fs::path temp_dir_beside(const fs::path& target, const char* purpose) {
  std::string pattern =
      (target.parent_path() / ("." + target.filename().string() + "." + purpose + "-XXXXXX")).string();
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  if (::mkdtemp(name.data()) == nullptr) {
    throw BundleError("cannot create a temporary directory in " + target.parent_path().string() + ": " +
                      std::strerror(errno));
  }
  return fs::path(name.data());
}

}  // namespace

std::string compiled_model_key(const std::string& mlpackage_dir, const std::string& coreml_version) {
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
  fnv(h, coreml_version.data(), coreml_version.size() + 1);
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

void publish_compiled_model(const std::string& compiled, const std::string& target) {
  RemoveOnExit source{compiled};
  fs::path tgt(target);
  std::error_code ec;
  fs::create_directories(tgt.parent_path(), ec);
  if (ec) {
    throw BundleError("cannot create the compiled-model cache directory " + tgt.parent_path().string() + ": " +
                      ec.message());
  }
  RemoveOnExit staging{temp_dir_beside(tgt, "tmp")};
  fs::path staged = staging.path / tgt.filename();
  fs::rename(compiled, staged, ec);
  if (ec) {  // Core ML's temporary directory is on another volume: copy
    ec.clear();
    fs::copy(compiled, staged, fs::copy_options::recursive, ec);
    if (ec)
      throw BundleError("cannot copy the compiled model into " + tgt.parent_path().string() + ": " + ec.message());
  }
  // One rename publishes it whole. A directory renamed onto a non-empty one
  // fails: another process published the same key first, and its copy is as good.
  fs::rename(staged, tgt, ec);
  if (ec && !fs::is_directory(tgt)) {
    throw BundleError("cannot store the compiled model at " + target + ": " + ec.message());
  }
}

void drop_compiled_model(const std::string& target) {
  fs::path tgt(target);
  std::error_code ec;
  if (!fs::exists(tgt, ec)) return;
  // Renamed onto an empty directory of our own in one step, so no other
  // process sees a half-deleted model under the key.
  RemoveOnExit doomed{temp_dir_beside(tgt, "drop")};
  fs::rename(tgt, doomed.path, ec);
  if (ec && fs::exists(tgt)) throw BundleError("cannot remove the compiled model " + target + ": " + ec.message());
}

bool ensure_compiled_model(const std::string& target, const std::function<std::string()>& compile) {
  std::error_code ec;
  if (fs::exists(target, ec)) return false;
  publish_compiled_model(compile(), target);
  return true;
}

void load_compiled_model(const std::string& target, const std::function<std::string()>& compile,
                         const std::function<std::string(const std::string&)>& load, const std::string& what) {
  bool fresh = ensure_compiled_model(target, compile);
  std::string problem = load(target);
  if (problem.empty()) return;
  if (!fresh) {
    // Left by another Core ML version or damaged: compile once more.
    drop_compiled_model(target);
    publish_compiled_model(compile(), target);
    std::string again = load(target);
    if (again.empty()) return;
    problem = again + " (also after recompiling; the cached copy failed with: " + problem + ")";
  }
  throw BundleError(what + ": Core ML cannot load the model: " + problem);
}

}  // namespace staticllm
