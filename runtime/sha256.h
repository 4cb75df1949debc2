// SHA-256 (FIPS 180-4), to check weight.bin against the hash recorded at
// export. Written here rather than linked: the check must hash the very bytes
// the runtime loaded (its in-memory copy with mmap=False), on Linux and Apple
// alike, and no crypto library is available on both without a new build
// dependency. Tested against the NIST vectors and Python's hashlib.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace staticllm {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  // The digest as 64 lowercase hex digits; the object is spent afterwards.
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buffered_ = 0;
  uint64_t length_ = 0;  // bytes hashed so far
};

std::string sha256_hex(const void* data, size_t size);

}  // namespace staticllm
