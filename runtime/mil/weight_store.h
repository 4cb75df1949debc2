// weight.bin of an ML Program package, memory-mapped once per bundle and
// shared by every method. Every blob is validated before a tensor views it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "mil/op.h"

namespace staticllm::mil {

// Sub-byte integers as stored: `bits` (1..7) per element, least significant
// bits first, so kernels can read them without unpacking.
struct PackedInts {
  Tensor bytes;  // uint8 [ceil(numel(shape) * bits / 8)], viewing the mapping
  int bits = 0;
  bool is_signed = false;
  Shape shape;  // the declared shape
  // The values as an int8 (signed) or uint8 tensor of `shape`.
  Tensor unpack() const;
};

class WeightStore {
 public:
  // Opens `path` and checks the file header; BundleError on any problem.
  // mmap: map the file (pages shared by every method and process, read on
  // demand; a file truncated meanwhile kills the process with SIGBUS, one
  // overwritten in place changes results). Otherwise read it into memory,
  // immune to both.
  static std::shared_ptr<WeightStore> open(const std::string& path, bool mmap = true);
  ~WeightStore();
  WeightStore(const WeightStore&) = delete;
  WeightStore& operator=(const WeightStore&) = delete;

  // The blob whose metadata record starts at `offset`, checked against the
  // declared dtype and shape. Sub-byte blobs (int4, uint1..uint6) are unpacked
  // into owned int8/uint8 tensors; everything else is a view into the mapping
  // that keeps the mapping alive. `declared_bits` is the element width the
  // program declares (4 for INT4/UINT4, etc.; 0 = the dtype's own width).
  Tensor blob(uint64_t offset, const ValueType& declared, int declared_bits, const std::string& where);
  // The same checks for a sub-byte blob (declared_bits 1..7), left packed.
  PackedInts packed_blob(uint64_t offset, const ValueType& declared, int declared_bits, const std::string& where);

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }  // the file's bytes, mapped or read
  uint64_t size() const { return size_; }
  uint32_t blob_count() const { return count_; }

 private:
  WeightStore() = default;
  struct Located;
  Located locate(uint64_t offset, const ValueType& declared, int declared_bits, const std::string& where) const;
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool mapped_ = false;  // unmapped or freed accordingly
  uint32_t count_ = 0;
  std::weak_ptr<WeightStore> self_;
};

// Unpacks `n` elements of `bits` (1..7) each, packed least significant bits
// first as coremltools writes them, into an int8 (`is_signed`, sign-extended)
// or uint8 tensor of `shape`. `src` must hold ceil(n * bits / 8) bytes.
Tensor unpack_sub_byte(const uint8_t* src, int64_t n, int bits, bool is_signed, const Shape& shape);

}  // namespace staticllm::mil
