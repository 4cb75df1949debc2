"""Regression guards for what held when the runtime was attacked (issue 7,
item 8): concurrent callers get exactly the serial results, and the memory
layout of an input array never changes a result."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import staticllm
from mil_fixtures import bundle_from_program, two_function_package

K, N = 256, 192


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """fp16 [16, K] -> linear -> gelu -> matmul -> softmax: big enough that the
    kernels split rows over the thread pool while callers run concurrently."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    rng = np.random.default_rng(3)
    w1 = (rng.standard_normal((N, K)) / np.sqrt(K)).astype(np.float16)
    w2 = (rng.standard_normal((N, N)) / np.sqrt(N)).astype(np.float16)
    types = ct.converters.mil.mil.types

    @mb.program(input_specs=[mb.TensorSpec(shape=(16, K), dtype=types.fp16)], opset_version=ct.target.iOS18)
    def prog(x: Any) -> Any:
        h = mb.gelu(x=mb.linear(x=x, weight=w1))
        return mb.softmax(x=mb.matmul(x=h, y=w2), axis=-1, name="y")

    tmp = tmp_path_factory.mktemp("mlp")
    return bundle_from_program(prog, tmp, "mlp", fp16=True)


def _run_threads(n: int, work: Callable[[int], None]) -> None:
    start = threading.Barrier(n)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_eight_threads_match_serial_bit_for_bit(mlp, backend):
    m = staticllm.Runtime.load(mlp, backend=backend).method()
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((16, K)).astype(np.float16) for _ in range(8)]
    serial = [m.execute({"x": x})["y"] for x in xs]
    calls = 200
    mismatches = [0] * len(xs)

    def work(i: int) -> None:
        for _ in range(calls):
            mismatches[i] += not np.array_equal(m.execute({"x": xs[i]})["y"], serial[i])

    _run_threads(len(xs), work)
    assert mismatches == [0] * len(xs)


def test_prefill_and_decode_run_concurrently(tmp_path, backend):
    w = np.random.default_rng(4).standard_normal((N, K)).astype(np.float32)
    package = two_function_package(tmp_path, w, names=("prefill", "decode"), default="decode")
    rt = staticllm.Runtime.load(staticllm.import_mlpackage(package, tmp_path / "b"), backend=backend)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((1, K)).astype(np.float32) for _ in range(8)]
    names = ["prefill", "decode"] * 4
    serial = [rt.method(names[i]).execute({"x": xs[i]})["out"] for i in range(8)]
    np.testing.assert_allclose(serial[0], 2 * xs[0] @ w.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(serial[1], -xs[1] @ w.T, rtol=1e-4, atol=1e-4)
    mismatches = [0] * 8

    def work(i: int) -> None:
        m = rt.method(names[i])
        for _ in range(100):
            mismatches[i] += not np.array_equal(m.execute({"x": xs[i]})["out"], serial[i])

    _run_threads(8, work)
    assert mismatches == [0] * 8


def _unaligned_copy(x: np.ndarray) -> np.ndarray:
    """x's values in an array starting one byte into its buffer."""
    raw = np.zeros(x.nbytes + 1, np.uint8)
    out = np.frombuffer(raw.data, dtype=x.dtype, count=x.size, offset=1).reshape(x.shape)
    out[...] = x
    assert not out.flags.aligned
    return out


def _read_only(x: np.ndarray) -> np.ndarray:
    out = x.copy()
    out.flags.writeable = False
    return out


def _layouts(x: np.ndarray) -> dict[str, np.ndarray]:
    wide = np.zeros((x.shape[0], 2 * x.shape[1]), x.dtype)
    wide[:, ::2] = x
    return {
        "transposed view": np.ascontiguousarray(x.T).T,
        "every other column": wide[:, ::2],
        "reversed rows": np.ascontiguousarray(x[::-1])[::-1],
        "fortran order": np.asfortranarray(x),
        "read-only": _read_only(x),
        "unaligned": _unaligned_copy(x),
    }


def test_input_layout_never_changes_a_result(mlp, backend):
    m = staticllm.Runtime.load(mlp, backend=backend).method()
    x = np.random.default_rng(2).standard_normal((16, K)).astype(np.float16)
    want = m.execute({"x": x})["y"]
    for what, arr in _layouts(x).items():
        np.testing.assert_array_equal(arr, x)
        got = m.execute({"x": arr})["y"]
        assert np.array_equal(got, want), what
        np.testing.assert_array_equal(arr, x, err_msg=f"{what}: the input was written")
