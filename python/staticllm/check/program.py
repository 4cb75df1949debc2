"""A read-only view of a Core ML ML Program for static checks: per function,
its features (inputs, outputs, states) and its ops in order, every value's
dtype and shape, and constant values read on demand from the package."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from staticllm.bundle_layout import PACKAGE_WEIGHTS_DIR
from staticllm.errors import BundleError
from staticllm.package_spec import _ARRAY_DTYPES, feature_array, load_spec

# A dimension the program leaves open (flexible or data-dependent) is None.
Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class TensorType:
    dtype: str  # MIL DataType name, lower case: "fp16", "fp32", "int32", "int4", ...
    shape: Shape

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype} [{dims}]"


@dataclass(frozen=True)
class Feature:
    """An input, output or state of a function, as the model description has it."""

    kind: str  # "input" | "output" | "state"
    name: str
    dtype: str
    shape: tuple[int, ...]
    flexible: bool


@dataclass
class Op:
    type: str
    name: str
    # argument name -> bound variable names (None where the argument is an immediate value)
    inputs: dict[str, list[str | None]]
    # argument name -> immediate values bound in place of a variable
    immediates: dict[str, list[Any]]
    outputs: list[tuple[str, TensorType | None]]
    spec: Any = field(repr=False)


@dataclass
class Function:
    name: str
    features: list[Feature]
    ops: list[Op]
    # every variable of the function (program inputs and op outputs) -> its type
    types: dict[str, TensorType | None]
    # op output name -> the op producing it
    producers: dict[str, Op]
    program_inputs: dict[str, TensorType | None]


_DTYPE_NAMES = {
    "FLOAT16": "fp16",
    "FLOAT32": "fp32",
    "FLOAT64": "fp64",
    "BFLOAT16": "bf16",
}


def _dtype_name(code: int) -> str:
    from coremltools.proto import MIL_pb2

    name = MIL_pb2.DataType.Name(code)
    return _DTYPE_NAMES.get(name, name.lower())


def tensor_type(value_type: Any) -> TensorType | None:
    """The TensorType of a MIL ValueType; None for lists, dicts and states of them."""
    kind = value_type.WhichOneof("type")
    if kind == "stateType":
        return tensor_type(value_type.stateType.wrappedType)
    if kind != "tensorType":
        return None
    t = value_type.tensorType
    dims = tuple(
        int(d.constant.size) if d.WhichOneof("dimension") == "constant" else None for d in t.dimensions
    )
    return TensorType(_dtype_name(t.dataType), dims)


class Program:
    """The functions of one package, with constants read lazily from its weights."""

    def __init__(self, spec: Any, weights_dir: Path | None, where: str) -> None:
        if spec.WhichOneof("Type") != "mlProgram":
            raise BundleError(
                f"{where} is a {spec.WhichOneof('Type')} model; the Neural Engine check reads ML Programs"
            )
        self.where = where
        self._weights_dir = weights_dir
        self._context = SimpleNamespace(weights_dir=str(weights_dir or ""), blob_reader_from_filename={})
        self.functions = [self._function(name, spec) for name in _function_names(spec)]

    def const_value(self, op: Op) -> np.ndarray | None:
        """The value of a `const` op (see `value`)."""
        val = op.spec.attributes.get("val") if op.type == "const" else None
        return None if val is None else self.value(val)

    def value(self, value_spec: Any) -> np.ndarray | None:
        """A constant's value; None for kinds coremltools cannot load (lists,
        dictionaries). A missing or unreadable weight file is an error: the
        check would otherwise pass constants it never saw."""
        from coremltools.converters.mil.frontend.milproto.load import _load_value

        if value_spec.WhichOneof("value") == "blobFileValue":
            blob = value_spec.blobFileValue
            if self._weights_dir is None:
                raise BundleError(f"{self.where}: a constant lives in {blob.fileName}; no weights given")
            path = self._weights_dir / Path(blob.fileName).name
            if not path.is_file():
                raise BundleError(f"{self.where}: {path} is missing (the program's constants live there)")
            try:
                return np.asarray(_load_value(self._context, value_spec))
            except Exception as exc:  # BlobReader raises bare RuntimeErrors
                raise BundleError(
                    f"{self.where}: cannot read the constant at offset {blob.offset} of {path} ({exc})"
                ) from exc
        try:
            return np.asarray(_load_value(self._context, value_spec))
        except Exception:  # a value kind coremltools cannot load
            return None

    def _function(self, name: str, spec: Any) -> Function:
        body_name = name if len(spec.description.functions) else "main"
        if body_name not in spec.mlProgram.functions:
            raise BundleError(f"{self.where}: the ML Program has no function {body_name!r}")
        body = spec.mlProgram.functions[body_name]
        block = body.block_specializations[body.opset]
        program_inputs = {i.name: tensor_type(i.type) for i in body.inputs}
        fn = Function(name, _features(spec, name), [], dict(program_inputs), {}, program_inputs)
        for op in _walk(block):
            fn.ops.append(op)
            for out_name, out_type in op.outputs:
                fn.types[out_name] = out_type
                fn.producers[out_name] = op
        return fn


def _function_names(spec: Any) -> list[str]:
    return [f.name for f in spec.description.functions] or ["main"]


def _features(spec: Any, function: str) -> list[Feature]:
    desc = spec.description
    if len(desc.functions):
        desc = next(f for f in desc.functions if f.name == function)
    out = []
    for kind, feats in (("input", desc.input), ("output", desc.output), ("state", desc.state)):
        for f in feats:
            arr = feature_array(f)
            if arr is None:
                continue  # images, dictionaries: nothing the Neural Engine rules cover
            flexible = arr.WhichOneof("ShapeFlexibility") is not None
            dtype = _ARRAY_DTYPES.get(arr.dataType, f"type {arr.dataType}")
            out.append(Feature(kind, f.name, dtype, tuple(int(s) for s in arr.shape), flexible))
    return out


def _walk(block: Any) -> Iterator[Op]:
    """Every op of a block in program order, nested blocks (cond, while) included."""
    for spec in block.operations:
        inputs: dict[str, list[str | None]] = {}
        immediates: dict[str, list[Any]] = {}
        for arg, bindings in spec.inputs.items():
            inputs[arg] = [b.name if b.WhichOneof("binding") == "name" else None for b in bindings.arguments]
            immediates[arg] = [b.value for b in bindings.arguments if b.WhichOneof("binding") == "value"]
        outputs = [(o.name, tensor_type(o.type)) for o in spec.outputs]
        name = outputs[0][0] if outputs else spec.type
        yield Op(spec.type, name, inputs, immediates, outputs, spec)
        for inner in spec.blocks:
            yield from _walk(inner)


def load_program(package: str | Path) -> Program:
    """The Program of a .mlpackage directory."""
    p = Path(package)
    return Program(load_spec(p), p / PACKAGE_WEIGHTS_DIR, str(p))
