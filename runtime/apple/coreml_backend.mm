// Core ML backend (Apple only). Every decision it makes -- which function a
// method runs, where the compiled model is cached, the compute units, element
// type codes, strided layouts -- comes from portable C++ covered by ctest
// (function_selection, coreml_support); this file only applies them to the
// Core ML API. Nothing here may throw inside a block Core ML calls back: the
// handlers record a problem and the caller throws after they return.
#import <CoreML/CoreML.h>
#import <Foundation/Foundation.h>

#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "staticllm/backend.h"
#include "staticllm/coreml_support.h"
#include "staticllm/errors.h"
#include "staticllm/function_selection.h"

namespace staticllm {

namespace {

std::string describe(NSError* err) {
  return err ? std::string(err.localizedDescription.UTF8String) : std::string("unknown error");
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
// (into the array when `into_array`). Returns the problem instead of throwing.
std::string transfer(MLMultiArray* a, void* dense, DType dtype, const Shape& shape, bool into_array) {
  std::string problem = mismatch(a, dtype, shape);
  if (!problem.empty()) return problem;
  const Shape dims = shape;  // blocks capture copies, never references
  const std::vector<int64_t> strides = int64s(a.strides);
  const std::vector<int64_t> dense_s = dense_strides(shape);
  const int64_t elem = static_cast<int64_t>(dtype_size(dtype));
  __block bool fits = false;
  if (into_array) {
    [a getMutableBytesWithHandler:^(void* bytes, NSInteger size, NSArray<NSNumber*>* same_strides) {
      (void)same_strides;  // equal to a.strides, read above
      fits = strided_fits(dims, strides, static_cast<int64_t>(size) / elem);
      if (fits) strided_copy(dense, dense_s, bytes, strides, dims, static_cast<size_t>(elem));
    }];
  } else {
    [a getBytesWithHandler:^(const void* bytes, NSInteger size) {
      fits = strided_fits(dims, strides, static_cast<int64_t>(size) / elem);
      if (fits) strided_copy(bytes, strides, dense, dense_s, dims, static_cast<size_t>(elem));
    }];
  }
  return fits ? "" : "Core ML array strides reach past its buffer";
}

// Copies each state tensor into (or out of) the MLState's buffers.
API_AVAILABLE(macos(15.0), ios(18.0))
void transfer_states(MLState* state, const MethodMetadata& spec, std::vector<Tensor>& tensors, bool into_state) {
  for (size_t i = 0; i < spec.states.size(); ++i) {
    const TensorSpec& s = spec.states[i];
    void* data = tensors[i].data();
    const DType dtype = s.dtype;
    const Shape shape = s.shape;
    __block std::string problem = "Core ML has no state buffer";
    [state getMultiArrayForStateNamed:@(s.name.c_str())
                              handler:^(MLMultiArray* buffer) {
                                problem = transfer(buffer, data, dtype, shape, into_state);
                              }];
    if (!problem.empty()) throw BundleError("method '" + spec.name + "': state '" + s.name + "': " + problem);
  }
}

class CoreMLExecutable : public MethodExecutable {
 public:
  CoreMLExecutable(MLModel* model, MethodMetadata spec) : model_(model), spec_(std::move(spec)) {}

  std::vector<Tensor> execute(const std::vector<Tensor>& inputs) override {
    @autoreleasepool {
      NSMutableDictionary<NSString*, MLFeatureValue*>* feats = [NSMutableDictionary dictionary];
      for (size_t i = 0; i < spec_.inputs.size(); ++i) {
        const std::string& name = spec_.inputs[i].name;
        feats[@(name.c_str())] = [MLFeatureValue
            featureValueWithMultiArray:wrap(inputs[i], "method '" + spec_.name + "': input '" + name + "'")];
      }
      NSError* err = nil;
      MLDictionaryFeatureProvider* provider = [[MLDictionaryFeatureProvider alloc] initWithDictionary:feats error:&err];
      if (provider == nil) throw InputError("method '" + spec_.name + "': " + describe(err));
      std::vector<Tensor> states;
      for (const TensorSpec& s : spec_.states) states.emplace_back(s.dtype, s.shape);
      id<MLFeatureProvider> result = predict(provider, inputs, states);
      std::vector<Tensor> outputs;
      for (const TensorSpec& o : spec_.outputs) {
        MLMultiArray* a = [result featureValueForName:@(o.name.c_str())].multiArrayValue;
        if (a == nil)
          throw BundleError("method '" + spec_.name + "': Core ML returned no array output '" + o.name + "'");
        Tensor t(o.dtype, o.shape);
        std::string problem = transfer(a, t.data(), o.dtype, o.shape, false);
        if (!problem.empty()) throw BundleError("method '" + spec_.name + "': output '" + o.name + "': " + problem);
        outputs.push_back(std::move(t));
      }
      for (Tensor& s : states) outputs.push_back(std::move(s));
      return outputs;
    }
  }

 private:
  // One prediction at a time per method: the synchronous MLModel prediction
  // API is not documented as thread-safe, and Method promises correct results
  // from several threads. Fills `states` with the updated state values.
  id<MLFeatureProvider> predict(id<MLFeatureProvider> provider, const std::vector<Tensor>& inputs,
                                std::vector<Tensor>& states) {
    std::lock_guard<std::mutex> lock(mutex_);
    NSError* err = nil;
    id<MLFeatureProvider> result = nil;
    if (spec_.states.empty()) {
      result = [model_ predictionFromFeatures:provider error:&err];
    } else if (@available(macOS 15.0, iOS 18.0, *)) {
      MLState* state = [model_ newState];  // fresh per call: the caller passes the state values in
      std::vector<Tensor> given(inputs.begin() + static_cast<std::ptrdiff_t>(spec_.inputs.size()), inputs.end());
      transfer_states(state, spec_, given, true);
      result = [model_ predictionFromFeatures:provider usingState:state error:&err];
      if (result != nil) transfer_states(state, spec_, states, false);
    } else {
      throw BundleError("method '" + spec_.name + "' has Core ML states, which need macOS 15 / iOS 18 or later");
    }
    if (result == nil) throw BundleError("method '" + spec_.name + "': Core ML prediction failed: " + describe(err));
    return result;
  }

  MLModel* model_;
  MethodMetadata spec_;
  std::mutex mutex_;
};

// Compiles the package once per content key; later loads reuse the .mlmodelc.
NSURL* compiled_model(const BundlePaths& paths, const CoreMLOptions& options) {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  std::string target = compiled_model_path(options.cache_dir, package_content_key(paths.mlpackage));
  NSString* path = @(target.c_str());
  NSFileManager* fm = [NSFileManager defaultManager];
  if ([fm fileExistsAtPath:path]) return [NSURL fileURLWithPath:path];
  NSError* err = nil;
  NSURL* tmp = [MLModel compileModelAtURL:[NSURL fileURLWithPath:@(paths.mlpackage.c_str())] error:&err];
  if (tmp == nil) throw BundleError(paths.mlpackage + ": Core ML cannot compile the package: " + describe(err));
  [fm createDirectoryAtPath:[path stringByDeletingLastPathComponent]
      withIntermediateDirectories:YES
                       attributes:nil
                            error:nil];
  // Another process may have stored the same key meanwhile; its copy is as good.
  if (![fm moveItemAtURL:tmp toURL:[NSURL fileURLWithPath:path] error:&err] && ![fm fileExistsAtPath:path]) {
    throw BundleError("cannot store the compiled model at " + target + ": " + describe(err));
  }
  return [NSURL fileURLWithPath:path];
}

class CoreMLBackend : public Backend {
 public:
  CoreMLBackend(const BundlePaths& paths, const ModelMetadata& metadata, const CoreMLOptions& options)
      : metadata_(metadata), units_(parse_compute_units(options.compute_units)) {
    compiled_ = compiled_model(paths, options);
  }
  std::string name() const override { return "coreml"; }

  std::unique_ptr<MethodExecutable> load_method(const MethodMetadata& method) override {
    MLModelConfiguration* config = [[MLModelConfiguration alloc] init];
    config.computeUnits = to_ml(units_);
    // Stays nil for single-function packages: the decision is coreml_function_name's.
    if (auto fn = coreml_function_name(metadata_, method)) {
      if (@available(macOS 15.0, iOS 18.0, *)) {
        config.functionName = @(fn->c_str());
      } else {
        throw BundleError("method '" + method.name + "': multifunction packages need macOS 15 / iOS 18 or later");
      }
    }
    NSError* err = nil;
    MLModel* model = [MLModel modelWithContentsOfURL:compiled_ configuration:config error:&err];
    if (model == nil)
      throw BundleError("method '" + method.name + "': Core ML cannot load the model: " + describe(err));
    return std::make_unique<CoreMLExecutable>(model, method);
  }

 private:
  ModelMetadata metadata_;
  ComputeUnits units_;
  NSURL* compiled_;
};

}  // namespace

std::unique_ptr<Backend> make_coreml_backend(const BundlePaths& paths, const ModelMetadata& metadata,
                                             const CoreMLOptions& options) {
  return std::make_unique<CoreMLBackend>(paths, metadata, options);
}

}  // namespace staticllm
