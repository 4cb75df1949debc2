"""The Runtime / Method API over bundles imported from coremltools programs.

Numerical tests run on every backend the platform has (the `backend`
fixture): the interpreter everywhere, Core ML as well on macOS."""

from __future__ import annotations

import gc
import json
import sys
import threading

import numpy as np
import pytest
import torch

import staticllm
from mil_fixtures import accumulator_program, affine_program, bundle_from_program, two_function_bundle
from staticllm import _core


@pytest.fixture(scope="module")
def affine(tmp_path_factory, rng):
    tmp = tmp_path_factory.mktemp("affine")
    w = rng.standard_normal((5, 8)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    return (
        w,
        b,
        {
            "fp32": bundle_from_program(affine_program(w, b, np.float32), tmp, "fp32"),
            "fp16": bundle_from_program(affine_program(w, b, np.float16), tmp, "fp16", fp16=True),
        },
    )


def test_runtime_surface(affine):
    _, _, bundles = affine
    rt = staticllm.Runtime.load(bundles["fp32"], backend="mil")
    assert rt.method_names == ["main"]
    assert rt.default_method == "main"
    assert rt.backend == "mil"
    assert rt.metadata["multifunction"] is False
    assert rt.metadata["methods"][0]["function_name"] == "main"
    m = rt.method("main")
    assert m.name == "main"
    assert rt.method() is m  # the default method, cached
    assert [(s.name, s.dtype, s.shape) for s in m.input_specs] == [("x", np.dtype(np.float32), (2, 8))]
    assert [(s.name, s.dtype, s.shape) for s in m.output_specs] == [("y", np.dtype(np.float32), (2, 5))]
    assert m.state_specs == []
    assert "x: float32[2, 8]" in repr(m)


def test_auto_backend_is_the_platform_default(affine):
    rt = staticllm.Runtime.load(affine[2]["fp32"])
    assert rt.backend == ("coreml" if sys.platform == "darwin" else "mil")


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_linear_matches_numpy(affine, rng, dtype, backend):
    w, b, bundles = affine
    m = staticllm.Runtime.load(bundles[dtype], backend=backend).method("main")
    x = rng.standard_normal((2, 8)).astype(np.float16 if dtype == "fp16" else np.float32)
    want = x.astype(np.float64) @ w.T.astype(np.float64) + b
    by_name = m.execute({"x": x})["y"]
    by_position = m.execute([x])["y"]
    by_call = m(x=x)["y"]
    assert by_name.dtype == x.dtype
    assert by_name.shape == (2, 5)
    np.testing.assert_array_equal(by_name, by_position)
    np.testing.assert_array_equal(by_name, by_call)
    if dtype == "fp32":
        np.testing.assert_allclose(by_name, want, rtol=1e-5, atol=1e-6)
    else:
        # fp16 weights and activations: |want| reaches ~8 here, so scale the
        # unit-data tolerance by the output magnitude
        np.testing.assert_allclose(
            by_name.astype(np.float64), want, atol=2e-2 * max(1.0, np.abs(want).max() / 4)
        )


def test_torch_tensors_and_array_likes_are_accepted(affine):
    w, b, bundles = affine
    m = staticllm.Runtime.load(bundles["fp32"], backend="mil").method("main")
    x = torch.arange(16, dtype=torch.float32).reshape(2, 8) / 16
    want = x.numpy() @ w.T + b
    np.testing.assert_allclose(m.execute({"x": x})["y"], want, rtol=1e-5)
    t = x.t().contiguous().t()  # non-contiguous view is copied, not misread
    assert not t.is_contiguous()
    np.testing.assert_allclose(m.execute({"x": t})["y"], want, rtol=1e-5)
    np.testing.assert_allclose(m.execute({"x": t.numpy()})["y"], want, rtol=1e-5)
    np.testing.assert_allclose(m.execute([np.asfortranarray(x.numpy())])["y"], want, rtol=1e-5)

    class ArrayLike:
        def __array__(self, dtype=None, copy=None):
            return x.numpy()

    np.testing.assert_allclose(m.execute({"x": ArrayLike()})["y"], want, rtol=1e-5)


def test_inputs_that_cannot_become_arrays_are_input_errors(affine):
    m = staticllm.Runtime.load(affine[2]["fp32"], backend="mil").method("main")
    with pytest.raises(staticllm.InputError, match="input 'x': cannot be read as a numpy array"):
        m.execute({"x": torch.zeros((2, 8), requires_grad=True)})
    with pytest.raises(staticllm.InputError, match="input 'x': unsupported array dtype <U1"):
        m.execute({"x": np.full((2, 8), "a")})
    with pytest.raises(staticllm.InputError, match=r"input 'x' expects fp32 \[2, 8\], got fp16 \[2, 8\]"):
        m.execute({"x": torch.zeros((2, 8), dtype=torch.float16)})


def test_outputs_own_their_memory(affine, rng):
    w, b, bundles = affine
    rt = staticllm.Runtime.load(bundles["fp32"], backend="mil")
    m = rt.method("main")
    x = rng.standard_normal((2, 8)).astype(np.float32)
    first = m.execute({"x": x})["y"]
    second = m.execute({"x": 2 * x})["y"]  # a later call must not overwrite the first result
    del m, rt
    gc.collect()
    np.testing.assert_allclose(first, x @ w.T + b, rtol=1e-5)
    np.testing.assert_allclose(second, 2 * x @ w.T + b, rtol=1e-5)
    first[0, 0] = 123.0  # writable, and not shared with `second`
    assert second[0, 0] != 123.0


def test_concurrent_calls_on_one_method(affine, rng, backend):
    w, b, bundles = affine
    m = staticllm.Runtime.load(bundles["fp32"], backend=backend).method("main")
    xs = [rng.standard_normal((2, 8)).astype(np.float32) for _ in range(4)]
    results: dict[int, list[np.ndarray]] = {i: [] for i in range(len(xs))}
    start = threading.Barrier(len(xs))

    def work(i: int) -> None:
        start.wait()  # all four threads call execute at the same time
        for _ in range(25):
            results[i].append(m.execute({"x": xs[i]})["y"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, x in enumerate(xs):
        assert len(results[i]) == 25
        for got in results[i]:
            np.testing.assert_allclose(got, x @ w.T + b, rtol=1e-5)


def test_gil_is_released_while_a_method_runs(tmp_path, rng):
    """Another Python thread runs while one thread is inside a single execute.
    With the GIL held, it could not log a single timestamp during the call."""
    import time

    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    n, depth = 512, 24
    w = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(n, n))], opset_version=ct.target.iOS18)
    def prog(x):  # noqa: ANN001, ANN202
        wc = mb.const(val=w)
        for _ in range(depth):
            x = mb.matmul(x=x, y=wc)
        return mb.identity(x=x, name="y")

    m = staticllm.Runtime.load(bundle_from_program(prog, tmp_path, "chain"), backend="mil").method()
    x = rng.standard_normal((n, n)).astype(np.float32)
    stamps: list[float] = []
    done = threading.Event()

    def log() -> None:
        while not done.is_set():
            stamps.append(time.perf_counter())

    logger = threading.Thread(target=log)
    logger.start()
    start = time.perf_counter()
    got = m.execute({"x": x})["y"]
    end = time.perf_counter()
    done.set()
    logger.join()
    margin = 0.1 * (end - start) + 0.02  # the GIL may change hands around the call itself
    during = [t for t in stamps if start + margin < t < end - margin]
    assert end - start > 0.05, "the call is too short to tell"
    assert len(during) > 0
    want = x.astype(np.float64)
    for _ in range(depth):
        want = want @ w
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def test_two_functions_share_weights(tmp_path, rng, backend):
    w = rng.standard_normal((3, 4)).astype(np.float32)
    bundle = two_function_bundle(tmp_path, w)
    rt = staticllm.Runtime.load(bundle, backend=backend)
    assert sorted(rt.method_names) == ["double", "negate"]
    assert rt.default_method == "negate"
    assert rt.metadata["multifunction"] is True
    x = rng.standard_normal((1, 4)).astype(np.float32)
    np.testing.assert_allclose(rt.method("double").execute({"x": x})["out"], 2 * x @ w.T, rtol=1e-5)
    np.testing.assert_allclose(rt.method("negate").execute({"x": x})["out"], -x @ w.T, rtol=1e-5)
    if backend != "mil":
        return
    # one copy of the weight in weight.bin, mapped once: both functions use the same blob
    from staticllm.inspect import weight_sharing

    sharing = weight_sharing(bundle)
    assert sharing["double"]["shared"] == sharing["double"]["blobs"] >= 1
    assert _mapped_count(bundle / "model.mlpackage") == 1


