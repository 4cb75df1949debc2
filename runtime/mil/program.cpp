#include "mil/program.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mil/half.h"
#include "staticllm/errors.h"

namespace staticllm::mil {

using nlohmann::json;

namespace {

struct Ctx {
  std::string file;
  WeightStore* weights;
};

[[noreturn]] void fail(const Ctx& c, const std::string& where, const std::string& what) {
  throw BundleError(c.file + ": " + where + ": " + what);
}

const json& get(const Ctx& c, const json& obj, const char* key, const std::string& where) {
  if (!obj.is_object() || !obj.contains(key)) fail(c, where, std::string("missing '") + key + "'");
  return obj[key];
}

int64_t as_int(const Ctx& c, const json& v, const std::string& where) {
  // protobuf's JSON mapping writes 64-bit integers as strings
  try {
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_string()) return std::stoll(v.get<std::string>());
  } catch (const std::exception&) {
  }
  fail(c, where, "expected an integer, got " + v.dump());
}

double as_double(const Ctx& c, const json& v, const std::string& where) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
    if (s == "Infinity") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity") return -std::numeric_limits<double>::infinity();
  }
  fail(c, where, "expected a number, got " + v.dump());
}

// MIL data types -> (runtime dtype, bits in the file for sub-byte types).
bool parse_dtype(const std::string& s, DType* out, int* bits, bool* is_string) {
  static const std::map<std::string, std::pair<DType, int>> kTypes = {
      {"FLOAT16", {DType::kFloat16, 0}}, {"FLOAT32", {DType::kFloat32, 0}}, {"FLOAT64", {DType::kFloat64, 0}},
      {"INT8", {DType::kInt8, 0}},       {"UINT8", {DType::kUInt8, 0}},     {"INT16", {DType::kInt16, 0}},
      {"UINT16", {DType::kUInt16, 0}},   {"INT32", {DType::kInt32, 0}},     {"INT64", {DType::kInt64, 0}},
      {"BOOL", {DType::kBool, 0}},       {"INT4", {DType::kInt8, 4}},       {"UINT4", {DType::kUInt8, 4}},
      {"UINT1", {DType::kUInt8, 1}},     {"UINT2", {DType::kUInt8, 2}},     {"UINT3", {DType::kUInt8, 3}},
      {"UINT6", {DType::kUInt8, 6}},     {"UINT32", {DType::kInt32, 0}},
  };
  *is_string = s == "STRING";
  if (*is_string) return true;
  auto it = kTypes.find(s);
  if (it == kTypes.end()) return false;
  *out = it->second.first;
  *bits = it->second.second;
  return true;
}

struct ParsedType {
  ValueType type;
  int bits = 0;
  bool is_string = false;
  bool is_state = false;
};

ParsedType parse_type(const Ctx& c, const json& t, const std::string& where) {
  ParsedType p;
  const json* tensor = nullptr;
  if (t.contains("tensorType")) {
    tensor = &t["tensorType"];
  } else if (t.contains("stateType")) {
    p.is_state = true;
    const json& wrapped = get(c, t["stateType"], "wrappedType", where);
    tensor = &get(c, wrapped, "tensorType", where);
  } else {
    fail(c, where, "only tensor and state values are supported (lists, tuples and dictionaries are not)");
  }
  std::string dt = tensor->value("dataType", std::string("FLOAT32"));
  if (!parse_dtype(dt, &p.type.dtype, &p.bits, &p.is_string)) fail(c, where, "unsupported data type " + dt);
  int64_t rank = tensor->contains("rank") ? as_int(c, (*tensor)["rank"], where) : 0;
  if (tensor->contains("dimensions")) {
    for (const json& d : (*tensor)["dimensions"]) {
      if (!d.contains("constant")) fail(c, where, "dynamic dimensions are not supported (export with fixed shapes)");
      const json& cst = d["constant"];
      int64_t size = cst.contains("size") ? as_int(c, cst["size"], where) : 0;
      if (size < 0) fail(c, where, "negative dimension");
      p.type.shape.push_back(size);
    }
  }
  if (static_cast<int64_t>(p.type.shape.size()) != rank) fail(c, where, "rank does not match the dimension list");
  return p;
}

