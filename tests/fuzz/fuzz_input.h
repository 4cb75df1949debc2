// The fuzzer's input format and the small valid bundles it starts from.
//
// One input = [bundle index][file index][the file's new bytes]: the bundle
// (tests/fuzz/bundles/<name>) whose metadata.json, program.json or weight.bin
// those bytes replace. The other two files stay as generated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace staticllm::fuzz {

enum FileIndex : uint8_t { kMetadata = 0, kProgram = 1, kWeights = 2, kFileCount = 3 };

constexpr size_t kHeaderSize = 2;

// Where each file of a bundle lives, relative to the bundle directory.
const char* file_path(FileIndex file);

struct BaseBundle {
  std::string name;
  std::string files[kFileCount];  // file contents
};

// The bundles under $STATICLLM_FUZZ_BUNDLES, or the source tree's
// tests/fuzz/bundles; sorted by name. Aborts with a message if there are none.
const std::vector<BaseBundle>& base_bundles();

struct FuzzInput {
  size_t bundle = 0;  // index into base_bundles()
  FileIndex file = kMetadata;
  const uint8_t* bytes = nullptr;
  size_t size = 0;
};

// Decodes an input; false if it is shorter than the header.
bool decode_input(const uint8_t* data, size_t size, FuzzInput* out);
// The input that replaces `file` of `bundle` with `bytes`.
std::string encode_input(size_t bundle, FileIndex file, const std::string& bytes);

}  // namespace staticllm::fuzz