def test_shared_weight_package_fixture_runs_both_methods(shared_weight_package, tmp_path, rng, backend):
    package, w = shared_weight_package
    rt = staticllm.Runtime.load(staticllm.import_mlpackage(package, tmp_path / "b"), backend=backend)
    assert rt.default_method == "decode"
    x = rng.standard_normal((1, 4)).astype(np.float32)
    prefill, decode = rt.method("prefill"), rt.method("decode")
    np.testing.assert_allclose(prefill(x=x)["out"], 2 * x @ w.T, rtol=1e-5)
    np.testing.assert_allclose(decode(x=x)["out"], -x @ w.T, rtol=1e-5)


def _mapped_count(pkg) -> int:
    """How many times this process maps the bundle's weight.bin."""
    target = str((pkg / "Data/com.apple.CoreML/weights/weight.bin").resolve())
    with open("/proc/self/maps") as f:
        lines = [ln for ln in f if ln.rstrip().endswith(target)]
    return len(lines)


def test_states_by_name_in_and_out(tmp_path, backend):
    bundle = bundle_from_program(accumulator_program(), tmp_path, "acc", fp16=True)
    m = staticllm.Runtime.load(bundle, backend=backend).method()
    assert [(s.name, s.dtype, s.shape) for s in m.state_specs] == [("acc", np.dtype(np.float16), (2, 3))]
    assert [s.name for s in m.input_specs] == ["x"]
    x = np.arange(6, dtype=np.float16).reshape(2, 3)
    first = m.execute({"x": x})  # state omitted: starts at zeros
    assert sorted(first) == ["acc", "doubled"]
    np.testing.assert_array_equal(first["acc"], x)
    np.testing.assert_array_equal(first["doubled"], 2 * x)
    second = m.execute({"x": x, "acc": first["acc"]})
    np.testing.assert_array_equal(second["acc"], 2 * x)
    by_position = m.execute([x, second["acc"]])  # inputs then states
    np.testing.assert_array_equal(by_position["doubled"], 6 * x)
    with pytest.raises(staticllm.InputError, match=r"state 'acc' expects fp16 \[2, 3\], got fp16 \[3, 2\]"):
        m.execute({"x": x, "acc": np.zeros((3, 2), np.float16)})
    with pytest.raises(
        staticllm.InputError, match=r"unknown input 'ac'; it takes: x \(and optionally the states: acc\)"
    ):
        m.execute({"x": x, "ac": x})
    with pytest.raises(
        staticllm.InputError,
        match=r"expected 1 inputs \(x\), optionally followed by the states \(acc\), got 3",
    ):
        m.execute([x, x, x])