std::string decode_base64(const Ctx& c, const std::string& in, const std::string& where) {
  static const std::string kChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t buf = 0;
  int bits = 0;
  for (char ch : in) {
    if (ch == '=') break;
    size_t v = kChars.find(ch);
    if (v == std::string::npos) fail(c, where, "invalid base64 in bytes value");
    buf = (buf << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buf >> bits) & 0xff));
    }
  }
  return out;
}

template <typename T>
void fill_from(Tensor& t, const std::vector<double>& vals) {
  auto* p = t.data_as<T>();
  for (size_t i = 0; i < vals.size(); ++i) p[i] = static_cast<T>(vals[i]);
}

std::shared_ptr<ConstValue> parse_immediate(const Ctx& c, const ParsedType& pt, const json& imm, const std::string& where) {
  auto cv = std::make_shared<ConstValue>();
  const json& tv = get(c, imm, "tensor", where);
  int64_t n = shape_numel(pt.type.shape);
  if (pt.is_string) {
    cv->is_string = true;
    const json& vals = tv.contains("strings") ? tv["strings"].value("values", json::array()) : json::array();
    if (vals.size() != 1) fail(c, where, "only scalar string constants are supported");
    cv->str = vals[0].get<std::string>();
    return cv;
  }
  cv->tensor = Tensor(pt.type.dtype, pt.type.shape);
  if (tv.contains("bytes")) {
    std::string raw = decode_base64(c, tv["bytes"].value("values", std::string()), where);
    size_t expected = static_cast<size_t>(cv->tensor.nbytes());
    if (pt.bits > 0) fail(c, where, "sub-byte immediate values are not supported");
    if (raw.size() != expected) {
      fail(c, where, "bytes value holds " + std::to_string(raw.size()) + " bytes, shape needs " + std::to_string(expected));
    }
    std::memcpy(cv->tensor.data(), raw.data(), raw.size());
    return cv;
  }
  std::vector<double> vals;
  for (const char* key : {"floats", "ints", "bools", "longInts", "doubles"}) {
    if (!tv.contains(key)) continue;
    for (const json& v : tv[key].value("values", json::array())) {
      vals.push_back(v.is_boolean() ? (v.get<bool>() ? 1.0 : 0.0) : as_double(c, v, where));
    }
  }
  if (static_cast<int64_t>(vals.size()) != n) {
    fail(c, where, "immediate value has " + std::to_string(vals.size()) + " elements, shape " +
                       shape_to_string(pt.type.shape) + " needs " + std::to_string(n));
  }
  switch (pt.type.dtype) {
    case DType::kFloat16: {
      auto* p = cv->tensor.data_as<uint16_t>();
      for (size_t i = 0; i < vals.size(); ++i) p[i] = float_to_half(static_cast<float>(vals[i]));
      break;
    }
    case DType::kFloat32: fill_from<float>(cv->tensor, vals); break;
    case DType::kFloat64: fill_from<double>(cv->tensor, vals); break;
    case DType::kInt8: fill_from<int8_t>(cv->tensor, vals); break;
    case DType::kUInt8: case DType::kBool: fill_from<uint8_t>(cv->tensor, vals); break;
    case DType::kInt16: fill_from<int16_t>(cv->tensor, vals); break;
    case DType::kUInt16: fill_from<uint16_t>(cv->tensor, vals); break;
    case DType::kInt32: fill_from<int32_t>(cv->tensor, vals); break;
    case DType::kInt64: fill_from<int64_t>(cv->tensor, vals); break;
  }
  return cv;
}

