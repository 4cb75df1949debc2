// Core ML backend (Apple only). Every decision it makes -- which function a
// method runs, where the compiled model is cached, the compute units -- comes
// from portable C++ covered by ctest (function_selection, coreml_support);
// this file only applies them to the Core ML API and converts tensors.
#import <CoreML/CoreML.h>
#import <Foundation/Foundation.h>

#include <cstring>
#include <mutex>

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

MLMultiArrayDataType to_ml(DType t, const std::string& name) {
  switch (t) {
    case DType::kFloat16: return MLMultiArrayDataTypeFloat16;
    case DType::kFloat32: return MLMultiArrayDataTypeFloat32;
    case DType::kFloat64: return MLMultiArrayDataTypeDouble;
    case DType::kInt32: return MLMultiArrayDataTypeInt32;
    default: throw InputError("'" + name + "': Core ML arrays hold fp16, fp32, fp64 or int32, not " + dtype_name(t));
  }
}

NSArray<NSNumber*>* numbers(const std::vector<int64_t>& v) {
  NSMutableArray<NSNumber*>* out = [NSMutableArray arrayWithCapacity:v.size()];
  for (int64_t x : v) [out addObject:@(x)];
  return out;
}

// Wraps a tensor without copying; the tensor outlives the prediction.
MLMultiArray* wrap(const Tensor& t, const std::string& name) {
  std::vector<int64_t> strides(t.shape().size(), 1);
  for (int64_t i = static_cast<int64_t>(strides.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * t.shape()[i + 1];
  NSError* err = nil;
  MLMultiArray* a = [[MLMultiArray alloc] initWithDataPointer:const_cast<void*>(t.data())
                                                        shape:numbers(t.shape())
                                                     dataType:to_ml(t.dtype(), name)
                                                      strides:numbers(strides)
                                                  deallocator:nil
                                                        error:&err];
  if (a == nil) throw InputError("'" + name + "': cannot wrap as MLMultiArray: " + describe(err));
  return a;
}

// Copies an MLMultiArray (possibly padded strides) into a dense tensor.
void copy_out(MLMultiArray* a, Tensor& t) {
  const size_t elem = dtype_size(t.dtype());
  const int64_t rank = t.rank();
  std::vector<int64_t> src_strides;
  for (NSNumber* s in a.strides) src_strides.push_back(s.longLongValue);
  [a getBytesWithHandler:^(const void* bytes, NSInteger) {
    const auto* src = static_cast<const uint8_t*>(bytes);
    auto* dst = static_cast<uint8_t*>(t.data());
    std::vector<int64_t> idx(rank, 0);
    for (int64_t i = 0; i < t.numel(); ++i) {
      int64_t off = 0;
      for (int64_t d = 0; d < rank; ++d) off += idx[d] * src_strides[d];
      std::memcpy(dst + i * elem, src + off * elem, elem);
      for (int64_t d = rank - 1; d >= 0; --d) {
        if (++idx[d] < t.shape()[d]) break;
        idx[d] = 0;
      }
    }
  }];
}

class CoreMLExecutable : public MethodExecutable {
 public:
  CoreMLExecutable(MLModel* model, MethodMetadata spec) : model_(model), spec_(std::move(spec)) {}

  std::vector<Tensor> execute(const std::vector<Tensor>& inputs) override {
    @autoreleasepool {
      NSMutableDictionary<NSString*, MLFeatureValue*>* feats = [NSMutableDictionary dictionary];
      for (size_t i = 0; i < spec_.inputs.size(); ++i) {
        const std::string& name = spec_.inputs[i].name;
        feats[@(name.c_str())] = [MLFeatureValue featureValueWithMultiArray:wrap(inputs[i], name)];
      }
      NSError* err = nil;
      MLDictionaryFeatureProvider* provider = [[MLDictionaryFeatureProvider alloc] initWithDictionary:feats error:&err];
      if (provider == nil) throw InputError("method '" + spec_.name + "': " + describe(err));
      std::vector<Tensor> outputs;
      id<MLFeatureProvider> result = nil;
      MLState* state = nil;
      if (!spec_.states.empty()) {
        state = [model_ newState];
        for (size_t i = 0; i < spec_.states.size(); ++i) {
          const Tensor& given = inputs[spec_.inputs.size() + i];
          [state getMultiArrayForStateNamed:@(spec_.states[i].name.c_str())
                                    handler:^(MLMultiArray* buffer) {
                                      std::memcpy(buffer.dataPointer, given.data(), given.nbytes());
                                    }];
        }
        result = [model_ predictionFromFeatures:provider usingState:state error:&err];
      } else {
        result = [model_ predictionFromFeatures:provider error:&err];
      }
      if (result == nil) throw BundleError("method '" + spec_.name + "': Core ML prediction failed: " + describe(err));
      for (const TensorSpec& o : spec_.outputs) {
        MLMultiArray* a = [result featureValueForName:@(o.name.c_str())].multiArrayValue;
        if (a == nil) throw BundleError("method '" + spec_.name + "': Core ML returned no output '" + o.name + "'");
        Tensor t(o.dtype, o.shape);
        copy_out(a, t);
        outputs.push_back(std::move(t));
      }
      for (const TensorSpec& s : spec_.states) {
        Tensor t(s.dtype, s.shape);
        [state getMultiArrayForStateNamed:@(s.name.c_str())
                                  handler:^(MLMultiArray* buffer) { std::memcpy(t.data(), buffer.dataPointer, t.nbytes()); }];
        outputs.push_back(std::move(t));
      }
      return outputs;
    }
  }

 private:
  MLModel* model_;  // MLModel predictions are thread-safe
  MethodMetadata spec_;
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
  [fm createDirectoryAtPath:[path stringByDeletingLastPathComponent] withIntermediateDirectories:YES attributes:nil error:nil];
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
    // nil for single-function packages: the decision is coreml_function_name's.
    if (auto fn = coreml_function_name(metadata_, method)) config.functionName = @(fn->c_str());
    NSError* err = nil;
    MLModel* model = [MLModel modelWithContentsOfURL:compiled_ configuration:config error:&err];
    if (model == nil) throw BundleError("method '" + method.name + "': Core ML cannot load the model: " + describe(err));
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
