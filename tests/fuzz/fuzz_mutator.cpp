// libFuzzer's custom mutator hook: decode [bundle][file][bytes], mutate the
// bytes as the file they replace (JSON or weight.bin), re-encode.
#include <cstring>

#include "fuzz_input.h"
#include "mutators.h"

using namespace staticllm::fuzz;

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  Rng rng(seed);
  const auto& bases = base_bundles();
  auto below = [&rng](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  FuzzInput in;
  std::string content;
  if (!decode_input(data, size, &in) || below(64) == 0) {
    // now and then start over from an unmodified file, so the campaign keeps
    // exploring near valid bundles instead of piling edit on edit
    in.bundle = below(bases.size());
    in.file = static_cast<FileIndex>(below(kFileCount));
    content = bases[in.bundle].files[in.file];
  } else {
    content.assign(reinterpret_cast<const char*>(in.bytes), in.size);
    // the same file content in another bundle (its metadata for the other's program)
    if (below(64) == 0) in.bundle = below(bases.size());
  }
  if (max_size <= kHeaderSize) return LLVMFuzzerMutate(data, size, max_size);
  ByteMutator bytes = [](uint8_t* d, size_t n, size_t max) { return LLVMFuzzerMutate(d, n, max); };
  size_t room = max_size - kHeaderSize;
  std::string mutated =
      in.file == kWeights ? mutate_weights(content, room, rng, bytes) : mutate_json(content, room, rng, bytes);
  std::string out = encode_input(in.bundle, in.file, mutated);
  if (out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::memcpy(data, out.data(), out.size());
  return out.size();
}