std::shared_ptr<ConstValue> parse_value(const Ctx& c, const json& v, const std::string& where) {
  ParsedType pt = parse_type(c, get(c, v, "type", where), where);
  if (v.contains("immediateValue")) return parse_immediate(c, pt, v["immediateValue"], where);
  if (v.contains("blobFileValue")) {
    const json& b = v["blobFileValue"];
    std::string file = b.value("fileName", std::string());
    if (file != "@model_path/weights/weight.bin") fail(c, where, "blob file '" + file + "' is not weights/weight.bin");
    if (c.weights == nullptr) fail(c, where, "the program references weight.bin, which the package lacks");
    auto cv = std::make_shared<ConstValue>();
    cv->tensor = c.weights->blob(static_cast<uint64_t>(as_int(c, get(c, b, "offset", where), where)), pt.type, pt.bits, where);
    return cv;
  }
  fail(c, where, "value has neither an immediate nor a blob");
}

OpDecl parse_op(const Ctx& c, const json& j, const std::string& where) {
  OpDecl op;
  op.type = get(c, j, "type", where).get<std::string>();
  for (const json& o : j.value("outputs", json::array())) {
    ParsedType pt = parse_type(c, get(c, o, "type", where), where);
    op.outputs.push_back({get(c, o, "name", where).get<std::string>(), pt.type, pt.is_string, pt.is_state});
  }
  op.name = op.outputs.empty() ? op.type : op.outputs[0].name;
  std::string w = where + " op '" + op.name + "' (" + op.type + ")";
  if (j.contains("inputs")) {
    for (auto it = j["inputs"].begin(); it != j["inputs"].end(); ++it) {
      std::vector<Binding> bindings;
      for (const json& a : it.value().value("arguments", json::array())) {
        Binding b;
        if (a.contains("name")) b.name = a["name"].get<std::string>();
        else if (a.contains("value")) b.value = parse_value(c, a["value"], w + " input '" + it.key() + "'");
        else fail(c, w, "argument of '" + it.key() + "' has neither a name nor a value");
        bindings.push_back(std::move(b));
      }
      op.inputs[it.key()] = std::move(bindings);
    }
  }
  op.has_blocks = j.contains("blocks") && !j["blocks"].empty();
  if (op.type == "const") {
    const json& attrs = get(c, j, "attributes", w);
    op.const_val = parse_value(c, get(c, attrs, "val", w), w);
  }
  return op;
}

FunctionDecl parse_function(const Ctx& c, const std::string& name, const json& f) {
  std::string where = "function '" + name + "'";
  FunctionDecl fn;
  fn.name = name;
  for (const json& in : f.value("inputs", json::array())) {
    ParsedType pt = parse_type(c, get(c, in, "type", where), where + " input");
    fn.inputs.push_back({get(c, in, "name", where).get<std::string>(), pt.type, pt.is_string, pt.is_state});
  }
  std::string opset = f.value("opset", std::string());
  const json& blocks = get(c, f, "blockSpecializations", where);
  if (!blocks.contains(opset)) fail(c, where, "no block for its opset '" + opset + "'");
  const json& block = blocks[opset];
  for (const json& op : block.value("operations", json::array())) fn.ops.push_back(parse_op(c, op, where));
  for (const json& o : block.value("outputs", json::array())) fn.outputs.push_back(o.get<std::string>());
  return fn;
}

}  // namespace

Program load_program(const std::string& path, WeightStore* weights) {
  Ctx c{path, weights};
  std::ifstream in(path, std::ios::binary);
  if (!in) throw BundleError("cannot read " + path + " (a bundle needs program.json; re-import or re-export it)");
  json doc;
  try {
    doc = json::parse(in);
  } catch (const json::exception& e) {
    throw BundleError(path + ": not valid JSON (" + e.what() + ")");
  }
  Program prog;
  try {
    const json& fns = get(c, doc, "functions", "<root>");
    if (!fns.is_object()) fail(c, "functions", "expected an object");
    for (auto it = fns.begin(); it != fns.end(); ++it) prog.functions[it.key()] = parse_function(c, it.key(), it.value());
  } catch (const json::exception& e) {
    throw BundleError(path + ": unexpected structure (" + e.what() + ")");
  }
  return prog;
}

}  // namespace staticllm::mil
