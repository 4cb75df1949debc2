// Strict metadata.json parsing. Every error names the key path and what was
// expected; keys we do not know are kept in `extra` so tools that add their
// own keys survive a load/save round trip.
#include "staticllm/serde_json.h"

#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <vector>

#include "json_depth.h"
#include "staticllm/errors.h"

namespace staticllm {

using nlohmann::json;

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw MetadataError("metadata.json: " + path + ": " + what);
}

std::string type_name(const json& v) { return v.type_name(); }

const json& require(const json& obj, const std::string& key, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end()) fail(path.empty() ? key : path + "." + key, "missing key");
  return *it;
}

std::string get_string(const json& obj, const std::string& key, const std::string& path) {
  const json& v = require(obj, key, path);
  std::string p = path.empty() ? key : path + "." + key;
  if (!v.is_string()) fail(p, "expected a string, got " + type_name(v));
  if (v.get<std::string>().empty()) fail(p, "expected a non-empty string");
  return v.get<std::string>();
}

// The integer at `v`, or nullopt when it is not an integer that int64 holds
// (nlohmann keeps integers above INT64_MAX as unsigned; get<int64_t> would wrap).
std::optional<int64_t> as_int64(const json& v) {
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(v.get<uint64_t>());
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return std::nullopt;
}

// Same bound as program.json's shapes: no element count (nor its byte size)
// can overflow later arithmetic.
constexpr int64_t kMaxElements = int64_t{1} << 40;

json extras(const json& obj, const std::set<std::string>& known) {
  json extra = json::object();
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!known.count(it.key())) extra[it.key()] = it.value();
  }
  return extra;
}

void require_object(const json& v, const std::string& path) {
  if (!v.is_object()) fail(path.empty() ? "<root>" : path, "expected an object, got " + type_name(v));
}

// A list of positive integers; with `flexible`, null entries are kFlexibleDim.
Shape parse_shape(const json& shape, const std::string& path, bool flexible) {
  const char* expected =
      flexible ? "expected a list of positive integers or nulls, got " : "expected a list of positive integers, got ";
  if (!shape.is_array()) fail(path, expected + type_name(shape));
  Shape out;
  int64_t elements = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (flexible && shape[i].is_null()) {
      out.push_back(kFlexibleDim);
      continue;
    }
    std::optional<int64_t> d = as_int64(shape[i]);
    if (!d || *d <= 0) {
      fail(path + "[" + std::to_string(i) + "]",
           std::string(flexible ? "expected a positive integer or null" : "expected a positive integer") + ", got " +
               shape[i].dump());
    }
    if (*d > kMaxElements / elements) fail(path, "shape " + shape.dump() + " has more than 2^40 elements");
    elements *= *d;
    out.push_back(*d);
  }
  return out;
}

std::vector<DimRange> parse_ranges(const json& v, size_t rank, const std::string& path) {
  if (!v.is_array() || v.size() != rank) {
    fail(path, "expected a list of " + std::to_string(rank) + " [lower, upper] pairs, got " + v.dump());
  }
  std::vector<DimRange> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const json& r = v[i];
    std::string p = path + "[" + std::to_string(i) + "]";
    std::optional<int64_t> lo = r.is_array() && r.size() == 2 ? as_int64(r[0]) : std::nullopt;
    std::optional<int64_t> hi = r.is_array() && r.size() == 2 ? as_int64(r[1]) : std::nullopt;
    bool unbounded = r.is_array() && r.size() == 2 && r[1].is_null();
    if (!lo || *lo <= 0 || kMaxElements < *lo || (!unbounded && (!hi || *hi < *lo || kMaxElements < *hi))) {
      fail(p, "expected [lower, upper] with 0 < lower <= upper (upper null: unbounded), got " + r.dump());
    }
    out.push_back({*lo, unbounded ? kFlexibleDim : *hi});
  }
  return out;
}

