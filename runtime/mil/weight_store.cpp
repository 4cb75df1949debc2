#include "mil/weight_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "staticllm/errors.h"

namespace staticllm::mil {

namespace {

constexpr uint32_t kSentinel = 0xDEADBEEF;
constexpr uint64_t kHeaderSize = 64;
constexpr uint64_t kRecordSize = 64;
constexpr uint64_t kDataAlignment = 64;

struct BlobType {
  uint32_t code;
  const char* name;
  int bits;        // element width in the file
  bool is_signed;  // for sub-byte integers
  DType dtype;     // how the runtime holds it
};

// MIL blob storage dtype codes.
constexpr BlobType kBlobTypes[] = {
    {1, "fp16", 16, true, DType::kFloat16}, {2, "fp32", 32, true, DType::kFloat32},
    {3, "uint8", 8, false, DType::kUInt8},  {4, "int8", 8, true, DType::kInt8},
    {6, "int16", 16, true, DType::kInt16},  {7, "uint16", 16, false, DType::kUInt16},
    {8, "int4", 4, true, DType::kInt8},     {9, "uint1", 1, false, DType::kUInt8},
    {10, "uint2", 2, false, DType::kUInt8}, {11, "uint4", 4, false, DType::kUInt8},
    {12, "uint3", 3, false, DType::kUInt8}, {13, "uint6", 6, false, DType::kUInt8},
    {14, "int32", 32, true, DType::kInt32}, {15, "uint32", 32, false, DType::kInt32},
};

template <typename T>
T read_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

Tensor unpack_sub_byte(const uint8_t* src, int64_t n, int bits, bool is_signed, const Shape& shape) {
  Tensor t(is_signed ? DType::kInt8 : DType::kUInt8, shape);
  auto* out = t.data_as<uint8_t>();
  const uint32_t mask = (1u << bits) - 1u;
  for (int64_t i = 0; i < n; ++i) {
    uint64_t bit = static_cast<uint64_t>(i) * bits;
    // an element spans at most two bytes (bits <= 7)
    uint32_t word = src[bit / 8];
    if ((bit % 8) + bits > 8) word |= static_cast<uint32_t>(src[bit / 8 + 1]) << 8;
    uint32_t v = (word >> (bit % 8)) & mask;
    if (is_signed && (v & (1u << (bits - 1)))) v |= ~mask;
    out[i] = static_cast<uint8_t>(v);
  }
  return t;
}

namespace {

// The whole file into 64-byte aligned memory (blob data sits at 64-byte
// offsets, so tensors viewing it are as aligned as in a mapping).
const uint8_t* read_all(int fd, uint64_t size, const std::string& path) {
  auto* buf = static_cast<uint8_t*>(::operator new(size, std::align_val_t(64)));
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, buf + done, static_cast<size_t>(size - done), static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::operator delete(buf, std::align_val_t(64));
      throw BundleError(path + ": read " + std::to_string(done) + " of " + std::to_string(size) + " bytes" +
                        (n < 0 ? std::string(" (") + std::strerror(errno) + ")" : std::string(" (file truncated)")));
    }
    done += static_cast<uint64_t>(n);
  }
  return buf;
}

}  // namespace

std::shared_ptr<WeightStore> WeightStore::open(const std::string& path, bool mmap) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw BundleError("cannot open weights " + path);
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) throw BundleError("cannot stat weights " + path);
  std::shared_ptr<WeightStore> ws(new WeightStore());
  ws->path_ = path;
  ws->size_ = static_cast<uint64_t>(st.st_size);
  if (ws->size_ < kHeaderSize) {
    throw BundleError(path + ": file is " + std::to_string(ws->size_) + " bytes, shorter than the 64-byte header");
  }
  if (mmap) {
    void* p = ::mmap(nullptr, ws->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) throw BundleError("cannot map weights " + path);
    ws->data_ = static_cast<const uint8_t*>(p);
    ws->mapped_ = true;
  } else {
    ws->data_ = read_all(fd, ws->size_, path);
  }
  ws->count_ = read_le<uint32_t>(ws->data_);
  uint32_t version = read_le<uint32_t>(ws->data_ + 4);
  if (version != 2) {
    throw BundleError(path + ": weight file version " + std::to_string(version) + ", expected 2");
  }
  // every blob needs at least its 64-byte record after the header
  if (ws->count_ > (ws->size_ - kHeaderSize) / kRecordSize) {
    throw BundleError(path + ": header claims " + std::to_string(ws->count_) + " blobs, more than a " +
                      std::to_string(ws->size_) + "-byte file can hold (file truncated or corrupt)");
  }
  ws->self_ = ws;
  return ws;
}

WeightStore::~WeightStore() {
  if (data_ == nullptr) return;
  if (mapped_)
    ::munmap(const_cast<uint8_t*>(data_), size_);
  else
    ::operator delete(const_cast<uint8_t*>(data_), std::align_val_t(64));
}

struct WeightStore::Located {
  const BlobType* type;
  const uint8_t* src;
  uint64_t nbytes;
  int64_t n;
};

