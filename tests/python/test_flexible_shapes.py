"""Core ML packages with flexible shapes through the interpreter: inputs with
a range (RangeDim) or enumerated shapes, planned per input shape in a bounded
cache, and outputs whose shape follows from run-time values (the eager
path). Compared with torch / numpy at several shapes."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import staticllm
from staticllm.errors import InputError


class _Block(torch.nn.Module):
    """A token-wise MLP over a sequence of any length: [1, T, 8] -> [1, T, 8]."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up = torch.nn.Linear(8, 16)
        self.down = torch.nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.nn.functional.gelu(self.up(x))) + x.mean(dim=1, keepdim=True)


def _convert(module: torch.nn.Module, shape: Any, tmp: Path, name: str) -> staticllm.Method:
    import coremltools as ct

    traced = torch.jit.trace(module.eval(), torch.zeros(1, 3, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ct.convert(
            traced,
            inputs=[ct.TensorType(name="x", shape=shape, dtype=np.float32)],
            outputs=[ct.TensorType(name="y")],
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS16,
            compute_precision=ct.precision.FLOAT32,
            skip_model_load=True,
        )
    model.save(str(tmp / f"{name}.mlpackage"))
    bundle = staticllm.import_mlpackage(tmp / f"{name}.mlpackage", tmp / name)
    return staticllm.Runtime.load(bundle, backend="mil").method()


@pytest.fixture(scope="module")
def block() -> _Block:
    return _Block()


@pytest.fixture(scope="module")
def range_method(block: _Block, tmp_path_factory: pytest.TempPathFactory) -> staticllm.Method:
    import coremltools as ct

    shape = ct.Shape((1, ct.RangeDim(lower_bound=1, upper_bound=32, default=4), 8))
    return _convert(block, shape, tmp_path_factory.mktemp("range"), "range")


@pytest.fixture(scope="module")
def enumerated_method(block: _Block, tmp_path_factory: pytest.TempPathFactory) -> staticllm.Method:
    import coremltools as ct

    shape = ct.EnumeratedShapes(shapes=[(1, 2, 8), (1, 5, 8), (1, 9, 8)], default=(1, 5, 8))
    return _convert(block, shape, tmp_path_factory.mktemp("enum"), "enum")


def _check(method: staticllm.Method, block: _Block, length: int) -> None:
    x = np.random.default_rng(length).standard_normal((1, length, 8)).astype(np.float32)
    got = method.execute({"x": x})["y"]
    with torch.no_grad():
        want = block(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_range_input_specs_show_the_flexible_dimension(range_method: staticllm.Method) -> None:
    (x,) = range_method.input_specs
    assert x.shape == (1, None, 8)
    assert x.default_shape == (1, 4, 8)
    assert x.shape_range == ((1, 1), (1, 32), (8, 8))
    assert x.is_flexible
    assert x.zeros().shape == (1, 4, 8)
    (y,) = range_method.output_specs
    assert y.shape is None  # Core ML declares no shape for it


def test_range_input_runs_at_many_shapes(range_method: staticllm.Method, block: _Block) -> None:
    # more distinct lengths than the plan cache holds (8), and back to the first ones
    for length in [4, 1, 7, 32, 2, 3, 5, 6, 9, 10, 11, 1, 4, 32]:
        _check(range_method, block, length)


def test_out_of_range_shape_is_an_input_error(range_method: staticllm.Method) -> None:
    with pytest.raises(InputError) as err:
        range_method.execute({"x": np.zeros((1, 33, 8), np.float32)})
    assert str(err.value) == "method 'main': input 'x' expects fp32 [1, 1..32, 8], got fp32 [1, 33, 8]"
    with pytest.raises(InputError, match=r"input 'x' expects fp32 \[1, 1\.\.32, 8\], got fp32 \[1, 4, 7\]"):
        range_method.execute({"x": np.zeros((1, 4, 7), np.float32)})


def test_enumerated_shapes_run_and_others_are_refused(
    enumerated_method: staticllm.Method, block: _Block
) -> None:
    (x,) = enumerated_method.input_specs
    assert x.shape == (1, None, 8)
    assert set(x.enumerated_shapes) == {(1, 2, 8), (1, 5, 8), (1, 9, 8)}  # coremltools puts the default first
    for length in [5, 2, 9, 2]:
        _check(enumerated_method, block, length)
    with pytest.raises(InputError) as err:
        enumerated_method.execute({"x": np.zeros((1, 3, 8), np.float32)})
    assert str(err.value) == (
        "method 'main': input 'x' expects fp32 [1, 5, 8], [1, 2, 8] or [1, 9, 8], got fp32 [1, 3, 8]"
    )


def test_value_dependent_shapes_run_eagerly(tmp_path: Path) -> None:
    """non_zero's output and a reshape to an input-given shape are known only
    from values: the interpreter computes them per call."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    from mil_fixtures import bundle_from_program

    @mb.program(
        input_specs=[mb.TensorSpec(shape=(3, 4)), mb.TensorSpec(shape=(2,), dtype=types.int32)],
        opset_version=ct.target.iOS16,
    )
    def prog(x: Any, s: Any) -> Any:
        nz = mb.non_zero(x=mb.relu(x=x), name="nz")
        r = mb.reshape(x=x, shape=s, name="r")
        return nz, r

    method = staticllm.Runtime.load(bundle_from_program(prog, tmp_path, "eager"), backend="mil").method()
    assert [s.shape for s in method.output_specs] == [None, None]
    rng = np.random.default_rng(3)
    for shape in [(2, 6), (12, 1), (4, 3)]:
        x = rng.standard_normal((3, 4)).astype(np.float32)
        out = method.execute({"x": x, "s": np.array(shape, np.int32)})
        np.testing.assert_array_equal(out["nz"], np.argwhere(x > 0))
        np.testing.assert_array_equal(out["r"], x.reshape(shape))
    with pytest.raises(staticllm.StaticLLMError, match="reshape"):
        method.execute({"x": x, "s": np.array([5, 5], np.int32)})
