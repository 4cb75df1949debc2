#include "json_depth.h"

#include <algorithm>

namespace staticllm {

int json_nesting_depth(const std::string& text) {
  int depth = 0, deepest = 0;
  // find_first_of jumps over the ordinary characters (most of a document)
  for (size_t i = text.find_first_of("[]{}\""); i != std::string::npos; i = text.find_first_of("[]{}\"", i + 1)) {
    char c = text[i];
    if (c == '"') {  // skip the string: escaped characters cannot end it
      for (i = text.find_first_of("\"\\", i + 1); i != std::string::npos && text[i] == '\\';)
        i = text.find_first_of("\"\\", i + 2);
      if (i == std::string::npos) break;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else {
      --depth;
    }
  }
  return deepest;
}

}  // namespace staticllm
