// The compiled-model cache of the Core ML backend, with fake compile and load
// steps: keys, atomic publication, cleanup on every path, one recompile of a
// cached model that fails to load.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "staticllm/coreml_cache.h"
#include "staticllm/errors.h"

using namespace staticllm;
namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const fs::path& base, const std::string& name) {
  fs::path dir = base / ("staticllm_cache_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// What Core ML's compile step leaves: a directory with a file whose content says which compile made it.
std::string fake_compiled(const fs::path& where, const std::string& content) {
  static int counter = 0;
  fs::path dir = where / ("compiled_" + std::to_string(counter++) + ".mlmodelc");
  fs::create_directories(dir / "weights");
  std::ofstream(dir / "weights/weight.bin") << content;
  std::ofstream(dir / "model.mil") << "program";
  return dir.string();
}

std::string content_of(const fs::path& model) {
  std::ifstream in(model / "weights/weight.bin");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("the cache key follows the content and the Core ML version, not the location", "[coreml]") {
  fs::path root = fresh_dir(fs::temp_directory_path(), "key");
  for (const char* name : {"a.mlpackage", "b.mlpackage"}) {
    fs::create_directories(root / name / "Data/weights");
    std::ofstream(root / name / "Manifest.json") << "{}";
    std::ofstream(root / name / "Data/weights/weight.bin") << "0123456789";
  }
  std::string a = compiled_model_key((root / "a.mlpackage").string(), "Version 15.1 (Build 24B83)");
  REQUIRE(a.size() == 16);
  REQUIRE(a == compiled_model_key((root / "b.mlpackage").string(), "Version 15.1 (Build 24B83)"));
  // another OS build may compile differently: its own entry
  REQUIRE(a != compiled_model_key((root / "a.mlpackage").string(), "Version 15.2 (Build 24C101)"));
  std::ofstream(root / "b.mlpackage/Data/weights/weight.bin") << "0123456788";
  REQUIRE(a != compiled_model_key((root / "b.mlpackage").string(), "Version 15.1 (Build 24B83)"));
  REQUIRE_THROWS_AS(compiled_model_key((root / "missing").string(), ""), BundleError);
  REQUIRE(compiled_model_path("/c", a) == "/c/" + a + ".mlmodelc");
  fs::remove_all(root);
}

TEST_CASE("a compiled model is published whole, from any volume, leaving no temporary", "[coreml]") {
  fs::path cache = fresh_dir(fs::temp_directory_path(), "publish");
  fs::path target = cache / "nested/dir/k.mlmodelc";  // the cache directory is created
  // /dev/shm is another file system here, like Core ML's temporary directory can be
  fs::path other = fs::is_directory("/dev/shm") ? fresh_dir("/dev/shm", "src") : fresh_dir(cache, "src");
  std::string compiled = fake_compiled(other, "first");
  publish_compiled_model(compiled, target.string());
  REQUIRE(content_of(target) == "first");
  REQUIRE_FALSE(fs::exists(compiled));
  REQUIRE(entries(target.parent_path()) == std::vector<std::string>{"k.mlmodelc"});

  // another process published the key first: its copy stays, ours is cleaned up
  std::string second = fake_compiled(other, "second");
  publish_compiled_model(second, target.string());
  REQUIRE(content_of(target) == "first");
  REQUIRE_FALSE(fs::exists(second));
  REQUIRE(entries(target.parent_path()) == std::vector<std::string>{"k.mlmodelc"});

  // the cache directory cannot be created (a file is in the way)
  std::ofstream(cache / "blocker") << "x";
  std::string third = fake_compiled(other, "third");
  REQUIRE_THROWS_WITH(
      publish_compiled_model(third, (cache / "blocker/k.mlmodelc").string()),
      Catch::StartsWith("cannot create the compiled-model cache directory " + (cache / "blocker").string() + ": "));
  REQUIRE_FALSE(fs::exists(third));

  drop_compiled_model(target.string());
  REQUIRE(entries(target.parent_path()).empty());
  drop_compiled_model(target.string());  // already gone: nothing to do
  fs::remove_all(cache);
  fs::remove_all(other);
}

TEST_CASE("a cached model that fails to load is recompiled once", "[coreml]") {
  fs::path cache = fresh_dir(fs::temp_directory_path(), "load");
  fs::path work = fresh_dir(fs::temp_directory_path(), "load_src");
  const std::string target = (cache / "k.mlmodelc").string();
  int compiles = 0;
  std::vector<std::string> loaded;
  auto compile = [&] { return fake_compiled(work, "v" + std::to_string(++compiles)); };
  auto load_ok = [&](const std::string& path) {
    loaded.push_back(content_of(path));
    return std::string();
  };

  REQUIRE(ensure_compiled_model(target, compile));  // absent: compiled once, at load
  REQUIRE_FALSE(ensure_compiled_model(target, compile));
  REQUIRE(compiles == 1);
  drop_compiled_model(target);
  compiles = 0;
  load_compiled_model(target, compile, load_ok, "bundle");  // absent: compiled once
  REQUIRE(compiles == 1);
  load_compiled_model(target, compile, load_ok, "bundle");  // cached: reused
  REQUIRE(compiles == 1);
  REQUIRE(loaded == std::vector<std::string>{"v1", "v1"});

  // the cached copy fails (an older Core ML's, or damaged): dropped, compiled again, loaded
  auto load_fresh_only = [&](const std::string& path) {
    loaded.push_back(content_of(path));
    return content_of(path) == "v1" ? std::string("cannot open model.mil") : std::string();
  };
  load_compiled_model(target, compile, load_fresh_only, "bundle");
  REQUIRE(compiles == 2);
  REQUIRE(loaded.back() == "v2");

  // a model that does not load even when freshly compiled: one retry, then the error
  auto never = [](const std::string&) { return std::string("unsupported"); };
  REQUIRE_THROWS_WITH(load_compiled_model(target, compile, never, "bundle b"),
                      "bundle b: Core ML cannot load the model: unsupported (also after recompiling; the cached copy "
                      "failed with: unsupported)");
  REQUIRE(compiles == 3);
  drop_compiled_model(target);
  REQUIRE_THROWS_WITH(load_compiled_model(target, compile, never, "bundle b"),
                      "bundle b: Core ML cannot load the model: unsupported");
  REQUIRE(compiles == 4);

  // a failed compile leaves nothing behind
  drop_compiled_model(target);
  auto failing = []() -> std::string { throw BundleError("Core ML cannot compile the package"); };
  REQUIRE_THROWS_AS(load_compiled_model(target, failing, load_ok, "bundle"), BundleError);
  REQUIRE(entries(cache).empty());
  fs::remove_all(cache);
  fs::remove_all(work);
}

TEST_CASE("a copy that fails half-way publishes nothing and leaves no temporary", "[coreml]") {
  fs::path cache = fresh_dir(fs::temp_directory_path(), "halfway");
  fs::path other = fs::is_directory("/dev/shm") ? fresh_dir("/dev/shm", "halfway_src") : fs::path();
  struct stat a {
  }, b{};
  if (other.empty() || ::stat(cache.c_str(), &a) != 0 || ::stat(other.c_str(), &b) != 0 || a.st_dev == b.st_dev) {
    WARN("no second file system here: the copy path of publish_compiled_model is not exercised");
    fs::remove_all(cache);
    if (!other.empty()) fs::remove_all(other);
    return;
  }
  // Core ML's output on another volume, holding something fs::copy refuses
  // (a FIFO) beside ordinary files: the copy fails after copying some of it.
  std::string compiled = fake_compiled(other, "partial");
  REQUIRE(::mkfifo((fs::path(compiled) / "weights/zz_fifo").c_str(), 0600) == 0);
  fs::path target = cache / "k.mlmodelc";
  REQUIRE_THROWS_WITH(publish_compiled_model(compiled, target.string()),
                      Catch::StartsWith("cannot copy the compiled model into " + cache.string() + ": "));
  // Nothing at the key (a reader must never find a partial model there), no staging directory, no source.
  REQUIRE(entries(cache).empty());
  REQUIRE_FALSE(fs::exists(compiled));
  fs::remove_all(cache);
  fs::remove_all(other);
}

TEST_CASE("a temporary directory that cannot be made is reported and the compile is cleaned up", "[coreml]") {
  fs::path cache = fresh_dir(fs::temp_directory_path(), "mkdtemp");
  fs::path work = fresh_dir(fs::temp_directory_path(), "mkdtemp_src");
  std::string compiled = fake_compiled(work, "x");
  // A key so long that the staging name beside it exceeds the file system's name limit.
  fs::path target = cache / (std::string(240, 'k') + ".mlmodelc");
  REQUIRE_THROWS_WITH(publish_compiled_model(compiled, target.string()),
                      "cannot create a temporary directory in " + cache.string() + ": File name too long");
  REQUIRE_FALSE(fs::exists(compiled));
  REQUIRE(entries(cache).empty());
  fs::remove_all(cache);
  fs::remove_all(work);
}

TEST_CASE("a recompile that fails after dropping a bad cached model leaves the cache empty", "[coreml]") {
  fs::path cache = fresh_dir(fs::temp_directory_path(), "recompile_fails");
  fs::path work = fresh_dir(fs::temp_directory_path(), "recompile_fails_src");
  const std::string target = (cache / "k.mlmodelc").string();
  publish_compiled_model(fake_compiled(work, "stale"), target);  // left by an older Core ML
  int loads = 0;
  auto load_fails = [&](const std::string&) {
    ++loads;
    return std::string("cannot open model.mil");
  };
  auto failing = []() -> std::string { throw BundleError("Core ML cannot compile the package"); };
  REQUIRE_THROWS_WITH(load_compiled_model(target, failing, load_fails, "bundle"), "Core ML cannot compile the package");
  REQUIRE(loads == 1);
  // the stale copy is gone (the next load compiles afresh) and no .drop- or .tmp- directory remains
  REQUIRE(entries(cache).empty());
  REQUIRE(entries(work).empty());
  fs::remove_all(cache);
  fs::remove_all(work);
}
