#include "staticllm/weights_digest.h"

#include <fstream>
#include <vector>

#include "sha256.h"
#include "staticllm/errors.h"

namespace staticllm {

namespace {

const std::string& recorded(const ModelMetadata& metadata, const std::string& weights_path) {
  if (!metadata.weights_sha256) {
    throw BundleError(weights_path +
                      ": the bundle has no recorded weights hash (metadata.json has no weights_sha256; bundles "
                      "exported or imported before staticllm recorded it lack one): re-export or re-import it to "
                      "verify its weights");
  }
  return *metadata.weights_sha256;
}

void compare(const std::string& weights_path, const std::string& actual, const std::string& expected) {
  if (actual != expected) {
    throw BundleError(weights_path + ": SHA-256 is " + actual + ", metadata.json records " + expected +
                      ": weight.bin changed after export (damaged or overwritten)");
  }
}

}  // namespace

void check_weights_digest(const ModelMetadata& metadata, const std::string& weights_path, const uint8_t* data,
                          size_t size) {
  const std::string& expected = recorded(metadata, weights_path);
  compare(weights_path, sha256_hex(data, size), expected);
}

void check_weights_file(const ModelMetadata& metadata, const std::string& weights_path) {
  const std::string& expected = recorded(metadata, weights_path);
  compare(weights_path, file_sha256(weights_path), expected);
}

std::string file_sha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw BundleError("cannot read weights " + path);
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
    h.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) throw BundleError("failed reading weights " + path);
  return h.hex_digest();
}

}  // namespace staticllm
