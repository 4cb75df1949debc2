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


def _tensor_spec(feature: Any, where: str) -> dict[str, Any]:
    arr = feature_array(feature)
    if arr is None:
        kind = feature.type.WhichOneof("Type")
        raise BundleError(
            f"{where}: feature '{feature.name}' is a {kind}; staticllm handles multi-arrays and states"
        )
    if arr.dataType not in _ARRAY_DTYPES:
        raise BundleError(f"{where}: feature '{feature.name}' has unsupported array type {arr.dataType}")
    shape = [int(s) for s in arr.shape]
    if not shape:
        raise BundleError(
            f"{where}: feature '{feature.name}' has no fixed shape (flexible shapes are not supported)"
        )
    return {"name": feature.name, "dtype": _ARRAY_DTYPES[arr.dataType], "shape": shape}


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
                "inputs": [_tensor_spec(f, w) for f in ins],
                "outputs": [_tensor_spec(f, w) for f in outs],
                "states": [_tensor_spec(f, w) for f in states],
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
