#include "mil/program.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "json_depth.h"
#include "mil/control_flow.h"
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

// obj[key], or an empty list when absent. (json::value would return a copy:
// of every function's whole op list, on every load.)
const json& empty_list() {
  static const json empty = json::array();
  return empty;
}
const json& member_or_empty(const json& obj, const char* key) {
  if (!obj.is_object()) return empty_list();
  auto it = obj.find(key);
  return it == obj.end() ? empty_list() : *it;
}

int64_t as_int(const Ctx& c, const json& v, const std::string& where) {
  // protobuf's JSON mapping writes 64-bit integers as strings
  try {
    // integers above INT64_MAX parse as unsigned, which get<int64_t> would wrap
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail(c, where, "integer " + v.dump() + " is out of the int64 range");
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_string()) {
      const std::string s = v.get<std::string>();
      size_t used = 0;
      int64_t n = std::stoll(s, &used);
      if (used == s.size()) return n;
    }
  } catch (const std::invalid_argument&) {
  } catch (const std::out_of_range&) {
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
    try {
      size_t used = 0;
      double d = std::stod(s, &used);
      if (used == s.size()) return d;
    } catch (const std::invalid_argument&) {
    } catch (const std::out_of_range&) {
    }
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

void parse_tensor_type(const Ctx& c, const json& tensor, const std::string& where, ParsedType& p) {
  std::string dt = tensor.value("dataType", std::string("FLOAT32"));
  if (!parse_dtype(dt, &p.type.dtype, &p.bits, &p.is_string)) fail(c, where, "unsupported data type " + dt);
  int64_t rank = tensor.contains("rank") ? as_int(c, tensor["rank"], where) : 0;
  if (tensor.contains("dimensions")) {
    for (const json& d : tensor["dimensions"]) {
      // A dimension known only at run time (a flexible input, or what
      // follows from one or from values): the planner fixes it per call.
      if (d.contains("unknown")) {
        const json& u = d["unknown"];
        const bool variadic = u.is_object() && u.value("variadic", false);
        if (variadic && tensor["dimensions"].size() != 1) fail(c, where, "a variadic dimension must be the only one");
        p.type.shape.push_back(variadic ? kAnyRank : kFlexibleDim);
        continue;
      }
      if (!d.contains("constant")) fail(c, where, "a dimension is neither constant nor unknown");
      const json& cst = d["constant"];
      int64_t size = cst.contains("size") ? as_int(c, cst["size"], where) : 0;
      if (size < 0) fail(c, where, "negative dimension");
      p.type.shape.push_back(size);
    }
  }
  const bool any_rank = p.type.shape == Shape{kAnyRank};
  if (!any_rank && static_cast<int64_t>(p.type.shape.size()) != rank) {
    fail(c, where, "rank does not match the dimension list");
  }
  // Bounding the element count keeps every later size computation free of
  // overflow; 2^40 elements is far beyond any model this runs.
  constexpr int64_t kMaxElements = int64_t{1} << 40;
  int64_t n = 1;
  for (int64_t d : p.type.shape) {
    if (d < 0) continue;  // kFlexibleDim, kAnyRank
    if (d != 0 && n > kMaxElements / d)
      fail(c, where, "shape " + shape_to_string(p.type.shape) + " has too many elements");
    n *= d;
  }
}

// The length of a list type: a constant, or open (kFlexibleDim).
int64_t parse_list_length(const Ctx& c, const json& length, const std::string& where) {
  if (length.contains("unknown")) return kFlexibleDim;
  if (!length.contains("constant")) fail(c, where, "a list length is neither constant nor unknown");
  const json& cst = length["constant"];
  const int64_t n = cst.contains("size") ? as_int(c, cst["size"], where) : 0;
  if (n < 0) fail(c, where, "negative list length");
  return n;
}

ParsedType parse_type(const Ctx& c, const json& t, const std::string& where) {
  ParsedType p;
  if (t.contains("tensorType")) {
    parse_tensor_type(c, t["tensorType"], where, p);
  } else if (t.contains("stateType")) {
    p.is_state = true;
    const json& wrapped = get(c, t["stateType"], "wrappedType", where);
    parse_tensor_type(c, get(c, wrapped, "tensorType", where), where, p);
  } else if (t.contains("listType")) {
    // held as [length, *element shape] (ValueType::is_list)
    const json& list = t["listType"];
    parse_tensor_type(c, get(c, get(c, list, "type", where), "tensorType", where), where, p);
    if (p.is_string || p.bits > 0 || p.type.shape == Shape{kAnyRank})
      fail(c, where, "a list's elements must be tensors of known rank and a whole-byte data type");
    p.type.shape.insert(p.type.shape.begin(), parse_list_length(c, get(c, list, "length", where), where));
    p.type.is_list = true;
  } else {
    fail(c, where, "only tensor, state and list values are supported (tuples and dictionaries are not)");
  }
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

// A finite double beyond `max` cannot be converted to the narrower float type
// (undefined behaviour); protobuf's float fields never hold one, so the file is bad.
double checked_float(const Ctx& c, double v, double max, const std::string& where) {
  if (std::isfinite(v) && std::fabs(v) > max) {
    fail(c, where, "float immediate value " + std::to_string(v) + " is out of the element type's range");
  }
  return v;
}

template <typename T>
void fill_from(const Ctx& c, Tensor& t, const std::vector<double>& vals, const std::string& where) {
  auto* p = t.data_as<T>();
  for (size_t i = 0; i < vals.size(); ++i) {
    if constexpr (std::is_floating_point_v<T>) {
      p[i] = static_cast<T>(checked_float(c, vals[i], std::numeric_limits<T>::max(), where));
    } else {
      // double -> integer is undefined out of range; go through int64 (which
      // wraps like the file's own two's-complement storage would)
      if (!std::isfinite(vals[i]) || std::fabs(vals[i]) >= 9.2e18) {
        fail(c, where, "integer immediate value " + std::to_string(vals[i]) + " out of range");
      }
      p[i] = static_cast<T>(static_cast<int64_t>(vals[i]));
    }
  }
}

// Raw little-endian element bytes (fp16, 8-bit and sub-byte immediates);
// sub-byte values are packed least significant bits first, like blobs.
std::shared_ptr<ConstValue> parse_bytes(const Ctx& c, const ParsedType& pt, const std::string& b64,
                                        const std::string& where) {
  auto cv = std::make_shared<ConstValue>();
  std::string raw = decode_base64(c, b64, where);
  int64_t n = shape_numel(pt.type.shape);
  int bits = pt.bits > 0 ? pt.bits : static_cast<int>(dtype_size(pt.type.dtype) * 8);
  size_t expected = static_cast<size_t>((static_cast<uint64_t>(n) * bits + 7) / 8);
  if (raw.size() != expected) {
    fail(c, where,
         "bytes value holds " + std::to_string(raw.size()) + " bytes, shape " + shape_to_string(pt.type.shape) +
             " needs " + std::to_string(expected));
  }
  const auto* src = reinterpret_cast<const uint8_t*>(raw.data());
  if (pt.bits > 0) {
    cv->tensor = unpack_sub_byte(src, n, pt.bits, pt.type.dtype == DType::kInt8, pt.type.shape);
  } else {
    cv->tensor = Tensor(pt.type.dtype, pt.type.shape);
    std::memcpy(cv->tensor.data(), src, raw.size());
  }
  return cv;
}

std::shared_ptr<ConstValue> parse_immediate(const Ctx& c, const ParsedType& pt, const json& imm,
                                            const std::string& where) {
  auto cv = std::make_shared<ConstValue>();
  const json& tv = get(c, imm, "tensor", where);
  int64_t n = shape_numel(pt.type.shape);
  if (pt.is_string) {
    cv->is_string = true;
    const json& vals = tv.contains("strings") ? member_or_empty(tv["strings"], "values") : empty_list();
    if (vals.size() != 1) fail(c, where, "only scalar string constants are supported");
    cv->str = vals[0].get<std::string>();
    return cv;
  }
  if (tv.contains("bytes")) return parse_bytes(c, pt, tv["bytes"].value("values", std::string()), where);
  if (pt.bits > 0) fail(c, where, "sub-byte immediate values must be stored as bytes");
  // The tensor is allocated only once the values are counted: the declared
  // shape alone may ask for terabytes.
  if (pt.type.dtype == DType::kInt64 && tv.contains("longInts")) {
    // exact: int64 values do not all survive a round trip through double
    const json& vals = member_or_empty(tv["longInts"], "values");
    if (static_cast<int64_t>(vals.size()) != n) {
      fail(c, where,
           "immediate value has " + std::to_string(vals.size()) + " elements, shape " + shape_to_string(pt.type.shape) +
               " needs " + std::to_string(n));
    }
    cv->tensor = Tensor(pt.type.dtype, pt.type.shape);
    for (size_t i = 0; i < vals.size(); ++i) cv->tensor.data_as<int64_t>()[i] = as_int(c, vals[i], where);
    return cv;
  }
  std::vector<double> vals;
  for (const char* key : {"floats", "ints", "bools", "longInts", "doubles"}) {
    if (!tv.contains(key)) continue;
    for (const json& v : member_or_empty(tv[key], "values")) {
      vals.push_back(v.is_boolean() ? (v.get<bool>() ? 1.0 : 0.0) : as_double(c, v, where));
    }
  }
  if (static_cast<int64_t>(vals.size()) != n) {
    fail(c, where,
         "immediate value has " + std::to_string(vals.size()) + " elements, shape " + shape_to_string(pt.type.shape) +
             " needs " + std::to_string(n));
  }
  cv->tensor = Tensor(pt.type.dtype, pt.type.shape);
  switch (pt.type.dtype) {
    case DType::kFloat16: {
      auto* p = cv->tensor.data_as<uint16_t>();
      for (size_t i = 0; i < vals.size(); ++i) {
        // through fp32, whose overflow the check rules out; fp16 overflow rounds to inf
        p[i] = float_to_half(static_cast<float>(checked_float(c, vals[i], std::numeric_limits<float>::max(), where)));
      }
      break;
    }
    case DType::kFloat32: fill_from<float>(c, cv->tensor, vals, where); break;
    case DType::kFloat64: fill_from<double>(c, cv->tensor, vals, where); break;
    case DType::kInt8: fill_from<int8_t>(c, cv->tensor, vals, where); break;
    case DType::kUInt8:
    case DType::kBool: fill_from<uint8_t>(c, cv->tensor, vals, where); break;
    case DType::kInt16: fill_from<int16_t>(c, cv->tensor, vals, where); break;
    case DType::kUInt16: fill_from<uint16_t>(c, cv->tensor, vals, where); break;
    case DType::kInt32: fill_from<int32_t>(c, cv->tensor, vals, where); break;
    case DType::kInt64: fill_from<int64_t>(c, cv->tensor, vals, where); break;
  }
  return cv;
}

std::shared_ptr<ConstValue> parse_value(const Ctx& c, const json& v, const std::string& where) {
  ParsedType pt = parse_type(c, get(c, v, "type", where), where);
  if (pt.type.is_list) fail(c, where, "list constants are not supported");
  for (int64_t d : pt.type.shape) {
    if (d < 0) fail(c, where, "a constant's shape must be fixed, got " + shape_to_string(pt.type.shape));
  }
  if (v.contains("immediateValue")) return parse_immediate(c, pt, v["immediateValue"], where);
  if (v.contains("blobFileValue")) {
    const json& b = v["blobFileValue"];
    std::string file = b.value("fileName", std::string());
    if (file != "@model_path/weights/weight.bin") fail(c, where, "blob file '" + file + "' is not weights/weight.bin");
    if (c.weights == nullptr) fail(c, where, "the program references weight.bin, which the package lacks");
    auto cv = std::make_shared<ConstValue>();
    auto offset = static_cast<uint64_t>(as_int(c, get(c, b, "offset", where), where));
    if (pt.bits > 0)
      cv->packed = std::make_shared<PackedInts>(c.weights->packed_blob(offset, pt.type, pt.bits, where));
    else
      cv->tensor = c.weights->blob(offset, pt.type, pt.bits, where);
    return cv;
  }
  fail(c, where, "value has neither an immediate nor a blob");
}

// Arguments, outputs and the const value of one op.
void parse_op_body(const Ctx& c, const json& j, const std::string& where, OpDecl& op) {
  op.outputs.clear();
  for (const json& o : member_or_empty(j, "outputs")) {
    ParsedType pt = parse_type(c, get(c, o, "type", where), where);
    op.outputs.push_back({get(c, o, "name", where).get<std::string>(), pt.type, pt.is_string, pt.is_state});
  }
  std::string w = where + " op '" + op.name + "' (" + op.type + ")";
  if (j.contains("inputs")) {
    for (auto it = j["inputs"].begin(); it != j["inputs"].end(); ++it) {
      std::vector<Binding> bindings;
      for (const json& a : member_or_empty(it.value(), "arguments")) {
        Binding b;
        if (a.contains("name"))
          b.name = a["name"].get<std::string>();
        else if (a.contains("value"))
          b.value = parse_value(c, a["value"], w + " input '" + it.key() + "'");
        else
          fail(c, w, "argument of '" + it.key() + "' has neither a name nor a value");
        bindings.push_back(std::move(b));
      }
      op.inputs[it.key()] = std::move(bindings);
    }
  }
  if (op.type == "const") {
    const json& attrs = get(c, j, "attributes", w);
    op.const_val = parse_value(c, get(c, attrs, "val", w), w);
  } else if (op.type.rfind("constexpr_", 0) == 0 && j.contains("attributes")) {
    // iOS16 decompression ops (constexpr_affine_dequantize, ...) hold their
    // constant arguments as attributes: bind them like inline inputs.
    for (auto it = j["attributes"].begin(); it != j["attributes"].end(); ++it) {
      if (it.key() == "name" || op.inputs.count(it.key())) continue;
      Binding b;
      b.value = parse_value(c, it.value(), w + " attribute '" + it.key() + "'");
      op.inputs[it.key()] = {std::move(b)};
    }
  }
}

OpDecl parse_op(const Ctx& c, const json& j, const std::string& where);

// A nested block; its ops recurse through parse_op, as deep as the JSON
// depth limit lets a file nest.
BlockDecl parse_block(const Ctx& c, const json& j, const std::string& where) {
  BlockDecl block;
  for (const json& in : member_or_empty(j, "inputs")) {
    ParsedType pt = parse_type(c, get(c, in, "type", where), where + " input");
    block.inputs.push_back({get(c, in, "name", where).get<std::string>(), pt.type, pt.is_string, pt.is_state});
  }
  for (const json& op : member_or_empty(j, "operations")) block.ops.push_back(parse_op(c, op, where));
  for (const json& o : member_or_empty(j, "outputs")) block.outputs.push_back(o.get<std::string>());
  return block;
}

void parse_blocks(const Ctx& c, const json& j, const std::string& where, OpDecl& op) {
  const json& blocks = member_or_empty(j, "blocks");
  for (size_t i = 0; i < blocks.size(); ++i) {
    std::string w = where + ", block " + std::to_string(i) + " of op '" + op.name + "' (" + op.type + ")";
    op.blocks.push_back(parse_block(c, blocks[i], w));
  }
}

OpDecl parse_op(const Ctx& c, const json& j, const std::string& where) {
  OpDecl op;
  op.type = get(c, j, "type", where).get<std::string>();
  const json& outs = member_or_empty(j, "outputs");
  op.name = !outs.empty() && outs[0].contains("name") ? outs[0]["name"].get<std::string>() : op.type;
  const bool has_blocks = !member_or_empty(j, "blocks").empty();
  bool supported =
      has_blocks ? is_control_flow_op(op.type) : op.type == "const" || OpRegistry::instance().find(op.type) != nullptr;
  try {
    parse_op_body(c, j, where, op);
    parse_blocks(c, j, where, op);
  } catch (const std::exception&) {  // BundleError or a JSON type error
    // An op the interpreter cannot run anyway may use types it cannot parse
    // (lists, dynamic shapes); the planner reports it as unsupported instead.
    if (supported) throw;
    op.unparsed = true;
  }
  return op;
}

FunctionDecl parse_function(const Ctx& c, const std::string& name, const json& f) {
  std::string where = "function '" + name + "'";
  FunctionDecl fn;
  fn.name = name;
  for (const json& in : member_or_empty(f, "inputs")) {
    ParsedType pt = parse_type(c, get(c, in, "type", where), where + " input");
    fn.inputs.push_back({get(c, in, "name", where).get<std::string>(), pt.type, pt.is_string, pt.is_state});
  }
  std::string opset = f.value("opset", std::string());
  if (opset.rfind("CoreML", 0) == 0 && opset.size() > 6 && opset.size() < 9 &&
      opset.find_first_not_of("0123456789", 6) == std::string::npos) {
    fn.ios_opset = std::stoi(opset.substr(6)) + 10;
  }
  const json& blocks = get(c, f, "blockSpecializations", where);
  if (!blocks.contains(opset)) fail(c, where, "no block for its opset '" + opset + "'");
  const json& block = blocks[opset];
  for (const json& op : member_or_empty(block, "operations")) fn.ops.push_back(parse_op(c, op, where));
  for (const json& o : member_or_empty(block, "outputs")) fn.outputs.push_back(o.get<std::string>());
  return fn;
}

}  // namespace

Program load_program(const std::string& path, WeightStore* weights) {
  Ctx c{path, weights};
  std::ifstream in(path, std::ios::binary);
  if (!in) throw BundleError("cannot read " + path + " (a bundle needs program.json; re-import or re-export it)");
  // Parsing from memory is several times faster than from the stream.
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw BundleError("failed reading " + path);
  const std::string text = buf.str();
  if (json_nesting_depth(text) > kMaxJsonDepth) {
    throw BundleError(path + ": nested more than " + std::to_string(kMaxJsonDepth) +
                      " levels deep (an ML Program nests about 15)");
  }
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    throw BundleError(path + ": not valid JSON (" + e.what() + ")");
  }
  Program prog;
  try {
    const json& fns = get(c, doc, "functions", "<root>");
    if (!fns.is_object()) fail(c, "functions", "expected an object");
    for (auto it = fns.begin(); it != fns.end(); ++it)
      prog.functions[it.key()] = parse_function(c, it.key(), it.value());
  } catch (const json::exception& e) {
    throw BundleError(path + ": unexpected structure (" + e.what() + ")");
  }
  return prog;
}

}  // namespace staticllm::mil
