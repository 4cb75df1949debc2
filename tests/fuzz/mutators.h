// Structure-aware mutation of the three bundle files. Byte flips alone rarely
// get past the JSON parser or the weight.bin record checks, so these change
// one JSON value or one weight.bin record field at a time and leave the rest
// of the file valid.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <random>
#include <string>

namespace staticllm::fuzz {

using Rng = std::mt19937_64;
// libFuzzer's own byte-level mutation (LLVMFuzzerMutate), for the fallback.
using ByteMutator = std::function<size_t(uint8_t* data, size_t size, size_t max_size)>;

// One mutation of a JSON document: a number, string, array or object value
// changed, removed, duplicated or swapped for another part of the document;
// now and then a textual edit the JSON library cannot produce (numbers out of
// double range, broken syntax). Falls back to `bytes` if `text` is not JSON.
std::string mutate_json(const std::string& text, size_t max_size, Rng& rng, const ByteMutator& bytes);

// One mutation of a weight.bin: a header or blob record field set to an
// interesting value, blob data overwritten with special floats, the file
// truncated or extended; falls back to `bytes` now and then.
std::string mutate_weights(const std::string& data, size_t max_size, Rng& rng, const ByteMutator& bytes);

// Values at the edges of integer and size checks (0, 1, powers of two and
// their neighbours, the limits of 32- and 64-bit types).
uint64_t interesting_integer(Rng& rng);

}  // namespace staticllm::fuzz
