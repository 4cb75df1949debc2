// Off Apple platforms there is no Core ML: say so, and point at the interpreter.
#ifndef STATICLLM_HAVE_COREML

#include "staticllm/backend.h"
#include "staticllm/errors.h"

namespace staticllm {

std::unique_ptr<Backend> make_coreml_backend(const BundlePaths& paths, const ModelMetadata&, const CoreMLOptions&) {
  throw BundleError(
      "backend 'coreml' needs macOS or iOS (Core ML is not available on this platform); "
      "backend='mil' runs " +
      paths.root + " here with the portable interpreter");
}

}  // namespace staticllm

#endif
