// metadata.json serde: valid documents, round trips, and each invalid case
// with the key path in the message.
#include <catch2/catch.hpp>

#include "staticllm/errors.h"
#include "staticllm/serde_json.h"

using namespace staticllm;
using nlohmann::json;

namespace {

json valid_doc() {
  return json::parse(R"({
    "format_version": 1, "identifier": "tiny", "multifunction": true, "default_method": "decode",
    "methods": [
      {"name": "prefill", "function_name": "prefill",
       "inputs": [{"name": "tokens", "dtype": "int32", "shape": [1, 8]}],
       "outputs": [{"name": "logits", "dtype": "fp16", "shape": [1, 32]}]},
      {"name": "decode", "function_name": "decode",
       "inputs": [{"name": "tokens", "dtype": "int32", "shape": [1, 1]}],
       "outputs": [{"name": "logits", "dtype": "fp16", "shape": [1, 32]}],
       "states": [{"name": "kv", "dtype": "fp16", "shape": [2, 4]}]}
    ],
    "llm": {"vocab_size": 32}
  })");
}

std::string error_of(const json& doc) {
  try {
    metadata_from_json(doc);
  } catch (const MetadataError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("valid metadata parses into methods with specs", "[serde]") {
  ModelMetadata md = metadata_from_json(valid_doc());
  REQUIRE(md.is_multifunction());
  REQUIRE(md.method_names() == std::vector<std::string>{"prefill", "decode"});
  REQUIRE(md.default_method == "decode");
  const MethodMetadata& d = md.method("decode");
  REQUIRE(d.inputs[0].dtype == DType::kInt32);
  REQUIRE(d.inputs[0].shape == Shape{1, 1});
  REQUIRE(d.states.size() == 1);
  REQUIRE(md.llm["vocab_size"] == 32);
  REQUIRE(md.find_method("nope") == nullptr);
  REQUIRE_THROWS_AS(md.method("nope"), MetadataError);
}

TEST_CASE("round trip keeps unknown keys at every level", "[serde]") {
  json doc = valid_doc();
  doc["producer"] = "someone else";
  doc["methods"][0]["note"] = 7;
  doc["methods"][0]["inputs"][0]["range"] = json::array({0, 31});
  json again = metadata_to_json(metadata_from_json(doc));
  REQUIRE(again == doc);
  REQUIRE(metadata_to_json(metadata_from_string(metadata_to_string(metadata_from_json(doc)))) == doc);
}

TEST_CASE("missing keys name their path", "[serde]") {
  json d = valid_doc();
  d.erase("identifier");
  REQUIRE(error_of(d) == "metadata.json: identifier: missing key");
  d = valid_doc();
  d["methods"][1]["inputs"][0].erase("shape");
  REQUIRE(error_of(d) == "metadata.json: methods[1].inputs[0].shape: missing key");
  d = valid_doc();
  d["methods"][0].erase("function_name");
  REQUIRE(error_of(d) == "metadata.json: methods[0].function_name: missing key");
}

TEST_CASE("mistyped values name path and expectation", "[serde]") {
  json d = valid_doc();
  d["methods"][1]["inputs"][0]["dtype"] = "float";
  REQUIRE(error_of(d).find("methods[1].inputs[0].dtype: expected one of fp16") != std::string::npos);
  REQUIRE(error_of(d).find("got \"float\"") != std::string::npos);
  d = valid_doc();
  d["multifunction"] = "yes";
  REQUIRE(error_of(d) == "metadata.json: multifunction: expected true or false, got string");
  d = valid_doc();
  d["methods"][0]["outputs"][0]["shape"] = json::array({1, -4});
  REQUIRE(error_of(d) == "metadata.json: methods[0].outputs[0].shape[1]: expected a positive integer, got -4");
  d = valid_doc();
  d["format_version"] = 9;
  REQUIRE(error_of(d).find("format_version: expected 1, got 9") != std::string::npos);
}

TEST_CASE("duplicates and a default that is not a method are rejected", "[serde]") {
  json d = valid_doc();
  d["methods"][1]["name"] = "prefill";
  REQUIRE(error_of(d) == "metadata.json: methods[1].name: duplicate method name \"prefill\"");
  d = valid_doc();
  d["methods"][0]["inputs"].push_back(d["methods"][0]["inputs"][0]);
  REQUIRE(error_of(d) == "metadata.json: methods[0].inputs[1].name: duplicate name \"tokens\"");
  d = valid_doc();
  d["default_method"] = "generate";
  REQUIRE(error_of(d) == "metadata.json: default_method: \"generate\" is not a method (methods: prefill, decode)");
}

TEST_CASE("text that is not JSON is a MetadataError", "[serde]") {
  REQUIRE_THROWS_AS(metadata_from_string("{\"format_version\": 1,"), MetadataError);
  REQUIRE_THROWS_AS(metadata_from_string("[]"), MetadataError);
  REQUIRE_THROWS_AS(load_metadata_file("/nonexistent/metadata.json"), BundleError);
}

// Found by tests/fuzz: printing a value nested 65536 levels deep (for an error
// message) overflowed the stack; so would copying it into `llm` or `extra`.
TEST_CASE("metadata nested deeper than 256 levels is a MetadataError", "[serde]") {
  auto nested = [](int depth) {
    json doc = valid_doc();
    std::string text = doc.dump();
    text.insert(text.size() - 1, ",\"deep\":" + std::string(depth, '[') + std::string(depth, ']'));
    return text;
  };
  REQUIRE(metadata_from_string(nested(250)).extra.contains("deep"));
  REQUIRE_THROWS_MATCHES(
      metadata_from_string(nested(100000)), MetadataError,
      Catch::Message("metadata.json: nested more than 256 levels deep (metadata nests a few levels)"));
  // brackets inside strings are not nesting
  json doc = valid_doc();
  doc["identifier"] = std::string(1000, '[');
  REQUIRE(metadata_from_string(doc.dump()).identifier.size() == 1000);
}

TEST_CASE("a state cannot share an input's name", "[serde]") {
  json d = valid_doc();
  d["methods"][1]["states"][0]["name"] = "tokens";
  REQUIRE(error_of(d) == "metadata.json: methods[1].states[0].name: \"tokens\" is also an input's name");
}

TEST_CASE("a number out of double range is a MetadataError, not a JSON library error", "[serde]") {
  std::string text = valid_doc().dump();
  text.replace(text.find("\"vocab_size\":32"), 15, "\"vocab_size\":1e400");
  REQUIRE_THROWS_AS(metadata_from_string(text), MetadataError);
}