// The keys of a flexible input; `s.shape` is parsed already.
void parse_flexibility(const json& v, const std::string& path, bool input, TensorSpec& s) {
  if (v.contains("shape_range")) s.shape_range = parse_ranges(v["shape_range"], s.shape.size(), path + ".shape_range");
  if (v.contains("enumerated_shapes")) {
    const json& list = v["enumerated_shapes"];
    std::string p = path + ".enumerated_shapes";
    if (!list.is_array() || list.empty()) fail(p, "expected a non-empty list of shapes, got " + list.dump());
    for (size_t i = 0; i < list.size(); ++i) {
      s.enumerated_shapes.push_back(parse_shape(list[i], p + "[" + std::to_string(i) + "]", false));
      if (s.enumerated_shapes.back().size() != s.shape.size()) {
        fail(p + "[" + std::to_string(i) + "]", "rank differs from shape " + v["shape"].dump());
      }
    }
  }
  if (!s.shape_range.empty() && !s.enumerated_shapes.empty()) {
    fail(path, "has both shape_range and enumerated_shapes; a Core ML input has one or the other");
  }
  if (v.contains("default_shape")) s.default_shape = parse_shape(v["default_shape"], path + ".default_shape", false);
  const bool flexible_input = !s.shape_range.empty() || !s.enumerated_shapes.empty();
  if (input && !s.is_fixed() && s.default_shape.empty()) {
    fail(path + ".default_shape", "missing key (the input is flexible)");
  }
  if (!input && (flexible_input || !s.default_shape.empty())) {
    fail(path, "an output has no shape_range, enumerated_shapes or default_shape");
  }
  if (!s.default_shape.empty() && !s.accepts(s.default_shape)) {
    fail(path + ".default_shape",
         shape_to_string(s.default_shape) + " is not a shape the input allows (" + s.allowed() + ")");
  }
}

TensorSpec parse_spec(const json& v, const std::string& path, const std::string& kind) {
  const bool flexible = kind != "states";
  require_object(v, path);
  TensorSpec s;
  s.name = get_string(v, "name", path);
  std::string dt = get_string(v, "dtype", path);
  if (!dtype_from_name(dt, &s.dtype)) {
    fail(path + ".dtype",
         "expected one of fp16, fp32, fp64, int8, uint8, int16, uint16, int32, int64, bool; got \"" + dt + "\"");
  }
  const json& shape = require(v, "shape", path);
  s.any_rank = flexible && shape.is_null();
  if (s.any_rank && kind == "inputs") fail(path + ".shape", "expected a list for an input, got null");
  if (!s.any_rank) s.shape = parse_shape(shape, path + ".shape", flexible);
  if (flexible) parse_flexibility(v, path, kind == "inputs", s);
  s.extra = extras(v, {"name", "dtype", "shape", "default_shape", "shape_range", "enumerated_shapes"});
  return s;
}

// States are buffers the caller holds: always fixed. Inputs and outputs may be flexible.
std::vector<TensorSpec> parse_specs(const json& m, const std::string& key, const std::string& path, bool optional) {
  std::vector<TensorSpec> out;
  if (optional && !m.contains(key)) return out;
  const json& list = require(m, key, path);
  std::string p = path + "." + key;
  if (!list.is_array()) fail(p, "expected a list, got " + type_name(list));
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    std::string ip = p + "[" + std::to_string(i) + "]";
    TensorSpec s = parse_spec(list[i], ip, key);
    if (!names.insert(s.name).second) fail(ip + ".name", "duplicate name \"" + s.name + "\"");
    out.push_back(std::move(s));
  }
  return out;
}

MethodMetadata parse_method(const json& v, const std::string& path) {
  require_object(v, path);
  MethodMetadata m;
  m.name = get_string(v, "name", path);
  m.function_name = get_string(v, "function_name", path);
  m.inputs = parse_specs(v, "inputs", path, false);
  m.outputs = parse_specs(v, "outputs", path, false);
  m.states = parse_specs(v, "states", path, true);
  // A state is passed like an input: one name cannot be both (such a
  // bundle used to run, returning the input as if it were a state).
  for (size_t i = 0; i < m.states.size(); ++i) {
    if (m.find_input(m.states[i].name) != nullptr) {
      fail(path + ".states[" + std::to_string(i) + "].name", "\"" + m.states[i].name + "\" is also an input's name");
    }
  }
  m.extra = extras(v, {"name", "function_name", "inputs", "outputs", "states"});
  return m;
}

