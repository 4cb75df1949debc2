// Core ML backend (Apple only). Every decision it makes -- which function a
// method runs, which methods this OS's Core ML can run at all, the compiled
// model cache, compute units, element type codes, strided layouts -- comes
// from portable C++ covered by ctest (function_selection, coreml_support,
// coreml_cache); this file only applies them to the Core ML API.
//
// At the boundary: every call into Core ML or Foundation runs inside
// guarded(), which drains its autorelease pool before anything leaves and
// turns an Objective-C exception into a BundleError with its reason. Blocks
// that Core ML calls back never let anything unwind through it: they record
// a problem that the caller throws after they return.
#import <CoreML/CoreML.h>
#import <Foundation/Foundation.h>

#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "staticllm/backend.h"
#include "staticllm/coreml_cache.h"
#include "staticllm/coreml_support.h"
#include "staticllm/errors.h"
#include "staticllm/function_selection.h"

namespace staticllm {

namespace {

// NSString -> std::string; nil, and text UTF8String cannot represent, never crash.
std::string text(NSString* s) {
  if (s == nil) return "";
  const char* utf8 = s.UTF8String;
  return utf8 != nullptr ? std::string(utf8) : std::string("(text not representable as UTF-8)");
}

std::string describe(NSError* err) {
  if (err == nil) return "unknown error";
  std::string d = text(err.localizedDescription);
  return d.empty() ? text(err.domain) + " error " + std::to_string(static_cast<long>(err.code)) : d;
}

std::string describe_raised(id raised) {
  if ([raised isKindOfClass:[NSException class]]) {
    NSException* e = raised;
    std::string reason = text(e.reason);
    return text(e.name) + (reason.empty() ? "" : ": " + reason);
  }
  return text([raised description]);
}

// Runs `body` in its own autorelease pool; what it raises leaves only after
// the pool is drained: an Objective-C exception (Core ML and Foundation raise
// them for a bad shape, a nil key, an unknown state name) as a BundleError
// naming `where` and the reason, a C++ exception as itself.
template <typename Body>
void guarded(const std::string& where, Body&& body) {
  std::exception_ptr error;
  @autoreleasepool {
    try {
      bool raised = false;
      std::string reason;
      @try {
        body();
      } @catch (id e) {
        raised = true;
        reason = describe_raised(e);
      }
      if (raised) throw BundleError(where + ": Core ML raised " + reason);
    } catch (...) {
      error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

// Feature and state names were checked to be valid UTF-8 without NULs
// (check_coreml_method); initWithBytes keeps every byte, unlike c_str().
NSString* ns(const std::string& s) {
  NSString* out = [[NSString alloc] initWithBytes:s.data() length:s.size() encoding:NSUTF8StringEncoding];
  if (out == nil) throw BundleError("'" + s + "' is not valid UTF-8 text");
  return out;
}

NSURL* file_url(const std::string& path) {
  NSString* p = [[NSFileManager defaultManager] stringWithFileSystemRepresentation:path.data() length:path.size()];
  if (p == nil) throw BundleError(path + ": not a path this file system can represent");
  return [NSURL fileURLWithPath:p];
}

MLComputeUnits to_ml(ComputeUnits units) {
  switch (units) {
    case ComputeUnits::kCpuOnly: return MLComputeUnitsCPUOnly;
    case ComputeUnits::kCpuAndGpu: return MLComputeUnitsCPUAndGPU;
    case ComputeUnits::kCpuAndNeuralEngine: return MLComputeUnitsCPUAndNeuralEngine;
    case ComputeUnits::kAll: return MLComputeUnitsAll;
  }
  return MLComputeUnitsAll;
}

// What this OS's Core ML offers; check_coreml_method decides with it.
CoreMLFeatures os_features() {
  CoreMLFeatures f;
  if (@available(macOS 12.0, iOS 16.0, *)) f.fp16_arrays = true;
  if (@available(macOS 15.0, iOS 18.0, *)) f.states = f.functions = true;
  // MLMultiArrayDataTypeInt8 is declared by macOS 26 / iOS 26 SDKs only; the
  // code itself comes from the dtype table, so older SDKs build this file too.
  if (@available(macOS 26.0, iOS 26.0, *)) f.int8_arrays = true;
  return f;
}

NSArray<NSNumber*>* numbers(const std::vector<int64_t>& v) {
  NSMutableArray<NSNumber*>* out = [NSMutableArray arrayWithCapacity:v.size()];
  for (int64_t x : v) [out addObject:@(x)];
  return out;
}

std::vector<int64_t> int64s(NSArray<NSNumber*>* v) {
  std::vector<int64_t> out;
  for (NSNumber* n in v) out.push_back(n.longLongValue);
  return out;
}

// Wraps an input tensor without copying; the tensor outlives the prediction.
MLMultiArray* wrap(const Tensor& t, const std::string& what) {
  NSError* err = nil;
  auto type = static_cast<MLMultiArrayDataType>(array_code(t.dtype(), what));
  MLMultiArray* a = [[MLMultiArray alloc] initWithDataPointer:const_cast<void*>(t.data())
                                                        shape:numbers(t.shape())
                                                     dataType:type
                                                      strides:numbers(dense_strides(t.shape()))
                                                  deallocator:nil
                                                        error:&err];
  if (a == nil) throw InputError(what + ": cannot wrap as MLMultiArray: " + describe(err));
  return a;
}

// Empty if `a` holds `dtype` with `shape`, else what differs.
std::string mismatch(MLMultiArray* a, DType dtype, const Shape& shape) {
  std::optional<DType> got = dtype_from_array_code(static_cast<int64_t>(a.dataType));
  if (!got || *got != dtype) {
    return std::string("Core ML holds ") + (got ? dtype_name(*got) : "an unsupported element type") + ", expected " +
           dtype_name(dtype);
  }
  Shape got_shape = int64s(a.shape);
  if (got_shape != shape)
    return "Core ML holds shape " + shape_to_string(got_shape) + ", expected " + shape_to_string(shape);
  return "";
}

// Copies between a Core ML array and a dense buffer of `dtype`/`shape`
// (into the array when `into_array`). Returns the problem, or "".
std::string transfer(MLMultiArray* a, void* dense, DType dtype, const Shape& shape, bool into_array) {
  std::string problem = mismatch(a, dtype, shape);
  if (!problem.empty()) return problem;
  const Shape dims = shape;  // blocks capture copies, never references
  const std::vector<int64_t> dense_s = dense_strides(shape);
  const int64_t elem = static_cast<int64_t>(dtype_size(dtype));
  __block bool fits = false;
  if (into_array) {
    // The method may move the array to a new buffer with other strides: the
    // block's `strides`, not a.strides read before the call, govern both the
    // fit check and the copy.
    [a getMutableBytesWithHandler:^(void* bytes, NSInteger size, NSArray<NSNumber*>* strides) {
      try {
        const std::vector<int64_t> s = int64s(strides);
        fits = strided_fits(dims, s, static_cast<int64_t>(size) / elem);
        if (fits) strided_copy(dense, dense_s, bytes, s, dims, static_cast<size_t>(elem));
      } catch (...) {  // nothing unwinds through Core ML
        fits = false;
      }
    }];
  } else {
    // Read access keeps the buffer, whose layout a.strides describes.
    const std::vector<int64_t> strides = int64s(a.strides);
    [a getBytesWithHandler:^(const void* bytes, NSInteger size) {
      fits = strided_fits(dims, strides, static_cast<int64_t>(size) / elem);
      if (fits) strided_copy(bytes, strides, dense, dense_s, dims, static_cast<size_t>(elem));
    }];
  }
  return fits ? "" : "Core ML array strides reach past its buffer";
}

// Storage of one State: a single MLState, which every prediction using the
// State updates in place (nothing is copied per call). nil for a method
// without states.
class CoreMLStateStorage : public StateStorage {
 public:
  CoreMLStateStorage(id state, std::vector<TensorSpec> specs, std::string where)
      : state_(state), specs_(std::move(specs)), where_(std::move(where)) {}

  void read(size_t i, Tensor& out) override { copy(i, out.data(), false); }
  void write(size_t i, const Tensor& value) override { copy(i, const_cast<void*>(value.data()), true); }
  id state() const { return state_; }

 private:
  void copy(size_t i, void* dense, bool into_state) {
    const TensorSpec& s = specs_[i];
    const std::string where = where_ + ": state '" + s.name + "'";
    std::string problem;
    guarded(where, [&] {
      if (@available(macOS 15.0, iOS 18.0, *)) {
        const DType dtype = s.dtype;
        const Shape shape = s.shape;
        __block std::string found = "Core ML has no buffer for this state";
        [(MLState*)state_ getMultiArrayForStateNamed:ns(s.name)
                                             handler:^(MLMultiArray* buffer) {
                                               try {
                                                 found = transfer(buffer, dense, dtype, shape, into_state);
                                               } catch (...) {  // nothing unwinds through Core ML
                                                 found = "the copy failed";
                                               }
                                             }];
        problem = found;
      } else {
        problem = "states need macOS 15 / iOS 18 or later";
      }
    });
    if (!problem.empty()) throw BundleError(where + ": " + problem);
  }

  id state_;
  std::vector<TensorSpec> specs_;
  std::string where_;
};

class CoreMLExecutable : public MethodExecutable {
 public:
  CoreMLExecutable(MLModel* model, MethodMetadata spec)
      : model_(model), spec_(std::move(spec)), where_("method '" + spec_.name + "'") {}

  std::unique_ptr<StateStorage> make_state() override {
    id state = nil;
    if (!spec_.states.empty()) {
      guarded(where_, [&] {
        if (@available(macOS 15.0, iOS 18.0, *)) {
          state = [model_ newState];  // zero-filled buffers, as Core ML documents
        } else {
          throw BundleError(where_ + " has Core ML states, which need macOS 15 / iOS 18 or later");
        }
      });
    }
    return std::make_unique<CoreMLStateStorage>(state, spec_.states, where_);
  }

  std::vector<Tensor> execute(const std::vector<Tensor>& inputs, StateStorage* storage) override {
    id state = nil;
    if (!spec_.states.empty()) {
      auto* s = dynamic_cast<CoreMLStateStorage*>(storage);
      if (s == nullptr || s->state() == nil) throw BundleError(where_ + ": the State was not made by Core ML");
      state = s->state();
    }
    std::vector<Tensor> outputs;
    guarded(where_, [&] { outputs = run(inputs, state); });
    return outputs;
  }

 private:
  std::vector<Tensor> run(const std::vector<Tensor>& inputs, id state) {
    NSMutableDictionary<NSString*, MLFeatureValue*>* feats = [NSMutableDictionary dictionary];
    for (size_t i = 0; i < spec_.inputs.size(); ++i) {
      const std::string& name = spec_.inputs[i].name;
      feats[ns(name)] = [MLFeatureValue featureValueWithMultiArray:wrap(inputs[i], where_ + ": input '" + name + "'")];
    }
    NSError* err = nil;
    MLDictionaryFeatureProvider* provider = [[MLDictionaryFeatureProvider alloc] initWithDictionary:feats error:&err];
    if (provider == nil) throw InputError(where_ + ": " + describe(err));
    id<MLFeatureProvider> result = predict(provider, state);
    std::vector<Tensor> outputs;
    for (const TensorSpec& o : spec_.outputs) {
      MLMultiArray* a = [result featureValueForName:ns(o.name)].multiArrayValue;
      if (a == nil) throw BundleError(where_ + ": Core ML returned no array output '" + o.name + "'");
      // an output whose shape Core ML fixes only when it runs takes the array's
      const Shape shape = o.is_fixed() ? o.shape : int64s(a.shape);
      Tensor t(o.dtype, shape);
      std::string problem = transfer(a, t.data(), o.dtype, shape, false);
      if (!problem.empty()) throw BundleError(where_ + ": output '" + o.name + "': " + problem);
      outputs.push_back(std::move(t));
    }
    return outputs;
  }

  // One prediction at a time per method: the synchronous MLModel prediction
  // API is not documented as thread-safe, and Method promises correct results
  // from several threads.
  id<MLFeatureProvider> predict(id<MLFeatureProvider> provider, id state) {
    std::lock_guard<std::mutex> lock(mutex_);
    NSError* err = nil;
    id<MLFeatureProvider> result = nil;
    if (state == nil) {
      result = [model_ predictionFromFeatures:provider error:&err];
    } else if (@available(macOS 15.0, iOS 18.0, *)) {
      result = [model_ predictionFromFeatures:provider usingState:(MLState*)state error:&err];
    } else {
      throw BundleError(where_ + " has Core ML states, which need macOS 15 / iOS 18 or later");
    }
    if (result == nil) throw BundleError(where_ + ": Core ML prediction failed: " + describe(err));
    return result;
  }

  MLModel* model_;
  MethodMetadata spec_;
  std::string where_;
  std::mutex mutex_;
};

class CoreMLBackend : public Backend {
 public:
  CoreMLBackend(const BundlePaths& paths, const ModelMetadata& metadata, const CoreMLOptions& options)
      : paths_(paths), metadata_(metadata), units_(parse_compute_units(options.compute_units)) {
    // Refused at load, before Core ML ever sees a type or API this OS lacks.
    CoreMLFeatures features = os_features();
    for (const MethodMetadata& m : metadata_.methods) check_coreml_method(metadata_, m, features);
    std::string version;
    guarded(paths.root, [&] { version = text([NSProcessInfo processInfo].operatingSystemVersionString); });
    compiled_ = compiled_model_path(options.cache_dir, compiled_model_key(paths.mlpackage, version));
    // Compiled at load (once per package content and OS build), so a package
    // Core ML cannot compile fails Runtime.load.
    std::lock_guard<std::mutex> lock(cache_mutex());
    ensure_compiled_model(compiled_, [&] { return compile(); });
  }
  std::string name() const override { return "coreml"; }

  // A cached compile that fails to load is compiled again once.
  std::unique_ptr<MethodExecutable> load_method(const MethodMetadata& method) override {
    std::lock_guard<std::mutex> lock(cache_mutex());
    MLModel* model = nil;
    auto load = [&](const std::string& path) {
      std::string problem;
      guarded("method '" + method.name + "'", [&] {
        MLModelConfiguration* config = [[MLModelConfiguration alloc] init];
        config.computeUnits = to_ml(units_);
        // Stays nil for single-function packages: the decision is coreml_function_name's.
        if (auto fn = coreml_function_name(metadata_, method)) {
          if (@available(macOS 15.0, iOS 18.0, *)) config.functionName = ns(*fn);
        }
        NSError* err = nil;
        model = [MLModel modelWithContentsOfURL:file_url(path) configuration:config error:&err];
        if (model == nil) problem = describe(err);
      });
      return problem;
    };
    load_compiled_model(
        compiled_, [&] { return compile(); }, load, "method '" + method.name + "'");
    return std::make_unique<CoreMLExecutable>(model, method);
  }

 private:
  // One compile or cache swap at a time in this process.
  static std::mutex& cache_mutex() {
    static std::mutex mutex;
    return mutex;
  }

  // The directory Core ML compiled the package into (its temporary location).
  std::string compile() const {
    std::string out;
    guarded(paths_.mlpackage, [&] {
      NSError* err = nil;
      NSURL* url = [MLModel compileModelAtURL:file_url(paths_.mlpackage) error:&err];
      if (url == nil) throw BundleError(paths_.mlpackage + ": Core ML cannot compile the package: " + describe(err));
      out = url.fileSystemRepresentation;
    });
    return out;
  }

  BundlePaths paths_;
  ModelMetadata metadata_;
  ComputeUnits units_;
  std::string compiled_;  // the .mlmodelc path in the cache
};

}  // namespace

std::unique_ptr<Backend> make_coreml_backend(const BundlePaths& paths, const ModelMetadata& metadata,
                                             const CoreMLOptions& options) {
  return std::make_unique<CoreMLBackend>(paths, metadata, options);
}

}  // namespace staticllm