def test_coreml_backend_off_apple_says_what_to_do(affine):
    if sys.platform == "darwin":
        return  # Core ML exists there; the backend-parametrized tests cover it
    with pytest.raises(staticllm.BundleError, match="needs macOS or iOS.*backend='mil' runs"):
        staticllm.Runtime.load(affine[2]["fp32"], backend="coreml")


def test_compute_units_are_checked_everywhere(affine):
    with pytest.raises(staticllm.InputError, match="unknown compute units 'npu'; choose all, cpu_only"):
        staticllm.Runtime.load(affine[2]["fp32"], backend="mil", compute_units="npu")
    rt = staticllm.Runtime.load(
        affine[2]["fp32"], backend="mil", compute_units="cpu_only", cache_dir="/nonexistent"
    )
    assert rt.method_names == ["main"]


def test_wrong_python_usage_is_input_error(affine):
    rt = staticllm.Runtime.load(affine[2]["fp32"], backend="mil")
    with pytest.raises(staticllm.InputError, match="method name must be a string"):
        rt.method(3)
    with pytest.raises(staticllm.InputError, match="backend must be a string"):
        staticllm.Runtime.load(affine[2]["fp32"], backend=None)
    with pytest.raises(staticllm.InputError, match="inputs must be a dict by name or a list by position"):
        rt.method().execute(np.zeros((2, 8), np.float32))
    with pytest.raises(TypeError):
        rt.method()(np.zeros((2, 8), np.float32))  # __call__ takes inputs by keyword only


def test_function_selection_through_bindings(tmp_path, rng):
    bundle = two_function_bundle(tmp_path, rng.standard_normal((3, 4)).astype(np.float32))
    text = (bundle / "metadata.json").read_text()
    assert _core._testing.coreml_function_name(text, "double") == "double"
    assert _core._testing.coreml_function_name(text, "negate") == "negate"
    single = json.loads(text)
    single["multifunction"] = False
    single["methods"] = single["methods"][:1]
    single["default_method"] = single["methods"][0]["name"]
    assert _core._testing.coreml_function_name(json.dumps(single), single["default_method"]) is None
    with pytest.raises(staticllm.MetadataError, match="no method named 'other'"):
        _core._testing.coreml_function_name(text, "other")
