"""benchmarks/flexible_shapes.py: what flexible shapes cost in the interpreter.

1. A first call with new input shapes (planning, a new arena) against a call
   whose plan is cached: the encoder block and the conv / batch-norm / pool
   stack of tests/python/test_real_packages.py, converted with RangeDims.
2. The eager path (non_zero and a reshape to an input-given shape, planned on
   every call) against the same ops with constant shapes (planned once).

Run from the repository root: PYTHONPATH=python:tests/python python3 benchmarks/flexible_shapes.py
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

import staticllm


def _timed(method: Any, x: np.ndarray, repeat: int) -> float:
    """Best of `repeat` calls, in ms."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        method.execute({"x": x})
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _torch_method(module: torch.nn.Module, example: torch.Tensor, shape: Any, tmp: Path, name: str) -> Any:
    import coremltools as ct

    traced = torch.jit.trace(module.eval(), example)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ct.convert(
            traced,
            inputs=[ct.TensorType(name="x", shape=shape)],
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT32,
            skip_model_load=True,
        )
    model.save(str(tmp / f"{name}.mlpackage"))
    return staticllm.Runtime.load(
        staticllm.import_mlpackage(tmp / f"{name}.mlpackage", tmp / name), "mil"
    ).method()


class _ConvStack(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        from test_real_packages import SmallCNN

        self.cnn = SmallCNN()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cnn
        x = torch.nn.functional.max_pool2d(torch.relu(c.bn1(c.conv1(x))), 2)
        return torch.relu(c.bn2(c.conv2(x)))


def first_calls(tmp: Path) -> None:
    import coremltools as ct

    from test_real_packages import EncoderBlock

    torch.manual_seed(0)
    side, length = ct.RangeDim(16, 256, default=16), ct.RangeDim(1, 512, default=8)
    cases = [
        ("encoder block", EncoderBlock(), torch.randn(1, 8, 32), ct.Shape((1, length, 32)),
         [(1, n, 32) for n in (16, 128, 256)]),
        ("conv stack", _ConvStack(), torch.randn(1, 3, 16, 16), ct.Shape((1, 3, side, side)),
         [(1, 3, n, n) for n in (32, 128)]),
    ]  # fmt: skip
    print("model, input: first call / cached call (ms)")
    for name, module, example, shape, inputs in cases:
        method = _torch_method(module, example, shape, tmp, name.replace(" ", "_"))
        for dims in inputs:
            x = np.random.default_rng(0).random(dims, np.float32)
            first = _timed(method, x, 1)
            cached = _timed(method, x, 5)
            print(f"  {name}, {list(dims)}: {first:.2f} / {cached:.2f}")


def eager_path(tmp: Path) -> None:
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    from mil_fixtures import bundle_from_program

    @mb.program(
        input_specs=[mb.TensorSpec(shape=(3, 4)), mb.TensorSpec(shape=(2,), dtype=types.int32)],
        opset_version=ct.target.iOS16,
    )
    def eager(x: Any, s: Any) -> Any:
        return mb.non_zero(x=mb.relu(x=x), name="nz"), mb.reshape(x=x, shape=s, name="r")

    @mb.program(input_specs=[mb.TensorSpec(shape=(3, 4))], opset_version=ct.target.iOS16)
    def planned(x: Any) -> Any:
        return mb.relu(x=x, name="nz"), mb.reshape(x=x, shape=[2, 6], name="r")

    x = np.random.default_rng(0).random((3, 4), np.float32)
    print("relu + non_zero + reshape on [3, 4], a call from Python (us, mean of 2000 after 50):")
    for name, prog, feed in [
        ("eager path", eager, {"s": np.array([2, 6], np.int32)}),
        ("planned once", planned, {}),
    ]:
        method = staticllm.Runtime.load(
            bundle_from_program(prog, tmp, name.replace(" ", "_")), "mil"
        ).method()
        for _ in range(50):
            method.execute({"x": x, **feed})
        start = time.perf_counter()
        for _ in range(2000):
            method.execute({"x": x, **feed})
        print(f"  {name}: {(time.perf_counter() - start) / 2000 * 1e6:.1f}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        first_calls(Path(d))
        eager_path(Path(d))