WeightStore::Located WeightStore::locate(uint64_t offset, const ValueType& declared, int declared_bits,
                                         const std::string& where) const {
  std::string at = path_ + " offset " + std::to_string(offset) + " (" + where + ")";
  if (offset < kHeaderSize || offset > size_ || size_ - offset < kRecordSize) {
    throw BundleError(at + ": blob record lies outside the " + std::to_string(size_) + "-byte file");
  }
  const uint8_t* rec = data_ + offset;
  uint32_t sentinel = read_le<uint32_t>(rec);
  if (sentinel != kSentinel) throw BundleError(at + ": bad blob sentinel (file corrupt or offset wrong)");
  uint32_t code = read_le<uint32_t>(rec + 4);
  uint64_t nbytes = read_le<uint64_t>(rec + 8);
  uint64_t data_offset = read_le<uint64_t>(rec + 16);
  uint64_t padding_bits = read_le<uint64_t>(rec + 24);
  const BlobType* type = nullptr;
  for (const auto& t : kBlobTypes) {
    if (t.code == code) type = &t;
  }
  if (type == nullptr) throw BundleError(at + ": unsupported blob dtype code " + std::to_string(code));
  if (data_offset < offset + kRecordSize) {
    throw BundleError(at + ": blob data offset " + std::to_string(data_offset) +
                      " overlaps its own record (expected >= " + std::to_string(offset + kRecordSize) + ")");
  }
  // Blob data sits at 64-byte offsets (MILBlob's storage format). A tensor
  // views it in place, so an unaligned offset would make every kernel read
  // misaligned elements (undefined behaviour; found by the fuzzer).
  if (data_offset % kDataAlignment != 0) {
    throw BundleError(at + ": blob data offset " + std::to_string(data_offset) + " is not a multiple of " +
                      std::to_string(kDataAlignment) + " (weight.bin aligns blob data to 64 bytes)");
  }
  if (data_offset > size_ || nbytes > size_ - data_offset) {
    throw BundleError(at + ": blob data [" + std::to_string(data_offset) + ", +" + std::to_string(nbytes) +
                      ") runs past the end of the " + std::to_string(size_) + "-byte file");
  }
  int bits = declared_bits > 0 ? declared_bits : static_cast<int>(dtype_size(declared.dtype) * 8);
  if (type->dtype != declared.dtype || type->bits != bits) {
    throw BundleError(at + ": blob holds " + type->name + ", the program declares " + dtype_name(declared.dtype) +
                      (declared_bits ? " (" + std::to_string(declared_bits) + "-bit)" : ""));
  }
  int64_t n = shape_numel(declared.shape);
  // n * bits must not overflow; a blob can never hold more bits than the file
  if (n < 0 || static_cast<uint64_t>(n) > size_ * 8) {
    throw BundleError(at + ": shape " + shape_to_string(declared.shape) + " needs more data than the " +
                      std::to_string(size_) + "-byte file holds");
  }
  uint64_t bits_needed = static_cast<uint64_t>(n) * type->bits;
  uint64_t expected = (bits_needed + 7) / 8;
  if (nbytes != expected) {
    throw BundleError(at + ": blob is " + std::to_string(nbytes) + " bytes, shape " + shape_to_string(declared.shape) +
                      " of " + type->name + " needs " + std::to_string(expected));
  }
  // sub-byte blobs record their unused trailing bits (0 from older writers)
  if (padding_bits != 0 && padding_bits != nbytes * 8 - bits_needed) {
    throw BundleError(at + ": blob records " + std::to_string(padding_bits) + " padding bits, shape " +
                      shape_to_string(declared.shape) + " of " + type->name + " leaves " +
                      std::to_string(nbytes * 8 - bits_needed));
  }
  return {type, data_ + data_offset, nbytes, n};
}

Tensor WeightStore::blob(uint64_t offset, const ValueType& declared, int declared_bits, const std::string& where) {
  Located b = locate(offset, declared, declared_bits, where);
  if (b.type->bits < 8) return unpack_sub_byte(b.src, b.n, b.type->bits, b.type->is_signed, declared.shape);
  if (b.type->code == 15) {  // uint32 held as int32 bit pattern
    Tensor t(DType::kInt32, declared.shape);
    std::memcpy(t.data(), b.src, b.nbytes);
    return t;
  }
  std::shared_ptr<WeightStore> keep = self_.lock();
  return Tensor::shared(b.type->dtype, declared.shape, const_cast<uint8_t*>(b.src), keep);
}

PackedInts WeightStore::packed_blob(uint64_t offset, const ValueType& declared, int declared_bits,
                                    const std::string& where) {
  Located b = locate(offset, declared, declared_bits, where);
  if (b.type->bits >= 8) {
    throw BundleError(path_ + " offset " + std::to_string(offset) + " (" + where + "): blob holds " + b.type->name +
                      ", not a sub-byte type");
  }
  PackedInts p;
  std::shared_ptr<WeightStore> keep = self_.lock();
  p.bytes = Tensor::shared(DType::kUInt8, {static_cast<int64_t>(b.nbytes)}, const_cast<uint8_t*>(b.src), keep);
  p.bits = b.type->bits;
  p.is_signed = b.type->is_signed;
  p.shape = declared.shape;
  return p;
}

Tensor PackedInts::unpack() const {
  return unpack_sub_byte(bytes.data_as<uint8_t>(), shape_numel(shape), bits, is_signed, shape);
}

}  // namespace staticllm::mil
