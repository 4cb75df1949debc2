// pybind11 module staticllm._core: Runtime and Method over numpy arrays.
// C++ exceptions become the classes of staticllm.errors. The GIL is released
// while a method runs; inputs are borrowed from their numpy arrays (no copy
// when already contiguous) and outputs are handed to numpy without copies.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "mil/cpu_features.h"
#include "mil/op.h"
#include "sha256.h"
#include "staticllm/errors.h"
#include "staticllm/function_selection.h"
#include "staticllm/runtime.h"
#include "staticllm/serde_json.h"
#include "staticllm/weights_digest.h"

namespace py = pybind11;
using namespace staticllm;

void bind_bench(py::module_& m);  // bindings_bench.cpp

namespace {

py::object error_class(const char* name) { return py::module_::import("staticllm.errors").attr(name); }

void translate(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const MetadataError& e) {
    PyErr_SetString(error_class("MetadataError").ptr(), e.what());
  } catch (const InputError& e) {
    PyErr_SetString(error_class("InputError").ptr(), e.what());
  } catch (const UnsupportedOpError& e) {
    PyErr_SetString(error_class("UnsupportedOpError").ptr(), e.what());
  } catch (const BundleError& e) {
    PyErr_SetString(error_class("BundleError").ptr(), e.what());
  } catch (const StaticLLMError& e) {
    PyErr_SetString(error_class("StaticLLMError").ptr(), e.what());
  }
}

py::dtype numpy_dtype(DType t) { return py::dtype(dtype_info(t).numpy_name); }

bool dtype_of(const py::dtype& d, DType* out) {
  for (const DTypeInfo& info : dtype_table()) {
    py::dtype candidate(info.numpy_name);
    if (d.is(candidate) || d.equal(candidate)) {
      *out = info.dtype;
      return true;
    }
  }
  return false;
}

// Borrows the array's memory (no copy when it is already C-contiguous, as
// numpy arrays and CPU torch tensors usually are); the Tensor keeps the array
// alive and drops it under the GIL. np.asarray, not np.ascontiguousarray,
// because the latter turns 0-d arrays into 1-d ones.
Tensor to_tensor(const py::handle& obj, const std::string& what) {
  py::module_ np = py::module_::import("numpy");
  py::object arr;
  try {
    arr = np.attr("asarray")(obj);
    // Kernels read elements in place: they need C order and natural alignment
    // (a view at an odd byte offset of a buffer is not aligned).
    py::object flags = arr.attr("flags");
    if (!flags.attr("c_contiguous").cast<bool>() || !flags.attr("aligned").cast<bool>()) {
      arr = np.attr("array")(arr, py::arg("order") = "C", py::arg("copy") = true);
    }
  } catch (py::error_already_set& e) {
    // e.g. a torch tensor that requires grad, or a bfloat16 one
    throw InputError(what + ": cannot be read as a numpy array (" + std::string(e.what()) + ")");
  }
  auto a = py::reinterpret_borrow<py::array>(arr);
  DType t;
  if (!dtype_of(a.dtype(), &t)) {
    throw InputError(what + ": unsupported array dtype " + std::string(py::str(a.dtype())) +
                     " (expected a native-endian numeric or bool array)");
  }
  Shape shape(a.shape(), a.shape() + a.ndim());
  auto* keep = new py::object(arr);
  std::shared_ptr<void> owner(keep, [](void* p) {
    py::gil_scoped_acquire gil;
    delete static_cast<py::object*>(p);
  });
  return Tensor::shared(t, shape, const_cast<void*>(a.data()), owner);
}

py::array to_numpy(const Tensor& t) {
  auto* keep = new Tensor(t);
  py::capsule owner(keep, [](void* p) { delete static_cast<Tensor*>(p); });
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  return py::array(numpy_dtype(t.dtype()), shape, keep->data(), owner);
}

