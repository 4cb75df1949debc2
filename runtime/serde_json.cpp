// Strict metadata.json parsing. Every error names the key path and what was
// expected; keys we do not know are kept in `extra` so tools that add their
// own keys survive a load/save round trip.
#include "staticllm/serde_json.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

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

TensorSpec parse_spec(const json& v, const std::string& path) {
  require_object(v, path);
  TensorSpec s;
  s.name = get_string(v, "name", path);
  std::string dt = get_string(v, "dtype", path);
  if (!dtype_from_name(dt, &s.dtype)) {
    fail(path + ".dtype",
         "expected one of fp16, fp32, fp64, int8, uint8, int16, uint16, int32, int64, bool; got \"" + dt + "\"");
  }
  const json& shape = require(v, "shape", path);
  if (!shape.is_array()) fail(path + ".shape", "expected a list of positive integers, got " + type_name(shape));
  for (size_t i = 0; i < shape.size(); ++i) {
    if (!shape[i].is_number_integer() || shape[i].get<int64_t>() <= 0) {
      fail(path + ".shape[" + std::to_string(i) + "]", "expected a positive integer, got " + shape[i].dump());
    }
    s.shape.push_back(shape[i].get<int64_t>());
  }
  s.extra = extras(v, {"name", "dtype", "shape"});
  return s;
}

std::vector<TensorSpec> parse_specs(const json& m, const std::string& key, const std::string& path, bool optional) {
  std::vector<TensorSpec> out;
  if (optional && !m.contains(key)) return out;
  const json& list = require(m, key, path);
  std::string p = path + "." + key;
  if (!list.is_array()) fail(p, "expected a list, got " + type_name(list));
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    std::string ip = p + "[" + std::to_string(i) + "]";
    TensorSpec s = parse_spec(list[i], ip);
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

json spec_to_json(const TensorSpec& s) {
  json j = s.extra.is_object() ? s.extra : json::object();
  j["name"] = s.name;
  j["dtype"] = dtype_name(s.dtype);
  j["shape"] = s.shape;
  return j;
}

}  // namespace

ModelMetadata metadata_from_json(const json& doc) {
  require_object(doc, "");
  ModelMetadata md;
  const json& version = require(doc, "format_version", "");
  if (!version.is_number_integer()) fail("format_version", "expected an integer, got " + type_name(version));
  md.format_version = version.get<int>();
  if (md.format_version != kMetadataFormatVersion) {
    fail("format_version", "expected " + std::to_string(kMetadataFormatVersion) + ", got " +
                               std::to_string(md.format_version) + " (a newer staticllm wrote this bundle?)");
  }
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
  md.extra = extras(doc, {"format_version", "identifier", "multifunction", "default_method", "methods", "llm"});
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
  return doc;
}

ModelMetadata metadata_from_string(const std::string& text) {
  if (json_nesting_depth(text) > kMaxJsonDepth) {
    throw MetadataError("metadata.json: nested more than " + std::to_string(kMaxJsonDepth) +
                        " levels deep (metadata nests a few levels)");
  }
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e400
    throw MetadataError(std::string("metadata.json: not valid JSON (") + e.what() + ")");
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
