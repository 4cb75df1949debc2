#include "staticllm/backend.h"

namespace staticllm {

BundlePaths bundle_paths(const std::string& root) {
  BundlePaths p;
  p.root = root;
  p.metadata = root + "/metadata.json";
  p.mlpackage = root + "/model.mlpackage";
  p.program_json = root + "/program.json";
  p.weights = p.mlpackage + "/Data/com.apple.CoreML/weights/weight.bin";
  return p;
}

}  // namespace staticllm
