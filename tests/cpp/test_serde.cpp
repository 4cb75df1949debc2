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
  REQUIRE(md.multifunction);
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
  REQUIRE(error_of(d) == "metadata.json: methods[0].outputs[0].shape[1]: expected a positive integer or null, got -4");
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

TEST_CASE("numbers beyond what the fields hold are MetadataErrors naming the key", "[serde]") {
  auto message = [](const std::string& text) {
    try {
      metadata_from_string(text);
    } catch (const MetadataError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string doc = valid_doc().dump();
  auto with = [&](const std::string& from, const std::string& to) {
    std::string d = doc;
    d.replace(d.find(from), from.size(), to);
    return d;
  };
  // out of double range: nlohmann throws out_of_range while parsing
  REQUIRE_THAT(message(with("\"vocab_size\":32", "\"vocab_size\":1e400")),
               Catch::StartsWith("metadata.json: llm.vocab_size: number out of range"));
  REQUIRE_THAT(message(with("\"shape\":[2,4]", "\"shape\":[2,-1e400]")),
               Catch::StartsWith("metadata.json: methods[1].states[0].shape[1]: number out of range"));
  REQUIRE_THAT(message("[1, 2, {\"a\": [3, 1E999]}]"),
               Catch::StartsWith("metadata.json: [2].a[1]: number out of range"));
  // integers that a narrowing conversion would have wrapped
  REQUIRE(message(with("\"format_version\":1", "\"format_version\":4294967297")) ==
          "metadata.json: format_version: expected 1, got 4294967297 (a newer staticllm wrote this bundle?)");
  REQUIRE(message(with("\"shape\":[2,4]", "\"shape\":[2,18446744073709551615]")) ==
          "metadata.json: methods[1].states[0].shape[1]: expected a positive integer, got 18446744073709551615");
  REQUIRE(message(with("\"shape\":[2,4]", "\"shape\":[1048576,1048576,2]")) ==
          "metadata.json: methods[1].states[0].shape: shape [1048576,1048576,2] has more than 2^40 elements");
}

TEST_CASE("weights_sha256 is optional, checked and kept", "[serde]") {
  json d = valid_doc();
  REQUIRE_FALSE(metadata_from_json(d).weights_sha256.has_value());
  REQUIRE_FALSE(metadata_to_json(metadata_from_json(d)).contains("weights_sha256"));
  std::string digest(64, 'a');
  digest[5] = '7';
  d["weights_sha256"] = digest;
  ModelMetadata md = metadata_from_json(d);
  REQUIRE(md.weights_sha256 == digest);
  REQUIRE(md.extra.empty());
  REQUIRE(metadata_to_json(md) == d);
  const std::string why =
      "metadata.json: weights_sha256: expected 64 lowercase hex digits (the SHA-256 of "
      "weights/weight.bin), got ";
  d["weights_sha256"] = std::string(64, 'A');
  REQUIRE(error_of(d) == why + "\"" + std::string(64, 'A') + "\"");
  d["weights_sha256"] = "abc";
  REQUIRE(error_of(d) == why + "\"abc\"");
  d["weights_sha256"] = 5;
  REQUIRE(error_of(d) == why + "5");
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