std::string names_of(const std::vector<TensorSpec>& specs) {
  std::string s;
  for (const auto& x : specs) s += (s.empty() ? "" : ", ") + x.name;
  return s;
}

bool is_state_name(const MethodMetadata& spec, const std::string& name) {
  for (const auto& s : spec.states) {
    if (s.name == name) return true;
  }
  return false;
}

// Orders a dict (by name) or a list/tuple (by position) as the method
// expects. Without a State: inputs, then states (states may be omitted:
// zero-filled). With one: the inputs only. Names and counts are checked
// here, dtypes and shapes once by Method::execute.
std::vector<Tensor> gather_inputs(const Method& m, const py::object& given, bool with_state) {
  const MethodMetadata& spec = m.spec();
  std::vector<Tensor> out;
  std::string prefix = "method '" + spec.name + "'";
  if (py::isinstance<py::dict>(given)) {
    py::dict d = given;
    for (auto item : d) {
      std::string key = py::str(item.first);
      if (spec.find_input(key)) continue;
      if (!is_state_name(spec, key)) {
        throw InputError(
            prefix + ": unknown input '" + key + "'; it takes: " + names_of(spec.inputs) +
            (spec.states.empty() || with_state ? "" : " (and optionally the states: " + names_of(spec.states) + ")"));
      }
      if (with_state) {
        throw InputError(prefix + ": '" + key +
                         "' is a state, which the given State holds; set it with State.write, not as an input");
      }
    }
    for (const auto& s : spec.inputs) {
      if (!d.contains(s.name)) throw InputError(prefix + ": missing input '" + s.name + "' (" + s.allowed() + ")");
      out.push_back(to_tensor(d[py::str(s.name)], prefix + ": input '" + s.name + "'"));
    }
    if (with_state) return out;
    for (const auto& s : spec.states) {
      if (d.contains(s.name))
        out.push_back(to_tensor(d[py::str(s.name)], prefix + ": state '" + s.name + "'"));
      else
        out.emplace_back(s.dtype, s.shape);
    }
    return out;
  }
  if (!py::isinstance<py::list>(given) && !py::isinstance<py::tuple>(given)) {
    throw InputError(prefix + ": inputs must be a dict by name or a list by position");
  }
  py::sequence seq = given;
  size_t n = py::len(seq);
  bool fits = n == spec.inputs.size() || (!with_state && n == spec.inputs.size() + spec.states.size());
  if (!fits) {
    throw InputError(
        prefix + ": expected " + std::to_string(spec.inputs.size()) + " inputs (" + names_of(spec.inputs) + ")" +
        (spec.states.empty() || with_state ? ""
                                           : ", optionally followed by the states (" + names_of(spec.states) + ")") +
        ", got " + std::to_string(n));
  }
  for (size_t i = 0; i < n; ++i) {
    bool is_state = i >= spec.inputs.size();
    const std::string& name = is_state ? spec.states[i - spec.inputs.size()].name : spec.inputs[i].name;
    out.push_back(to_tensor(seq[i], prefix + (is_state ? ": state '" : ": input '") + name + "'"));
  }
  if (with_state) return out;
  for (size_t i = n - spec.inputs.size(); i < spec.states.size(); ++i) {
    out.emplace_back(spec.states[i].dtype, spec.states[i].shape);
  }
  return out;
}

py::dict execute(const Method& m, const py::object& given, const std::shared_ptr<State>& state) {
  std::vector<Tensor> inputs = gather_inputs(m, given, state != nullptr);
  std::vector<Tensor> outputs;
  {
    py::gil_scoped_release release;
    outputs = state ? m.execute(inputs, *state) : m.execute(inputs);
  }
  const MethodMetadata& spec = m.spec();
  py::dict result;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const std::string& name =
        i < spec.outputs.size() ? spec.outputs[i].name : spec.states[i - spec.outputs.size()].name;
    result[py::str(name)] = to_numpy(outputs[i]);
  }
  return result;
}

