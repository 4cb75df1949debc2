// The fuzz target: write the input's bundle into a per-process directory,
// load it through the public Runtime API and run every method on zero inputs.
// A StaticLLMError is the expected answer to a bad bundle; any other
// exception, a crash, a leak or a sanitizer report is a finding.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <typeinfo>

#include "fuzz_input.h"
#include "staticllm/errors.h"
#include "staticllm/runtime.h"

namespace fs = std::filesystem;
using namespace staticllm;
using namespace staticllm::fuzz;

namespace {

// A bundle directory of our own, rewritten file by file; a file is written
// only when its content changes, so most inputs write one file.
class ScratchBundle {
 public:
  ScratchBundle() {
    std::string tmpl = (fs::temp_directory_path() / "staticllm-fuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::perror("bundle fuzzer: mkdtemp");
      std::abort();
    }
    dir_ = tmpl;
    fs::create_directories(dir_ / fs::path(file_path(kWeights)).parent_path());
  }
  ~ScratchBundle() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void set(FileIndex file, const char* bytes, size_t size) {
    std::string& current = on_disk_[file];
    if (written_[file] && current.size() == size && current.compare(0, size, bytes, size) == 0) return;
    std::ofstream out(dir_ / file_path(file), std::ios::binary | std::ios::trunc);
    out.write(bytes, static_cast<std::streamsize>(size));
    if (!out) {
      std::fprintf(stderr, "bundle fuzzer: cannot write %s\n", (dir_ / file_path(file)).c_str());
      std::abort();
    }
    current.assign(bytes, size);
    written_[file] = true;
  }

  std::string path() const { return dir_.string(); }

 private:
  fs::path dir_;
  std::string on_disk_[kFileCount];
  bool written_[kFileCount] = {false, false, false};
};

ScratchBundle& scratch() {
  static ScratchBundle bundle;  // removed at exit (not after a crash: it is in TMPDIR)
  return bundle;
}

void run_bundle(const std::string& path) {
  std::shared_ptr<Runtime> rt = Runtime::load(path, "mil");
  for (const std::string& name : rt->method_names()) {
    std::shared_ptr<Method> method = rt->method(name);
    std::vector<Tensor> inputs;
    for (const TensorSpec& s : method->spec().inputs) inputs.emplace_back(s.dtype, s.shape);
    for (const TensorSpec& s : method->spec().states) inputs.emplace_back(s.dtype, s.shape);
    method->execute(inputs);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  base_bundles();  // fail at start, not on the first input, if they are missing
  scratch();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzInput in;
  if (!decode_input(data, size, &in)) return -1;  // too short: not worth keeping
  const BaseBundle& base = base_bundles()[in.bundle];
  for (int f = 0; f < kFileCount; ++f) {
    auto file = static_cast<FileIndex>(f);
    if (file == in.file) {
      scratch().set(file, reinterpret_cast<const char*>(in.bytes), in.size);
    } else {
      scratch().set(file, base.files[f].data(), base.files[f].size());
    }
  }
  try {
    run_bundle(scratch().path());
  } catch (const StaticLLMError& e) {
    // the expected outcome for a bad bundle; STATICLLM_FUZZ_VERBOSE=1 shows it
    static const bool verbose = std::getenv("STATICLLM_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "bundle fuzzer: %s: %s\n", typeid(e).name(), e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bundle fuzzer: FINDING: %s escaped (not a StaticLLMError) replacing %s of bundle '%s': %s\n",
                 typeid(e).name(), file_path(in.file), base.name.c_str(), e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "bundle fuzzer: FINDING: a non-std exception escaped replacing %s of bundle '%s'\n",
                 file_path(in.file), base.name.c_str());
    std::abort();
  }
  return 0;
}
