"""Reading a Core ML package's spec: function descriptions for metadata.json
and the ML Program as JSON (program.json) for the portable interpreter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from staticllm.errors import BundleError

# Core ML ArrayFeatureType.ArrayDataType (equal to MLMultiArrayDataType): 0x10000 | bits for floats,
# 0x20000 | bits for signed integers -> metadata dtype names. The C++ dtype table (tensor.cpp) holds
# the same codes; tests/python/test_metadata.py checks that the two agree.
_FLOAT, _INT = 0x10000, 0x20000
_ARRAY_DTYPES = {
    _FLOAT | 16: "fp16",
    _FLOAT | 32: "fp32",
    _FLOAT | 64: "fp64",
    _INT | 32: "int32",
    _INT | 8: "int8",
}


def load_spec(package: str | Path) -> Any:
    import coremltools as ct

    p = Path(package)
    if not (p / "Manifest.json").is_file():
        raise BundleError(f"{p}: not a Core ML package (no Manifest.json)")
    try:
        return ct.utils.load_spec(str(p))
    except Exception as exc:  # coremltools raises bare Exceptions for bad packages
        raise BundleError(f"{p}: cannot read the model spec ({exc})") from exc


def feature_array(feature: Any) -> Any | None:
    """The ArrayFeatureType of a multi-array or state feature; None for other kinds."""
    kind = feature.type.WhichOneof("Type")
    if kind == "stateType":
        return feature.type.stateType.arrayType
    if kind == "multiArrayType":
        return feature.type.multiArrayType
    return None


def _flexibility(arr: Any) -> dict[str, Any]:
    """The metadata keys of a flexible input: its shape with None where it
    may vary, the default shape and the range or enumeration it accepts."""
    default = [int(s) for s in arr.shape]
    kind = arr.WhichOneof("ShapeFlexibility")
    if kind == "shapeRange":
        ranges = [(int(r.lowerBound), int(r.upperBound)) for r in arr.shapeRange.sizeRanges]
        shape = [lo if lo == hi else None for lo, hi in ranges]
        out = {"shape_range": [[lo, hi if hi >= 0 else None] for lo, hi in ranges]}
    else:
        shapes = [[int(d) for d in e.shape] for e in arr.enumeratedShapes.shapes]
        shape = [dims[0] if len(set(dims)) == 1 else None for dims in zip(*shapes)]
        out = {"enumerated_shapes": shapes}
    return {"shape": shape, "default_shape": default, **out}


def _tensor_spec(feature: Any, where: str, kind: str) -> dict[str, Any]:
    """The metadata spec of an input, output or state feature. Inputs may be
    flexible; an output without a declared shape (known only at run time) has
    shape None; states are fixed."""
    arr = feature_array(feature)
    if arr is None:
        other = feature.type.WhichOneof("Type")
        raise BundleError(
            f"{where}: feature '{feature.name}' is a {other}; staticllm handles multi-arrays and states"
        )
    if arr.dataType not in _ARRAY_DTYPES:
        raise BundleError(f"{where}: feature '{feature.name}' has unsupported array type {arr.dataType}")
    spec: dict[str, Any] = {"name": feature.name, "dtype": _ARRAY_DTYPES[arr.dataType]}
    shape = [int(s) for s in arr.shape]
    flexible = arr.WhichOneof("ShapeFlexibility") is not None
    if kind == "input" and flexible and shape:
        return {**spec, **_flexibility(arr)}
    if kind == "output" and (flexible or not shape):
        return {**spec, "shape": None}
    if flexible or not shape:
        raise BundleError(
            f"{where}: {kind} '{feature.name}' has no fixed shape "
            f"({'a state must be fixed' if kind == 'state' else 'and no default shape'})"
        )
    return {**spec, "shape": shape}


def function_descriptions(spec: Any, where: str) -> tuple[list[dict[str, Any]], str, bool]:
    """Returns (methods, default method, multifunction) from the package spec."""
    if spec.WhichOneof("Type") != "mlProgram":
        kind = spec.WhichOneof("Type")
        raise BundleError(
            f"{where} is a {kind} model; staticllm runs ML Program packages "
            "(convert with convert_to='mlprogram')"
        )
    desc = spec.description
    if len(desc.functions) > 0:
        funcs = [(f.name, f.input, f.output, f.state) for f in desc.functions]
        default = desc.defaultFunctionName or funcs[0][0]
        multi = True
    else:
        funcs = [("main", desc.input, desc.output, desc.state)]
        default, multi = "main", False
    methods = []
    for name, ins, outs, states in funcs:
        w = f"{where}: function '{name}'"
        methods.append(
            {
                "name": name,
                "function_name": name,
                "inputs": [_tensor_spec(f, w, "input") for f in ins],
                "outputs": [_tensor_spec(f, w, "output") for f in outs],
                "states": [_tensor_spec(f, w, "state") for f in states],
            }
        )
    return methods, default, multi


def program_json(spec: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(spec.mlProgram)


def single_function_spec(spec: Any, function_name: str, where: str) -> Any:
    """A copy of a multifunction `spec` holding only `function_name`, as the
    plain single-function package it would be on its own: the function's
    description becomes the model's, its body becomes "main"."""
    desc = next((f for f in spec.description.functions if f.name == function_name), None)
    if desc is None or function_name not in spec.mlProgram.functions:
        known = [f.name for f in spec.description.functions]
        raise BundleError(f"{where}: the package has no function {function_name!r} (it has {known})")
    out = type(spec)()
    out.CopyFrom(spec)
    d = out.description
    for field, src in (("input", desc.input), ("output", desc.output), ("state", desc.state)):
        d.ClearField(field)
        getattr(d, field).extend(src)
    d.ClearField("functions")
    d.defaultFunctionName = ""
    body = type(spec.mlProgram.functions[function_name])()
    body.CopyFrom(spec.mlProgram.functions[function_name])
    out.mlProgram.ClearField("functions")
    out.mlProgram.functions["main"].CopyFrom(body)
    return out