// A shape as a tuple, None for a flexible dimension.
py::tuple shape_tuple(const Shape& shape) {
  py::tuple t(shape.size());
  for (size_t i = 0; i < shape.size(); ++i)
    t[i] = shape[i] == kFlexibleDim ? py::object(py::none()) : py::int_(shape[i]);
  return t;
}

// (name, dtype, shape, default_shape, shape_range, enumerated_shapes): shape
// is None when not even the rank is known; the last three are None for a
// spec without them.
py::list specs_list(const std::vector<TensorSpec>& specs) {
  py::list out;
  for (const auto& s : specs) {
    py::object ranges = py::none(), shapes = py::none();
    if (!s.shape_range.empty()) {
      py::list r;
      for (const DimRange& d : s.shape_range)
        r.append(py::make_tuple(d.lower, d.upper == kFlexibleDim ? py::object(py::none()) : py::int_(d.upper)));
      ranges = py::tuple(r);
    }
    if (!s.enumerated_shapes.empty()) {
      py::list e;
      for (const Shape& shape : s.enumerated_shapes) e.append(shape_tuple(shape));
      shapes = py::tuple(e);
    }
    py::object shape = s.any_rank ? py::object(py::none()) : py::object(shape_tuple(s.shape));
    py::object default_shape =
        s.default_shape.empty() ? py::object(py::none()) : py::object(shape_tuple(s.default_shape));
    out.append(py::make_tuple(s.name, numpy_dtype(s.dtype), shape, default_shape, ranges, shapes));
  }
  return out;
}

py::object json_to_python(const nlohmann::json& j) { return py::module_::import("json").attr("loads")(j.dump()); }

// A dict (or any JSON-serializable object) or JSON text, as JSON text.
std::string json_text_of(const py::object& doc) {
  if (py::isinstance<py::str>(doc)) return doc.cast<std::string>();
  try {
    return py::module_::import("json").attr("dumps")(doc).cast<std::string>();
  } catch (py::error_already_set& e) {
    throw MetadataError("metadata.json: the document is not JSON-serializable (" + std::string(e.what()) + ")");
  }
}

