// Builders of program.json documents in protobuf's JSON mapping (the form
// coremltools' MessageToDict writes), for tests that plan or load programs.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "staticllm/model_metadata.h"

namespace staticllm::test {

using nlohmann::json;

inline std::string write_json(const json& doc) {
  static int counter = 0;
  std::string name = "staticllm_program_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".json";
  std::string path = (std::filesystem::temp_directory_path() / name).string();
  std::ofstream(path) << doc.dump();
  return path;
}

inline json tensor_type(const std::string& dtype, const std::vector<int64_t>& shape) {
  json t = {{"dataType", dtype}};
  if (!shape.empty()) {
    t["rank"] = std::to_string(shape.size());
    for (int64_t d : shape) t["dimensions"].push_back({{"constant", {{"size", std::to_string(d)}}}});
  }
  return {{"tensorType", t}};
}

// nlohmann's brace initialisation cannot tell [{...}] from {...}: spell arrays out.
inline json named(const std::string& name) { return {{"arguments", json::array({json{{"name", name}}})}}; }
inline json inline_value(const json& value) { return {{"arguments", json::array({json{{"value", value}}})}}; }
inline json output(const std::string& name, const json& type) {
  return json::array({json{{"name", name}, {"type", type}}});
}

inline json immediate(const std::string& dtype, const std::vector<int64_t>& shape, const json& tensor) {
  return {{"type", tensor_type(dtype, shape)}, {"immediateValue", {{"tensor", tensor}}}};
}

inline json const_op(const std::string& name, const json& value) {
  return {{"type", "const"}, {"outputs", output(name, value["type"])}, {"attributes", {{"val", value}}}};
}

inline json op(const std::string& type, const json& inputs, const std::string& out, const json& out_type) {
  return {{"type", type}, {"inputs", inputs}, {"outputs", output(out, out_type)}};
}

// One function of a program: its inputs, ops and output names.
inline json function(const json& inputs, const json& ops, const std::vector<std::string>& outputs) {
  json block = {{"operations", ops}, {"outputs", outputs}};
  return {{"inputs", inputs}, {"opset", "CoreML8"}, {"blockSpecializations", {{"CoreML8", block}}}};
}

// A program of one function, "main".
inline json program(const json& inputs, const json& ops, const std::vector<std::string>& outputs) {
  return {{"version", "1"}, {"functions", {{"main", function(inputs, ops, outputs)}}}};
}

inline json input(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape) {
  return {{"name", name}, {"type", tensor_type(dtype, shape)}};
}

// A function input that is a Core ML state (iOS18 stateType).
inline json state_input(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape) {
  return {{"name", name}, {"type", {{"stateType", {{"wrappedType", tensor_type(dtype, shape)}}}}}};
}

inline TensorSpec spec(const std::string& name, DType dtype, Shape shape) {
  TensorSpec s;
  s.name = name;
  s.dtype = dtype;
  s.shape = std::move(shape);
  return s;
}

}  // namespace staticllm::test
