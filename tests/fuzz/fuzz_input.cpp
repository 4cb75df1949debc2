#include "fuzz_input.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace staticllm::fuzz {

namespace fs = std::filesystem;

const char* file_path(FileIndex file) {
  switch (file) {
    case kMetadata: return "metadata.json";
    case kProgram: return "program.json";
    default: return "model.mlpackage/Data/com.apple.CoreML/weights/weight.bin";
  }
}

namespace {

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "bundle fuzzer: cannot read %s\n", path.c_str());
    std::abort();
  }
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::vector<BaseBundle> load_bundles() {
  const char* env = std::getenv("STATICLLM_FUZZ_BUNDLES");
  fs::path root = env != nullptr ? fs::path(env) : fs::path(STATICLLM_FUZZ_SOURCE_DIR) / "bundles";
  std::vector<BaseBundle> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (!entry.is_directory()) continue;
    BaseBundle b;
    b.name = entry.path().filename().string();
    for (int f = 0; f < kFileCount; ++f) b.files[f] = read_file(entry.path() / file_path(static_cast<FileIndex>(f)));
    out.push_back(std::move(b));
  }
  if (out.empty()) {
    std::fprintf(stderr, "bundle fuzzer: no bundles under %s (set STATICLLM_FUZZ_BUNDLES)\n", root.c_str());
    std::abort();
  }
  std::sort(out.begin(), out.end(), [](const BaseBundle& a, const BaseBundle& b) { return a.name < b.name; });
  return out;
}

}  // namespace

const std::vector<BaseBundle>& base_bundles() {
  static const std::vector<BaseBundle> bundles = load_bundles();
  return bundles;
}

bool decode_input(const uint8_t* data, size_t size, FuzzInput* out) {
  if (size < kHeaderSize) return false;
  out->bundle = data[0] % base_bundles().size();
  out->file = static_cast<FileIndex>(data[1] % kFileCount);
  out->bytes = data + kHeaderSize;
  out->size = size - kHeaderSize;
  return true;
}

std::string encode_input(size_t bundle, FileIndex file, const std::string& bytes) {
  std::string s;
  s.push_back(static_cast<char>(bundle));
  s.push_back(static_cast<char>(file));
  return s + bytes;
}

}  // namespace staticllm::fuzz
