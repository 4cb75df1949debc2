// A limit on how deep the JSON files of a bundle may nest, checked on the text
// before parsing. The JSON library copies, compares and prints values
// recursively, so a file nested tens of thousands of levels deep would
// overflow the stack; real metadata.json and program.json nest < 20 levels.
#pragma once

#include <string>

namespace staticllm {

constexpr int kMaxJsonDepth = 256;

// Deepest nesting of arrays and objects in `text`; brackets inside strings do
// not count. Meaningful for valid JSON (anything else fails to parse anyway).
int json_nesting_depth(const std::string& text);

}  // namespace staticllm
