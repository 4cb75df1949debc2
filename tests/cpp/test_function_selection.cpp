// The Core ML function decision: only multifunction packages get a name.
#include <catch2/catch.hpp>

#include "staticllm/function_selection.h"
#include "staticllm/serde_json.h"

using namespace staticllm;

namespace {

ModelMetadata model(bool multi) {
  ModelMetadata md;
  md.identifier = "m";
  md.multifunction = multi;
  MethodMetadata a;
  a.name = multi ? "decode" : "forward";
  a.function_name = multi ? "decode" : "main";
  md.methods.push_back(a);
  if (multi) {
    MethodMetadata b = a;
    b.name = "prefill";
    b.function_name = "prefill_fn";
    md.methods.push_back(b);
  }
  md.default_method = a.name;
  return md;
}

}  // namespace

TEST_CASE("multifunction model: each method selects its own function", "[function_selection]") {
  ModelMetadata md = model(true);
  REQUIRE(coreml_function_name(md, md.method("decode")) == std::optional<std::string>("decode"));
  REQUIRE(coreml_function_name(md, md.method("prefill")) == std::optional<std::string>("prefill_fn"));
}

TEST_CASE("single-function model: no function name, whatever the method is called", "[function_selection]") {
  ModelMetadata md = model(false);
  REQUIRE_FALSE(coreml_function_name(md, md.method("forward")).has_value());
}

TEST_CASE("the decision follows metadata read from JSON", "[function_selection]") {
  ModelMetadata md = metadata_from_string(metadata_to_string(model(true)));
  REQUIRE(coreml_function_name(md, md.method("prefill")).value() == "prefill_fn");
}
