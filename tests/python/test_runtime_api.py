"""The Runtime / Method API over bundles imported from coremltools programs."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import staticllm
from mil_fixtures import affine_program, bundle_from_program, two_function_bundle


@pytest.fixture(scope="module")
def affine(tmp_path_factory, rng):
    tmp = tmp_path_factory.mktemp("affine")
    w = rng.standard_normal((5, 8)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    return w, b, {
        "fp32": bundle_from_program(affine_program(w, b, np.float32), tmp, "fp32"),
        "fp16": bundle_from_program(affine_program(w, b, np.float16), tmp, "fp16", fp16=True),
    }


def test_runtime_surface(affine):
    _, _, bundles = affine
    rt = staticllm.Runtime.load(bundles["fp32"], backend="mil")
    assert rt.method_names == ["main"]
    assert rt.default_method == "main"
    assert rt.backend == "mil"
    assert rt.metadata["multifunction"] is False
    m = rt.method("main")
    assert m.name == "main"
    assert [(s.name, s.dtype, s.shape) for s in m.input_specs] == [("x", np.dtype(np.float32), (2, 8))]
    assert [s.name for s in m.output_specs] == ["y"]
    assert m.state_specs == []


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_linear_matches_numpy(affine, rng, dtype):
    w, b, bundles = affine
    m = staticllm.Runtime.load(bundles[dtype], backend="mil").method("main")
    x = rng.standard_normal((2, 8)).astype(np.float16 if dtype == "fp16" else np.float32)
    want = x.astype(np.float64) @ w.T.astype(np.float64) + b
    by_name = m.execute({"x": x})["y"]
    by_position = m.execute([x])["y"]
    by_call = m(x=x)["y"]
    assert by_name.dtype == x.dtype
    np.testing.assert_array_equal(by_name, by_position)
    np.testing.assert_array_equal(by_name, by_call)
    if dtype == "fp32":
        np.testing.assert_allclose(by_name, want, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(by_name.astype(np.float64), want, atol=2e-2 * max(1.0, np.abs(want).max() / 4))


def test_torch_tensors_and_array_likes_are_accepted(affine):
    w, b, bundles = affine
    m = staticllm.Runtime.load(bundles["fp32"], backend="mil").method("main")
    x = torch.arange(16, dtype=torch.float32).reshape(2, 8) / 16
    np.testing.assert_allclose(m.execute({"x": x})["y"], x.numpy() @ w.T + b, rtol=1e-5)
    t = x.t().contiguous().t()  # non-contiguous view is copied, not misread
    np.testing.assert_allclose(m.execute({"x": t.numpy()})["y"], x.numpy() @ w.T + b, rtol=1e-5)


def test_concurrent_calls_on_one_method(affine, rng):
    w, b, bundles = affine
    m = staticllm.Runtime.load(bundles["fp32"], backend="mil").method("main")
    xs = [rng.standard_normal((2, 8)).astype(np.float32) for _ in range(8)]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(25):
            results[i] = m.execute({"x": xs[i]})["y"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, x in enumerate(xs):
        np.testing.assert_allclose(results[i], x @ w.T + b, rtol=1e-5)


def test_two_functions_share_weights(tmp_path, rng):
    w = rng.standard_normal((3, 4)).astype(np.float32)
    bundle = two_function_bundle(tmp_path, w)
    rt = staticllm.Runtime.load(bundle, backend="mil")
    assert sorted(rt.method_names) == ["double", "negate"]
    assert rt.default_method == "negate"
    assert rt.metadata["multifunction"] is True
    x = rng.standard_normal((1, 4)).astype(np.float32)
    np.testing.assert_allclose(rt.method("double").execute({"x": x})["out"], 2 * x @ w.T, rtol=1e-5)
    np.testing.assert_allclose(rt.method("negate").execute({"x": x})["out"], -x @ w.T, rtol=1e-5)
    # one copy of the weight in weight.bin, mapped once: both functions use the same blob
    from staticllm.inspect import weight_sharing

    sharing = weight_sharing(bundle)
    assert sharing["double"]["shared"] == sharing["double"]["blobs"] >= 1
    assert _mapped_count(bundle / "model.mlpackage") == 1


def _mapped_count(pkg) -> int:
    """How many times this process maps the bundle's weight.bin."""
    target = str((pkg / "Data/com.apple.CoreML/weights/weight.bin").resolve())
    with open("/proc/self/maps") as f:
        lines = [ln for ln in f if ln.rstrip().endswith(target)]
    return len(lines)


def test_coreml_backend_off_apple_says_what_to_do(affine):
    import sys

    if sys.platform == "darwin":
        pytest.skip("Core ML is available on macOS")
    with pytest.raises(staticllm.BundleError, match="backend='mil' runs"):
        staticllm.Runtime.load(affine[2]["fp32"], backend="coreml")


def test_function_selection_through_bindings(tmp_path, rng):
    import json

    from staticllm import _core

    bundle = two_function_bundle(tmp_path, rng.standard_normal((3, 4)).astype(np.float32))
    text = (bundle / "metadata.json").read_text()
    assert _core.coreml_function_name(text, "double") == "double"
    single = json.loads(text)
    single["multifunction"] = False
    single["methods"] = single["methods"][:1]
    single["default_method"] = single["methods"][0]["name"]
    assert _core.coreml_function_name(json.dumps(single), single["default_method"]) is None