std::string normalized_metadata(const std::string& text) { return metadata_to_json(metadata_from_string(text)).dump(); }

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "staticllm native core: bundles, metadata serde, backends (Core ML / portable ML Program interpreter)";
  py::register_exception_translator(&translate);

  py::class_<CoreMLOptions>(m, "CoreMLOptions")
      .def(py::init<>())
      .def_readwrite("compute_units", &CoreMLOptions::compute_units)
      .def_readwrite("cache_dir", &CoreMLOptions::cache_dir);

  py::class_<State, std::shared_ptr<State>>(m, "State")
      .def_property_readonly("specs", [](const State& self) { return specs_list(self.specs()); })
      .def(
          "read", [](State& self, const std::string& name) { return to_numpy(self.read(name)); }, py::arg("name"),
          "A copy of the named state's current value.")
      .def(
          "write",
          [](State& self, const std::string& name, const py::object& value) {
            self.write(name, to_tensor(value, "state '" + name + "'"));
          },
          py::arg("name"), py::arg("value"), "Set the named state (same dtype and shape).");

  py::class_<Method, std::shared_ptr<Method>>(m, "Method")
      .def_property_readonly("name", &Method::name)
      .def_property_readonly("function_name", [](const Method& self) { return self.spec().function_name; })
      .def_property_readonly("input_specs", [](const Method& self) { return specs_list(self.spec().inputs); })
      .def_property_readonly("output_specs", [](const Method& self) { return specs_list(self.spec().outputs); })
      .def_property_readonly("state_specs", [](const Method& self) { return specs_list(self.spec().states); })
      .def("make_state", &Method::make_state, "Zero-filled states kept across calls (execute(..., state=)).")
      .def("execute", &execute, py::arg("inputs"), py::arg("state") = nullptr,
           "Run the method on a dict (by name) or list (by position) of arrays; returns a dict of arrays by name. "
           "With a State, the states are read and updated in it; without, they are inputs and outputs.");

  py::class_<Runtime, std::shared_ptr<Runtime>>(m, "Runtime")
      .def_static(
          "load",
          [](const std::string& path, const std::string& backend, const CoreMLOptions& options, bool mmap,
             bool verify) {
            return Runtime::load(path, backend, options, WeightOptions{mmap, verify});
          },
          py::arg("path"), py::arg("backend") = "auto", py::arg("options") = CoreMLOptions{}, py::arg("mmap") = true,
          py::arg("verify") = false)
      .def_property_readonly("method_names", &Runtime::method_names)
      .def_property_readonly("default_method", &Runtime::default_method)
      .def_property_readonly("backend", &Runtime::backend_name)
      .def_property_readonly("metadata",
                             [](const Runtime& self) { return json_to_python(metadata_to_json(self.metadata())); })
      .def("method", &Runtime::method, py::arg("name"));

  m.def(
      "save_metadata",
      [](const py::object& doc, const std::string& path) {
        save_metadata_file(metadata_from_string(json_text_of(doc)), path);
      },
      py::arg("metadata"), py::arg("path"),
      "Validate metadata (a dict or JSON text) and write it as metadata.json; the only writer of that file.");
  m.def(
      "load_metadata", [](const std::string& path) { return metadata_to_json(load_metadata_file(path)).dump(); },
      py::arg("path"), "Read and validate a metadata.json; returns normalized JSON text.");
  m.def(
      "verify_weights",
      [](const std::string& bundle) {
        BundlePaths paths = bundle_paths(bundle);
        check_weights_file(load_metadata_file(paths.metadata), paths.weights);
      },
      py::arg("bundle"), "Check weight.bin against metadata.json's weights_sha256 (BundleError if it differs).");

  // Hooks for the test suite, kept out of the module's public surface.
  py::module_ testing = m.def_submodule("_testing", "test-only hooks into the native core");
  testing.def("metadata_from_json_text", &normalized_metadata, py::arg("json_text"),
              "Validate metadata JSON text; returns it normalized (MetadataError naming the key otherwise).");
  testing.def(
      "coreml_function_name",
      [](const std::string& text, const std::string& method) -> py::object {
        ModelMetadata md = metadata_from_string(text);
        auto name = coreml_function_name(md, md.method(method));
        if (!name) return py::none();
        return py::str(*name);
      },
      py::arg("json_text"), py::arg("method"));
  testing.def(
      "dtype_table",
      [] {
        py::list rows;
        for (const DTypeInfo& d : dtype_table()) rows.append(py::make_tuple(d.name, d.numpy_name, d.array_code));
        return rows;
      },
      "(metadata name, numpy name, Core ML array code or 0) for every element type.");
  testing.def(
      "bundle_paths",
      [](const std::string& root) {
        const BundlePaths p = bundle_paths(root);
        return py::dict(py::arg("root") = p.root, py::arg("metadata") = p.metadata, py::arg("mlpackage") = p.mlpackage,
                        py::arg("program_json") = p.program_json, py::arg("weights") = p.weights);
      },
      py::arg("root"), "The loader's file names for a bundle at root (runtime/bundle.cpp).");
  testing.def(
      "sha256_hex",
      [](const py::bytes& data) {
        std::string s = data;
        return sha256_hex(s.data(), s.size());
      },
      py::arg("data"));
  m.def("release_free_heap", &release_free_heap,
        "Give the heap's free memory back to the system (glibc malloc_trim; a no-op elsewhere).");
  m.def("simd_level", [] { return std::string(mil::simd_level_name(mil::simd_level())); });
  m.def("supported_ops", [] { return mil::OpRegistry::instance().op_types(); });
  bind_bench(m);
}
