// staticllm._core.bench: the machine's limits and kernel timings, for the
// scripts in benchmarks/ (never used by the runtime itself).
#include <pybind11/pybind11.h>

#include <string>

#include "mil/kernels/machine_limits.h"
#include "mil/thread_pool.h"

namespace py = pybind11;
using namespace staticllm::mil;

void bind_bench(py::module_& m) {
  py::module_ bench = m.def_submodule("bench", "Machine limits and kernel timings for benchmarks/.");
  bench.def(
      "threads", [] { return default_thread_pool().size(); }, "Threads of the interpreter's pool.");
  bench.def(
      "read_bandwidth",
      [](size_t bytes, int passes) {
        py::gil_scoped_release release;
        return measure_read_bandwidth(default_thread_pool(), bytes, passes);
      },
      py::arg("bytes") = size_t{1} << 30, py::arg("passes") = 3,
      "Bytes/s summing a buffer of `bytes` on every pool thread (best of `passes`).");
  bench.def(
      "fma_peak",
      [](int passes) {
        py::gil_scoped_release release;
        return measure_fma_peak(default_thread_pool(), passes);
      },
      py::arg("passes") = 3, "fp32 FLOP/s of register-resident FMAs on every pool thread, at the kernels' SIMD level.");
  bench.def(
      "linear_kernel",
      [](const std::string& precision, int64_t M, int64_t N, int64_t K, int calls) {
        KernelTiming t;
        {
          py::gil_scoped_release release;
          t = time_linear_kernel(default_thread_pool(), precision.c_str(), M, N, K, calls);
        }
        py::dict d;
        d["seconds"] = t.seconds;
        d["weight_bytes"] = t.weight_bytes;
        d["flops"] = t.flops;
        return d;
      },
      py::arg("precision"), py::arg("M"), py::arg("N"), py::arg("K"), py::arg("calls") = 20,
      "Median seconds of linear's kernel on a random [N, K] weight (fp32, fp16, int8, int4, lut4) "
      "for M rows, with the weight bytes read and the FLOP done per call.");
}