std::string parse_sha256(const json& v) {
  const char* expected = "expected 64 lowercase hex digits (the SHA-256 of weights/weight.bin), got ";
  if (!v.is_string()) fail("weights_sha256", expected + v.dump());
  const std::string& s = v.get_ref<const std::string&>();
  bool hex = s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (!hex) fail("weights_sha256", expected + v.dump());
  return s;
}

json spec_to_json(const TensorSpec& s) {
  json j = s.extra.is_object() ? s.extra : json::object();
  j["name"] = s.name;
  j["dtype"] = dtype_name(s.dtype);
  auto dims = [](const Shape& shape) {
    json a = json::array();
    for (int64_t d : shape) a.push_back(d == kFlexibleDim ? json() : json(d));
    return a;
  };
  j["shape"] = s.any_rank ? json() : dims(s.shape);
  if (!s.default_shape.empty()) j["default_shape"] = s.default_shape;
  if (!s.shape_range.empty()) {
    json ranges = json::array();
    for (const DimRange& r : s.shape_range)
      ranges.push_back({r.lower, r.upper == kFlexibleDim ? json() : json(r.upper)});
    j["shape_range"] = ranges;
  }
  if (!s.enumerated_shapes.empty()) j["enumerated_shapes"] = s.enumerated_shapes;
  return j;
}

}  // namespace

ModelMetadata metadata_from_json(const json& doc) {
  require_object(doc, "");
  ModelMetadata md;
  const json& version = require(doc, "format_version", "");
  if (!version.is_number_integer()) fail("format_version", "expected an integer, got " + type_name(version));
  // Compared as written: a narrowing conversion could turn 4294967297 into 1.
  if (as_int64(version) != std::optional<int64_t>(kMetadataFormatVersion)) {
    fail("format_version", "expected " + std::to_string(kMetadataFormatVersion) + ", got " + version.dump() +
                               " (a newer staticllm wrote this bundle?)");
  }
  md.format_version = kMetadataFormatVersion;
  md.identifier = get_string(doc, "identifier", "");
  const json& multi = require(doc, "multifunction", "");
  if (!multi.is_boolean()) fail("multifunction", "expected true or false, got " + type_name(multi));
  md.multifunction = multi.get<bool>();
  const json& methods = require(doc, "methods", "");
  if (!methods.is_array() || methods.empty()) fail("methods", "expected a non-empty list of methods");
  std::set<std::string> names;
  for (size_t i = 0; i < methods.size(); ++i) {
    std::string p = "methods[" + std::to_string(i) + "]";
    MethodMetadata m = parse_method(methods[i], p);
    if (!names.insert(m.name).second) fail(p + ".name", "duplicate method name \"" + m.name + "\"");
    md.methods.push_back(std::move(m));
  }
  if (!md.multifunction && md.methods.size() != 1) {
    fail("multifunction", "false, but " + std::to_string(md.methods.size()) + " methods are listed");
  }
  md.default_method = get_string(doc, "default_method", "");
  if (!md.find_method(md.default_method)) {
    std::string known;
    for (const auto& m : md.methods) known += (known.empty() ? "" : ", ") + m.name;
    fail("default_method", "\"" + md.default_method + "\" is not a method (methods: " + known + ")");
  }
  if (doc.contains("llm")) {
    if (!doc["llm"].is_object() && !doc["llm"].is_null())
      fail("llm", "expected an object, got " + type_name(doc["llm"]));
    md.llm = doc["llm"];
  }
  if (doc.contains("weights_sha256")) md.weights_sha256 = parse_sha256(doc["weights_sha256"]);
  md.extra = extras(
      doc, {"format_version", "identifier", "multifunction", "default_method", "methods", "llm", "weights_sha256"});
  return md;
}

