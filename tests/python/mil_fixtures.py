"""Small Core ML packages built with coremltools (MIL builder and torch
conversion) and turned into bundles with staticllm.import_mlpackage."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import staticllm


def convert_program(prog: Any, path: Path, fp16: bool = False, optimize: bool = True) -> Path:
    """`optimize=False` keeps the program exactly as built (no pass folds or retypes an op)."""
    import coremltools as ct

    passes = {} if optimize else {"pass_pipeline": ct.PassPipeline.EMPTY}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ct.convert(
            prog,
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS18,
            compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
            skip_model_load=True,
            **passes,
        )
    model.save(str(path))
    return path


def bundle_from_program(prog: Any, tmp: Path, name: str, fp16: bool = False) -> Path:
    pkg = convert_program(prog, tmp / f"{name}.mlpackage", fp16)
    return staticllm.import_mlpackage(pkg, tmp / name)


def program_method(prog: Any, tmp: Path, name: str) -> Any:
    """The interpreter's method for a MIL program (bundle_from_program, loaded with backend="mil")."""
    return staticllm.Runtime.load(bundle_from_program(prog, tmp, name), backend="mil").method()


def affine_program(weight: np.ndarray, bias: np.ndarray, dtype: Any = np.float32) -> Any:
    """y = x @ weight.T + bias, with x [2, K] in `dtype`."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    k = weight.shape[1]

    @mb.program(
        input_specs=[
            mb.TensorSpec(
                shape=(2, k),
                dtype=ct.converters.mil.mil.types.fp16
                if dtype == np.float16
                else ct.converters.mil.mil.types.fp32,
            )
        ],
        opset_version=ct.target.iOS18,
    )
    def prog(x: Any) -> Any:
        return mb.linear(x=x, weight=weight.astype(dtype), bias=bias.astype(dtype), name="y")

    return prog


def available_backends() -> list[str]:
    """The interpreter everywhere, plus Core ML where it exists (macOS)."""
    return ["mil", "coreml"] if sys.platform == "darwin" else ["mil"]


def two_function_package(
    tmp: Path,
    weight: np.ndarray,
    names: tuple[str, str] = ("double", "negate"),
    default: str | None = None,
    make_weight: Callable[[], Any] | None = None,
) -> Path:
    """A multifunction package whose two functions both read `weight`:
    names[0](x) = 2 * x @ weight.T and names[1](x) = -(x @ weight.T).
    save_multifunction de-duplicates the equal constant, so weight.bin holds it once.
    `make_weight`, if given, builds the weight inside each program instead (e.g. a
    constexpr decompression of fixed arrays); `weight` then only gives the shape."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    k = weight.shape[1]
    specs = [mb.TensorSpec(shape=(1, k))]

    def w() -> Any:
        return make_weight() if make_weight is not None else weight

    @mb.program(input_specs=specs, opset_version=ct.target.iOS18)
    def double(x: Any) -> Any:
        return mb.mul(x=mb.linear(x=x, weight=w()), y=np.float32(2.0), name="out")

    @mb.program(input_specs=specs, opset_version=ct.target.iOS18)
    def negate(x: Any) -> Any:
        return mb.mul(x=mb.linear(x=x, weight=w()), y=np.float32(-1.0), name="out")

    first, second = names
    paths = [
        convert_program(double, tmp / f"{first}_only.mlpackage"),
        convert_program(negate, tmp / f"{second}_only.mlpackage"),
    ]
    desc = ct.utils.MultiFunctionDescriptor()
    desc.add_function(str(paths[0]), src_function_name="main", target_function_name=first)
    desc.add_function(str(paths[1]), src_function_name="main", target_function_name=second)
    desc.default_function_name = default or second
    out = tmp / f"{first}_{second}.mlpackage"
    ct.utils.save_multifunction(desc, str(out))
    return out


def two_function_bundle(tmp: Path, weight: np.ndarray) -> Path:
    """two_function_package ('double', 'negate'; default 'negate') imported as a bundle."""
    return staticllm.import_mlpackage(two_function_package(tmp, weight), tmp / "pair")


def accumulator_program() -> Any:
    """A stateful fp16 program: acc += x; returns doubled = 2 * acc (state 'acc' [2, 3])."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    types = ct.converters.mil.mil.types

    @mb.program(
        input_specs=[
            mb.TensorSpec(shape=(2, 3), dtype=types.fp16),
            mb.StateTensorSpec(shape=(2, 3), dtype=types.fp16),
        ],
        opset_version=ct.target.iOS18,
    )
    def prog(x: Any, acc: Any) -> Any:
        total = mb.add(x=mb.read_state(input=acc), y=x)
        mb.coreml_update_state(state=acc, value=total)
        return mb.mul(x=total, y=np.float16(2.0), name="doubled")

    return prog


def stateful_pair_bundle(tmp: Path) -> Path:
    """A multifunction bundle whose two functions share the state 'acc' fp16 [2, 3]:
    accumulate(x) does acc += x and returns doubled = 2 * acc; peek() returns value = acc."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    types = ct.converters.mil.mil.types

    @mb.program(
        input_specs=[mb.StateTensorSpec(shape=(2, 3), dtype=types.fp16)], opset_version=ct.target.iOS18
    )
    def peek(acc: Any) -> Any:
        return mb.mul(x=mb.read_state(input=acc), y=np.float16(1.0), name="value")

    desc = ct.utils.MultiFunctionDescriptor()
    for name, prog in (("accumulate", accumulator_program()), ("peek", peek)):
        path = convert_program(prog, tmp / f"{name}_only.mlpackage", fp16=True)
        desc.add_function(str(path), src_function_name="main", target_function_name=name)
    desc.default_function_name = "accumulate"
    ct.utils.save_multifunction(desc, str(tmp / "stateful_pair.mlpackage"))
    return staticllm.import_mlpackage(tmp / "stateful_pair.mlpackage", tmp / "stateful_pair")
