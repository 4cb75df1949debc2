// mutate_weights: one change to a weight.bin (MIL blob storage v2: a 64-byte
// header {count u32, version u32}, then per blob a 64-byte record
// {sentinel u32, dtype u32, nbytes u64, data offset u64, padding bits u64}
// followed by its data, each aligned to 64 bytes).
#include <algorithm>
#include <cstring>
#include <vector>

#include "mutators.h"

namespace staticllm::fuzz {

namespace {

constexpr uint32_t kSentinel = 0xDEADBEEF;
constexpr size_t kHeaderBytes = 64;
constexpr size_t kRecordBytes = 64;

size_t below(size_t n, Rng& rng) { return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng); }

template <typename T>
void put(std::string& s, size_t at, T v) {
  if (at + sizeof(T) <= s.size()) std::memcpy(&s[at], &v, sizeof(T));
}

template <typename T>
T get(const std::string& s, size_t at) {
  T v{};
  if (at + sizeof(T) <= s.size()) std::memcpy(&v, &s[at], sizeof(T));
  return v;
}

struct Record {
  size_t at;        // offset of the 64-byte record
  uint64_t data;    // its data offset
  uint64_t nbytes;  // its data size
};

// The records a 64-byte-aligned scan finds (robust to earlier mutations).
std::vector<Record> records(const std::string& s) {
  std::vector<Record> out;
  for (size_t at = kHeaderBytes; at + kRecordBytes <= s.size(); at += 64) {
    if (get<uint32_t>(s, at) == kSentinel) out.push_back({at, get<uint64_t>(s, at + 16), get<uint64_t>(s, at + 8)});
  }
  return out;
}

// Special fp16 / fp32 bit patterns: NaN, infinities, -0, max, subnormals.
void special_values(std::string& s, const Record& r, Rng& rng) {
  static const uint16_t kHalf[] = {0x7e00, 0x7c00, 0xfc00, 0x8000, 0x7bff, 0x0001, 0xffff};
  static const uint32_t kFloat[] = {0x7fc00000, 0x7f800000, 0xff800000, 0x80000000, 0x7f7fffff, 0x00000001};
  if (r.data >= s.size() || r.nbytes == 0) return;
  size_t n = 1 + below(8, rng);
  for (size_t i = 0; i < n; ++i) {
    size_t at = r.data + below(std::min<uint64_t>(r.nbytes, s.size() - r.data), rng);
    if (below(2, rng)) {
      put(s, at & ~size_t{1}, kHalf[below(std::size(kHalf), rng)]);
    } else {
      put(s, at & ~size_t{3}, kFloat[below(std::size(kFloat), rng)]);
    }
  }
}

void edit_record(std::string& s, const Record& r, Rng& rng) {
  switch (below(6, rng)) {
    case 0: put(s, r.at, static_cast<uint32_t>(below(2, rng) ? interesting_integer(rng) : 0xDEADBEEE)); break;
    case 1: put(s, r.at + 4, static_cast<uint32_t>(below(3, rng) ? below(17, rng) : interesting_integer(rng))); break;
    case 2: {
      uint64_t v = below(2, rng) ? interesting_integer(rng) : r.nbytes + below(129, rng) - 64;
      put(s, r.at + 8, v);
      break;
    }
    case 3: {
      uint64_t v = below(2, rng) ? interesting_integer(rng) : r.data + 64 * (below(5, rng)) - 128 + below(3, rng);
      put(s, r.at + 16, v);
      break;
    }
    case 4: put(s, r.at + 24, static_cast<uint64_t>(below(3, rng) ? below(16, rng) : interesting_integer(rng))); break;
    default: special_values(s, r, rng); break;
  }
}

}  // namespace

std::string mutate_weights(const std::string& data, size_t max_size, Rng& rng, const ByteMutator& bytes) {
  std::string s = data;
  std::vector<Record> recs = records(s);
  size_t choice = below(10, rng);
  if (choice == 0) {  // libFuzzer's byte-level mutations
    s.resize(std::max(max_size, size_t{1}));
    s.resize(bytes(reinterpret_cast<uint8_t*>(s.data()), std::min(data.size(), max_size), max_size));
    return s;
  }
  if (choice == 1) {  // header: blob count or version
    put(s, below(2, rng) * 4, static_cast<uint32_t>(below(2, rng) ? interesting_integer(rng) : below(8, rng)));
  } else if (choice == 2) {  // truncated anywhere, or just inside a record or its data
    size_t cut = below(s.size() + 1, rng);
    if (!recs.empty() && below(2, rng)) {
      const Record& r = recs[below(recs.size(), rng)];
      cut = std::min<uint64_t>(s.size(), below(2, rng) ? r.at + below(kRecordBytes, rng) : r.data + r.nbytes - 1);
    }
    s.resize(cut);
  } else if (choice == 3) {  // extended with zeros
    s.resize(std::min(max_size, s.size() + 64 * (1 + below(4, rng))), '\0');
  } else if (!recs.empty()) {
    edit_record(s, recs[below(recs.size(), rng)], rng);
  }
  if (s.size() > max_size) s.resize(max_size);
  return s;
}

}  // namespace staticllm::fuzz