json metadata_to_json(const ModelMetadata& md) {
  json doc = md.extra.is_object() ? md.extra : json::object();
  doc["format_version"] = md.format_version;
  doc["identifier"] = md.identifier;
  doc["multifunction"] = md.multifunction;
  doc["default_method"] = md.default_method;
  json methods = json::array();
  for (const auto& m : md.methods) {
    json j = m.extra.is_object() ? m.extra : json::object();
    j["name"] = m.name;
    j["function_name"] = m.function_name;
    for (auto [key, list] : {std::pair<const char*, const std::vector<TensorSpec>*>{"inputs", &m.inputs},
                             {"outputs", &m.outputs},
                             {"states", &m.states}}) {
      json arr = json::array();
      for (const auto& s : *list) arr.push_back(spec_to_json(s));
      if (!arr.empty() || std::string(key) != "states") j[key] = arr;  // states are optional
    }
    methods.push_back(j);
  }
  doc["methods"] = methods;
  if (!md.llm.is_null()) doc["llm"] = md.llm;
  if (md.weights_sha256) doc["weights_sha256"] = *md.weights_sha256;
  return doc;
}

namespace {

// The key path ("llm.vocab_size", "methods[0].inputs[1].shape[0]") of the
// value a parse of `text` fails at. Used only after a failure, to name the key
// of a number nlohmann cannot hold (out_of_range, e.g. 1e400); reparsing with
// a callback costs nothing on the normal path.
std::string failing_key_path(const std::string& text) {
  struct Frame {
    bool array;
    std::string key;
    size_t index;
  };
  std::vector<Frame> frames;
  auto track = [&frames](int, json::parse_event_t event, json& parsed) {
    using E = json::parse_event_t;
    switch (event) {
      case E::object_start: frames.push_back({false, "", 0}); break;
      case E::array_start: frames.push_back({true, "", 0}); break;
      case E::key: frames.back().key = parsed.get<std::string>(); break;
      case E::object_end:
      case E::array_end:
        frames.pop_back();
        if (!frames.empty() && frames.back().array) ++frames.back().index;
        break;
      case E::value:
        if (!frames.empty() && frames.back().array) ++frames.back().index;
        break;
    }
    return true;
  };
  try {
    json ignored = json::parse(text, track);
  } catch (const json::exception&) {
    std::string path;
    for (const Frame& f : frames) {
      if (f.array)
        path += "[" + std::to_string(f.index) + "]";
      else
        path += (path.empty() ? "" : ".") + f.key;
    }
    return path.empty() ? "<root>" : path;
  }
  return "<root>";
}

}  // namespace

ModelMetadata metadata_from_string(const std::string& text) {
  if (json_nesting_depth(text) > kMaxJsonDepth) {
    throw MetadataError("metadata.json: nested more than " + std::to_string(kMaxJsonDepth) +
                        " levels deep (metadata nests a few levels)");
  }
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    throw MetadataError(std::string("metadata.json: not valid JSON (") + e.what() + ")");
  } catch (const json::out_of_range& e) {
    // nlohmann throws out_of_range for numbers beyond double (1e400)
    fail(failing_key_path(text), std::string("number out of range (") + e.what() + ")");
  } catch (const json::exception& e) {
    throw MetadataError(std::string("metadata.json: cannot be read (") + e.what() + ")");
  }
  return metadata_from_json(doc);
}

std::string metadata_to_string(const ModelMetadata& md) { return metadata_to_json(md).dump(2) + "\n"; }

ModelMetadata load_metadata_file(const std::string& path) {
  // A directory opens fine as a stream on Linux and then reads as nothing.
  std::error_code ec;
  std::ifstream in;
  if (std::filesystem::is_regular_file(path, ec)) in.open(path, std::ios::binary);
  if (!in.is_open()) throw BundleError("cannot read " + path + " (is this a staticllm bundle directory?)");
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw BundleError("failed reading " + path);
  try {
    return metadata_from_string(buf.str());
  } catch (const MetadataError& e) {
    std::string msg = e.what();
    const std::string prefix = "metadata.json";
    if (msg.rfind(prefix, 0) == 0) msg = path + msg.substr(prefix.size());
    throw MetadataError(msg);
  }
}

void save_metadata_file(const ModelMetadata& md, const std::string& path) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw BundleError("cannot write " + path);
  out << metadata_to_string(md);
  if (!out) throw BundleError("failed writing " + path);
}

}  // namespace staticllm
