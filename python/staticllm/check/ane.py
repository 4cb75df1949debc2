"""The Neural Engine check: every construct of a Core ML ML Program that
Apple's rules (or exporters' reports) say falls off the Neural Engine or
breaks there. Rules and their sources live in rules.py; each function below
checks one rule (or two close ones) and yields Findings."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any

import numpy as np

from staticllm.check.program import Function, Op, Program, TensorType, load_program, tensor_type
from staticllm.check.rules import (
    DEFAULT_TARGET,
    ERROR,
    FP16_MAX,
    LARGE_REDUCTION,
    MAX_GATHER_ROWS,
    MAX_RANK,
    MIN_IO_LAST_AXIS_BYTES,
    RULES,
    STATE_MULTIPLE,
    TARGETS,
    Target,
)
from staticllm.errors import InputError


@dataclass(frozen=True)
class Finding:
    rule: str  # a key of RULES
    function: str
    op: str  # op (or feature) name
    op_type: str  # MIL op type, or "input" / "output" / "state" for a feature
    detail: str

    @property
    def level(self) -> str:
        return RULES[self.rule].level

    def to_dict(self) -> dict[str, Any]:
        r = RULES[self.rule]
        return {
            "rule": r.id,
            "level": r.level,
            "function": self.function,
            "op": self.op,
            "op_type": self.op_type,
            "detail": self.detail,
            "title": r.title,
            "text": r.text,
            "sources": list(r.sources),
        }


def resolve_target(name: str) -> Target:
    if name not in TARGETS:
        raise InputError(f"unknown Neural Engine target {name!r}; expected one of {sorted(TARGETS)}")
    return TARGETS[name]


def check_program(program: Program, target: Target | str = DEFAULT_TARGET) -> list[Finding]:
    """All findings for every function of `program`, in rule order then program order."""
    t = resolve_target(target) if isinstance(target, str) else target
    findings: list[Finding] = []
    for check in _CHECKS:
        for fn in program.functions:
            findings.extend(check(program, fn, t))
    return findings


def check_package(package: str | Path, target: Target | str = DEFAULT_TARGET) -> list[Finding]:
    """Findings for a .mlpackage; the entry point `export --target ane` calls on what it wrote."""
    return check_program(load_program(package), target)


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.level == ERROR for f in findings)


# --- helpers -------------------------------------------------------------------------------------

_FLOATS = ("fp16", "fp32", "fp64", "bf16")


def _item_bytes(dtype: str) -> int:
    """Bytes per element, from the bit width every MIL dtype name ends with
    (fp16, int8, uint16, ...); 4 for a name without one."""
    digits = re.search(r"\d+$", dtype)
    return int(digits.group()) // 8 if digits else 4


_WIDE_FLOATS = ("fp32", "fp64")


def _value_types(fn: Function, op: Op) -> Iterator[tuple[str, TensorType]]:
    """(label, type) of every tensor an op writes, then of every tensor it reads."""
    for name, t in op.outputs:
        if t is not None:
            yield f"output '{name}'", t
    for arg, names in op.inputs.items():
        for name in names:
            t = fn.types.get(name) if name else None
            if t is not None:
                yield f"input {arg} '{name}'", t
        for value in op.immediates.get(arg, []):
            t = tensor_type(value.type)
            if t is not None:
                yield f"immediate {arg}", t


def _is_const(fn: Function, name: str | None) -> bool:
    op = fn.producers.get(name) if name else None
    return op is not None and (op.type == "const" or op.type.startswith("constexpr_"))


def _arg_value(program: Program, fn: Function, op: Op, arg: str) -> np.ndarray | None:
    """The constant value bound to `arg` (immediate or from a const op), or None."""
    if op.immediates.get(arg):
        return program.value(op.immediates[arg][0])
    names = op.inputs.get(arg) or []
    producer = fn.producers.get(names[0]) if names and names[0] else None
    return program.const_value(producer) if producer is not None and producer.type == "const" else None


def _arg_type(fn: Function, op: Op, arg: str) -> TensorType | None:
    """The type of the value bound to `arg`: a variable's, or an immediate value's."""
    if op.immediates.get(arg):
        return tensor_type(op.immediates[arg][0].type)
    names = op.inputs.get(arg) or []
    return fn.types.get(names[0]) if names and names[0] else None


def _fmt(shape: Iterable[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


Check = Callable[[Program, Function, Target], Iterable[Finding]]


# --- the checks ----------------------------------------------------------------------------------


def _fp32(program: Program, fn: Function, target: Target) -> Iterator[Finding]:
    for feat in fn.features:
        if feat.dtype in _WIDE_FLOATS:
            yield Finding("ane-fp32-io", fn.name, feat.name, feat.kind, f"{feat.dtype} {_fmt(feat.shape)}")
    for op in fn.ops:
        if op.type == "const":
            continue  # a constant is reported at the op that reads it
        wide = [(label, t) for label, t in _value_types(fn, op) if t.dtype in _WIDE_FLOATS]
        if wide:
            label, t = wide[0]
            yield Finding("ane-fp32-op", fn.name, op.name, op.type, f"{label} is {t}")


def _shapes(program: Program, fn: Function, target: Target) -> Iterator[Finding]:
    for feat in fn.features:
        if len(feat.shape) > MAX_RANK:
            yield Finding(
                "ane-rank", fn.name, feat.name, feat.kind, f"rank {len(feat.shape)} {_fmt(feat.shape)}"
            )
        if any(d > target.max_dim for d in feat.shape):
            yield Finding("ane-max-dim", fn.name, feat.name, feat.kind, f"{feat.dtype} {_fmt(feat.shape)}")
    for op in fn.ops:
        if op.type == "const":
            continue
        types = list(_value_types(fn, op))
        high_rank = [(lb, t) for lb, t in types if len(t.shape) > MAX_RANK]
        if high_rank:
            lb, t = high_rank[0]
            yield Finding("ane-rank", fn.name, op.name, op.type, f"{lb} has rank {len(t.shape)}: {t}")
        large = [(lb, t) for lb, t in types if any(d is not None and d > target.max_dim for d in t.shape)]
        if large:
            # the biggest offender names the op best (an LM head's weight rather than its bias)
            lb, t = max(large, key=lambda v: prod(d or 1 for d in v[1].shape))
            yield Finding("ane-max-dim", fn.name, op.name, op.type, f"{lb} is {t}")


def _io_last_axis(program: Program, fn: Function, target: Target) -> Iterator[Finding]:
    for feat in fn.features:
        width = feat.shape[-1] * _item_bytes(feat.dtype) if feat.shape else None
        if feat.kind != "state" and width is not None and width < MIN_IO_LAST_AXIS_BYTES:
            detail = f"{feat.dtype} {_fmt(feat.shape)}: last axis {feat.shape[-1]} ({width} bytes)"
            yield Finding("ane-io-last-axis", fn.name, feat.name, feat.kind, detail)


def _constants(program: Program, fn: Function, target: Target) -> Iterator[Finding]:
    for op in fn.ops:
        values: list[tuple[str, np.ndarray | None]] = []
        if op.type == "const":
            t = op.outputs[0][1] if op.outputs else None
            if t is not None and t.dtype in _FLOATS:
                values.append(("value", program.const_value(op)))
        for arg, immediates in op.immediates.items():
            values.extend((f"immediate {arg}", program.value(v)) for v in immediates)
        for label, value in values:
            yield from _constant_findings(fn, op, label, value)


def _constant_findings(fn: Function, op: Op, label: str, value: np.ndarray | None) -> Iterator[Finding]:
    if value is None or value.dtype.kind != "f" or value.size == 0:
        return
    finite = np.isfinite(value)
    if not finite.all():
        bad = value[~finite]
        kinds = sorted({"NaN" if np.isnan(v) else ("+inf" if v > 0 else "-inf") for v in bad[:1000]})
        detail = (
            f"{label} ({value.dtype}, {value.size} elements) holds {', '.join(kinds)} ({bad.size} elements)"
        )
        yield Finding("ane-inf-const", fn.name, op.name, op.type, detail)
    big = np.abs(np.where(finite, value, 0)) > FP16_MAX
    if big.any():
        peak = float(np.abs(value[finite]).max())
        count = int(big.sum())
        detail = f"{label} ({value.dtype}) has {count} elements beyond the fp16 range (max |x| {peak:.4g})"
        yield Finding("ane-fp16-overflow-const", fn.name, op.name, op.type, detail)


_GATHERS = ("gather", "gather_along_axis", "gather_nd")


def _gather_rows(program: Program, fn: Function, target: Target) -> Iterator[Finding]:
    for op in fn.ops:
        if op.type not in _GATHERS:
            continue
        x, indices = _arg_type(fn, op, "x"), (op.inputs.get("indices") or [None])[0]
        if x is None or indices is None or _is_const(fn, indices):
            continue  # constant indices are folded or bounded at compile time
        axis_value = _arg_value(program, fn, op, "axis") if op.type != "gather_nd" else None
        axis = int(axis_value) if axis_value is not None else 0
        rows = x.shape[axis] if -len(x.shape) <= axis < len(x.shape) else None
        if rows is not None and rows > MAX_GATHER_ROWS:
            detail = f"gathers rows of {x} along axis {axis} ({rows:,} rows) with runtime indices '{indices}'"
            yield Finding("ane-gather-rows", fn.name, op.name, op.type, detail)


def _blockwise_quant(program: Program, fn: Function, target: Target) -> Iterator[Finding]:
    if target.platform != "iOS":
        return
    for op in fn.ops:
        if op.type != "constexpr_blockwise_shift_scale":
            continue
        data, scale = _arg_type(fn, op, "data"), _arg_type(fn, op, "scale")
        if data is None or scale is None or len(data.shape) != len(scale.shape):
            continue
        if _is_blockwise(data.shape, scale.shape):
            blocks = [d // s for d, s in zip(data.shape, scale.shape) if d and s]
            detail = f"data {data}, scale {scale} (blocks of {_fmt(blocks)} elements)"
            yield Finding("ane-blockwise-quant", fn.name, op.name, op.type, detail)


def _is_blockwise(data: tuple[int | None, ...], scale: tuple[int | None, ...]) -> bool:
    """Per-tensor (all scale dims 1) and per-channel (one axis with a scale per
    element) are not blockwise; anything else is."""
    varying = [(d, s) for d, s in zip(data, scale) if s != 1]
    return not (len(varying) == 0 or (len(varying) == 1 and varying[0][0] == varying[0][1]))


def _linear(program: Program, fn: Function, target: Target) -> Iterator[Finding]:
    for op in fn.ops:
        if op.type == "linear":
            w = _arg_type(fn, op, "weight")
            yield Finding("ane-linear", fn.name, op.name, op.type, f"weight {w}" if w else "linear")
        elif op.type == "matmul":
            consts = [a for a in ("x", "y") if _is_const(fn, (op.inputs.get(a) or [None])[0])]
            if consts:
                t = _arg_type(fn, op, consts[0])
                yield Finding("ane-linear", fn.name, op.name, op.type, f"matmul by constant {consts[0]} {t}")


def _dynamic(program: Program, fn: Function, target: Target) -> Iterator[Finding]:
    for feat in fn.features:
        if feat.flexible:
            detail = f"flexible shape (default {_fmt(feat.shape)})"
            yield Finding("ane-dynamic-shape", fn.name, feat.name, feat.kind, detail)
    for name, t in fn.program_inputs.items():
        if t is not None and None in t.shape:
            yield Finding("ane-dynamic-shape", fn.name, name, "input", f"program input is {t}")
    for op in fn.ops:
        unknown = [(n, t) for n, t in op.outputs if t is not None and None in t.shape]
        if unknown:
            n, t = unknown[0]
            yield Finding("ane-dynamic-shape", fn.name, op.name, op.type, f"output '{n}' is {t}")


def _states(program: Program, fn: Function, target: Target) -> Iterator[Finding]:
    for feat in fn.features:
        if feat.kind == "state" and feat.shape and feat.shape[-1] % STATE_MULTIPLE:
            detail = f"{feat.dtype} {_fmt(feat.shape)}: last axis {feat.shape[-1]}"
            yield Finding("ane-state-32", fn.name, feat.name, "state", detail)


_SQUARES = ("mul", "pow", "square")
_SUMS = ("reduce_sum", "reduce_mean")


def _fp16_reductions(program: Program, fn: Function, target: Target) -> Iterator[Finding]:
    for op in fn.ops:
        x = _arg_type(fn, op, "x")
        if x is None or x.dtype != "fp16":
            continue
        if op.type == "reduce_sum_square":
            base = (op.inputs.get("x") or [None])[0]
        elif op.type in _SUMS:
            base = _squared_operand(program, fn, (op.inputs.get("x") or [None])[0])
        else:
            continue
        if base is None or _scaled_by_max(fn, base):
            continue
        n = _reduced_length(program, fn, op, x)
        if n is not None and n >= LARGE_REDUCTION:
            detail = f"sums squares of '{base}' ({x}) over {n} elements without scaling by max|x| first"
            yield Finding("ane-fp16-reduction", fn.name, op.name, op.type, detail)


def _squared_operand(program: Program, fn: Function, name: str | None) -> str | None:
    """If `name` is x*x, x**2 or square(x), the name of x."""
    op = fn.producers.get(name) if name else None
    if op is None or op.type not in _SQUARES:
        return None
    x = (op.inputs.get("x") or [None])[0]
    if op.type == "square":
        return x
    if op.type == "mul":
        return x if x is not None and (op.inputs.get("y") or [None])[0] == x else None
    exponent = _arg_value(program, fn, op, "y")
    return x if exponent is not None and exponent.size == 1 and float(exponent) == 2.0 else None


def _scaled_by_max(fn: Function, name: str, depth: int = 3) -> bool:
    """Whether `name` is a division (or product) by something computed from a
    reduce_max: the overflow-safe RMSNorm forms rescale by max|x| first."""
    op = fn.producers.get(name)
    if op is None or depth == 0:
        return False
    if op.type in ("reduce_max", "reduce_l2_norm", "reduce_l1_norm"):
        return True
    if op.type in ("real_div", "mul", "rsqrt", "inverse", "abs", "maximum", "add", "sqrt"):
        operands = [n for names in op.inputs.values() for n in names if n]
        return any(_scaled_by_max(fn, n, depth - 1) for n in operands)
    return False


def _reduced_length(program: Program, fn: Function, op: Op, x: TensorType) -> int | None:
    axes = _arg_value(program, fn, op, "axes")
    rank = len(x.shape)
    picked = range(rank) if axes is None else [int(a) % rank for a in np.atleast_1d(axes)] if rank else []
    dims = [x.shape[a] for a in picked]
    return None if any(d is None for d in dims) else prod(d for d in dims if d is not None)


_CHECKS: tuple[Check, ...] = (
    _fp32,
    _shapes,
    _io_last_axis,
    _constants,
    _gather_rows,
    _blockwise_quant,
    _linear,
    _dynamic,
    _states,
    _fp16_reductions,
)
