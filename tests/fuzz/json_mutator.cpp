// mutate_json: one structural change to a metadata.json or program.json,
// made on the text. A scan finds every value's span (no DOM, no recursion:
// far cheaper than a parse and dump per mutation, and deep nesting is fine);
// the mutation splices one span.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "mil/op.h"
#include "mutators.h"

namespace staticllm::fuzz {

namespace {

constexpr size_t kNone = static_cast<size_t>(-1);

struct Span {
  size_t begin = 0, end = kNone;  // the value's text; end stays kNone for an unclosed container
  size_t member_begin = 0;        // where its object key (or, in arrays, the value) starts
  size_t key_begin = kNone, key_end = kNone;
  int parent = -1;
  char kind = 0;  // '{', '[', '"', '0' (number), 'l' (true, false, null)
};

bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

size_t scan_string(const std::string& t, size_t i) {  // i at the opening quote; returns one past the closing
  for (++i; i < t.size(); ++i) {
    if (t[i] == '\\') {
      ++i;
    } else if (t[i] == '"') {
      return i + 1;
    }
  }
  return kNone;
}

// Spans of every value in `t`, in document order; stops at the first syntax
// error (the spans found so far are still usable).
std::vector<Span> scan(const std::string& t) {
  enum State { kValue, kValueOrClose, kKey, kKeyOrClose, kAfterValue };
  std::vector<Span> spans;
  std::vector<int> open;
  size_t i = 0, key_begin = kNone, key_end = kNone;
  State state = kValue;
  auto close = [&](char want) {
    if (open.empty() || spans[open.back()].kind != want) return false;
    spans[open.back()].end = ++i;
    open.pop_back();
    state = kAfterValue;
    return true;
  };
  while (true) {
    while (i < t.size() && is_ws(t[i])) ++i;
    if (i >= t.size()) break;
    char c = t[i];
    if (state == kAfterValue) {
      if (open.empty()) break;
      if (c == ',') {
        ++i;
        state = spans[open.back()].kind == '{' ? kKey : kValue;
      } else if (!close(c == '}' ? '{' : c == ']' ? '[' : 0)) {
        break;
      }
      continue;
    }
    if (state == kKey || state == kKeyOrClose) {
      if (state == kKeyOrClose && c == '}') {
        close('{');
        continue;
      }
      if (c != '"') break;
      key_begin = i;
      key_end = i = scan_string(t, i);
      if (i == kNone) break;
      while (i < t.size() && is_ws(t[i])) ++i;
      if (i >= t.size() || t[i] != ':') break;
      ++i;
      state = kValue;
      continue;
    }
    if (state == kValueOrClose && c == ']') {
      close('[');
      continue;
    }
    Span s;
    s.begin = i;
    s.member_begin = key_begin != kNone ? key_begin : i;
    s.key_begin = key_begin;
    s.key_end = key_end;
    s.parent = open.empty() ? -1 : open.back();
    key_begin = key_end = kNone;
    if (c == '{' || c == '[') {
      s.kind = c;
      spans.push_back(s);
      open.push_back(static_cast<int>(spans.size()) - 1);
      ++i;
      state = c == '{' ? kKeyOrClose : kValueOrClose;
      continue;
    }
    if (c == '"') {
      s.kind = '"';
      s.end = scan_string(t, i);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      s.kind = '0';
      size_t j = i + 1;
      while (j < t.size() && std::strchr("0123456789.eE+-", t[j]) != nullptr) ++j;
      s.end = j;
    } else if (c == 't' || c == 'f' || c == 'n') {
      s.kind = 'l';
      size_t j = i;
      while (j < t.size() && t[j] >= 'a' && t[j] <= 'z') ++j;
      s.end = j;
    } else {
      break;
    }
    if (s.end == kNone) break;
    spans.push_back(s);
    i = s.end;
    state = kAfterValue;
  }
  spans.erase(std::remove_if(spans.begin(), spans.end(), [](const Span& s) { return s.end == kNone; }), spans.end());
  return spans;
}

size_t below(size_t n, Rng& rng) { return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng); }

template <typename T>
const T& pick(const std::vector<T>& v, Rng& rng) {
  return v[below(v.size(), rng)];
}

// Type names the loaders know and some they do not, so a changed dtype is
// often a valid one (MIL names in program.json, short names in metadata.json).
const char* const kStrings[] = {
    "FLOAT16",
    "FLOAT32",
    "FLOAT64",
    "INT8",
    "UINT8",
    "INT16",
    "UINT16",
    "INT32",
    "UINT32",
    "INT64",
    "BOOL",
    "INT4",
    "UINT4",
    "UINT1",
    "UINT2",
    "UINT3",
    "UINT6",
    "STRING",
    "fp16",
    "fp32",
    "int8",
    "int32",
    "int64",
    "bool",
    "NaN",
    "",
    "Infinity",
    "-Infinity",
    "@model_path/weights/weight.bin",
};

// Number tokens at the edges of what a JSON library and the loaders accept.
const char* const kNumbers[] = {
    "1e400",
    "-1e400",
    "1e-400",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "-0",
    "0.5",
    "-1",
    "4294967296",
    "65504",
    "65520",
    "3.5e38",
    "1e-45",
    "1e300",
    "2147483648",
    "9223372036854775807",
    "-9223372036854775808",
    "18446744073709551615",
};

// Every op the interpreter runs: an op's type swapped for another one
// exercises each op builder on arguments it did not expect.
const std::vector<std::string>& op_types() {
  static const std::vector<std::string> types = mil::OpRegistry::instance().op_types();
  return types;
}

std::string quoted(const std::string& s) { return '"' + s + '"'; }

// An integer near the edges, as text (unsigned arithmetic: wrapping is meant).
std::string integer_text(const std::string& current, Rng& rng) {
  uint64_t v = std::strtoull(current.c_str(), nullptr, 10);
  if (!current.empty() && current[0] == '-') v = 0 - std::strtoull(current.c_str() + 1, nullptr, 10);
  uint64_t out;
  switch (below(6, rng)) {
    case 0: out = interesting_integer(rng); break;
    case 1: out = 0 - interesting_integer(rng); break;
    case 2: out = v + below(17, rng) - 8; break;
    case 3: out = v * 2; break;
    case 4: out = v / 2; break;
    default: out = 0; break;
  }
  return below(4, rng) == 0 ? std::to_string(out) : std::to_string(static_cast<int64_t>(out));
}

bool digits_only(const std::string& s) {
  size_t i = !s.empty() && s[0] == '-' ? 1 : 0;
  return i < s.size() &&
         std::all_of(s.begin() + static_cast<long>(i), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

class JsonMutation {
 public:
  JsonMutation(const std::string& text, Rng& rng) : t_(text), rng_(rng), spans_(scan(text)) {
    strings_.push_back("\"\"");  // never empty: a document may hold no string
    for (const Span& s : spans_) {
      if (s.kind == '"') strings_.push_back(text.substr(s.begin, s.end - s.begin));
      if (s.key_begin != kNone) strings_.push_back(text.substr(s.key_begin, s.key_end - s.key_begin));
    }
  }

  bool usable() const { return !spans_.empty(); }

  std::string run() {
    for (int tries = 0; tries < 8; ++tries) {
      std::string out;
      if (one(pick(spans_, rng_), out) && out != t_) return out;
    }
    return t_;
  }

 private:
  std::string text(const Span& s) const { return t_.substr(s.begin, s.end - s.begin); }
  std::string splice(size_t b, size_t e, const std::string& with) const {
    return t_.substr(0, b) + with + t_.substr(e);
  }
  std::string replace(const Span& s, const std::string& with) const { return splice(s.begin, s.end, with); }

  std::string leaf_edit(const Span& s) {
    if (s.kind == '0') return below(2, rng_) ? integer_text(text(s), rng_) : kNumbers[below(std::size(kNumbers), rng_)];
    if (s.kind == 'l') return below(2, rng_) ? "true" : (below(2, rng_) ? "false" : "null");
    std::string inner = t_.substr(s.begin + 1, s.end - s.begin - 2);
    if (digits_only(inner) && below(4, rng_) != 0) return quoted(integer_text(inner, rng_));  // protobuf int64
    switch (below(5, rng_)) {
      case 0: return pick(strings_, rng_);
      case 1: return quoted(kStrings[below(std::size(kStrings), rng_)]);
      case 2: return quoted(pick(op_types(), rng_));
      case 3: return quoted(inner.substr(0, below(inner.size() + 1, rng_)));
      default: return quoted(std::to_string(static_cast<int64_t>(interesting_integer(rng_))));
    }
  }

  // Removes a member or element together with one neighbouring comma.
  std::string remove(const Span& s) const {
    size_t j = s.end;
    while (j < t_.size() && is_ws(t_[j])) ++j;
    if (j < t_.size() && t_[j] == ',') return splice(s.member_begin, j + 1, "");
    size_t k = s.member_begin;
    while (k > 0 && is_ws(t_[k - 1])) --k;
    if (k > 0 && t_[k - 1] == ',') return splice(k - 1, s.end, "");
    return splice(s.member_begin, s.end, "");
  }

  bool one(const Span& s, std::string& out) {
    const Span& other = pick(spans_, rng_);
    switch (below(12, rng_)) {
      case 0:
      case 1:
      case 2:
      case 3: out = s.kind == '{' || s.kind == '[' ? replace(s, "[]") : replace(s, leaf_edit(s)); return true;
      case 4: out = s.parent >= 0 ? remove(s) : ""; return s.parent >= 0;
      case 5: out = replace(s, text(other)); return true;  // another part of the document in its place
      case 6: {                                            // duplicated in place (ops, dimensions, specs, keys)
        if (s.parent < 0) return false;
        std::string member = t_.substr(s.member_begin, s.end - s.member_begin);
        out = splice(s.end, s.end, "," + member);
        return true;
      }
      case 7: {  // swapped with a sibling
        std::vector<const Span*> sibs;
        for (const Span& x : spans_) {
          if (x.parent == s.parent && x.begin != s.begin) sibs.push_back(&x);
        }
        if (s.parent < 0 || sibs.empty()) return false;
        const Span& o = *pick(sibs, rng_);
        const Span& a = o.begin < s.begin ? o : s;
        const Span& b = o.begin < s.begin ? s : o;
        out = t_.substr(0, a.begin) + text(b) + t_.substr(a.end, b.begin - a.end) + text(a) + t_.substr(b.end);
        return true;
      }
      case 8: {
        static const char* const kOthers[] = {"null", "{}", "[]", "\"\"", "0", "true", "-1"};
        out = below(4, rng_) ? replace(s, kOthers[below(std::size(kOthers), rng_)]) : replace(s, "[" + text(s) + "]");
        return true;
      }
      case 9:  // a key renamed
        if (s.key_begin == kNone) return false;
        out = splice(s.key_begin, s.key_end, pick(strings_, rng_));
        return true;
      case 10:  // a member added
        if (s.kind != '{') return false;
        out = splice(s.begin + 1, s.begin + 1,
                     pick(strings_, rng_) + ":" + text(other) + (t_[s.begin + 1] == '}' ? "" : ","));
        return true;
      default: {  // nested 1 .. 65536 levels deep
        size_t depth = size_t{1} << below(17, rng_);
        out = replace(s, std::string(depth, '[') + text(s) + std::string(depth, ']'));
        return true;
      }
    }
  }

  const std::string& t_;
  Rng& rng_;
  std::vector<Span> spans_;
  std::vector<std::string> strings_;  // string values and keys, quoted
};

std::string byte_mutation(const std::string& text, size_t max_size, const ByteMutator& bytes) {
  std::string buf = text;
  buf.resize(std::max(max_size, size_t{1}));
  size_t n = bytes(reinterpret_cast<uint8_t*>(buf.data()), std::min(text.size(), max_size), max_size);
  buf.resize(n);
  return buf;
}

}  // namespace

uint64_t interesting_integer(Rng& rng) {
  static const uint64_t kValues[] = {
      0,
      1,
      2,
      3,
      4,
      7,
      8,
      15,
      16,
      63,
      64,
      65,
      127,
      128,
      255,
      256,
      1023,
      1024,
      4096,
      65535,
      65536,
      0x7fffffff,
      0x80000000,
      0xffffffff,
      1ull << 32,
      1ull << 40,
      (1ull << 53) + 1,
      1ull << 62,
      0x7fffffffffffffff,
      1ull << 63,
      ~0ull,
  };
  if (below(4, rng) == 0) return below(33, rng);
  return kValues[below(std::size(kValues), rng)];
}

std::string mutate_json(const std::string& text, size_t max_size, Rng& rng, const ByteMutator& bytes) {
  if (below(10, rng) == 0) return byte_mutation(text, max_size, bytes);
  JsonMutation m(text, rng);
  if (!m.usable()) return byte_mutation(text, max_size, bytes);
  std::string out = m.run();
  if (out.size() > max_size || out == text) return byte_mutation(text, max_size, bytes);
  return out;
}

}  // namespace staticllm::fuzz
