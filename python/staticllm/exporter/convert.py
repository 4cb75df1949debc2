"""Tracing the static-shape model and converting one function to Core ML."""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# The RMSNorm reduction of the generic target runs in fp32 even in fp16
# models: a residual stream with activations above ~256 overflows fp16 once
# squared. (The ane target's norm cannot overflow: models/ane_ops.py.)
_FP32_OPS = {"pow", "reduce_mean", "rsqrt"}


@dataclass(frozen=True)
class FunctionSpec:
    name: str  # Core ML function name in the bundle: forward / prefill / decode
    seq_len: int  # tokens per call
    logits: str  # "full" or "last"

    @property
    def has_last_index(self) -> bool:
        return self.logits == "last" and self.seq_len > 1


def example_inputs(model: Any, fn: FunctionSpec) -> list[torch.Tensor]:
    """Inputs in graph order: tokens, positions (or a rotary cos/sin pair per
    table), one mask per cache group, last_index (if any), then k and v
    caches of each layer at its group's length."""
    cfg = model.cfg
    seq = fn.seq_len
    xs = [torch.zeros(1, seq, dtype=torch.int32)]
    if model.target.rope_inputs:
        xs += [torch.zeros(1, seq, cfg.head_dim // 2)] * (2 * len(model.rope_tables()))
    else:
        xs.append(torch.arange(seq, dtype=torch.int32))
    xs += [torch.zeros(1, seq, g.length + seq) for g in model.groups]
    if fn.has_last_index:
        xs.append(torch.tensor([seq - 1], dtype=torch.int32))
    for i in range(cfg.n_layers):
        length = model.groups[model.layer_group[i]].length
        xs += [torch.zeros(1, cfg.n_kv_heads, length, cfg.head_dim)] * 2
    return xs


def _fp16_selector(op: Any) -> bool:
    if op.op_type in _FP32_OPS:
        return False
    # the epsilon add between reduce_mean and rsqrt stays fp32 too
    if op.op_type == "add":
        return not any(
            getattr(v.op, "op_type", None) == "reduce_mean" for v in op.inputs.values() if hasattr(v, "op")
        )
    return True


def convert_function(model: Any, fn: FunctionSpec, dtype: str) -> Any:
    """Returns the ct.models.MLModel of one function (named "main" inside)."""
    import coremltools as ct

    model.logits_mode = fn.logits
    xs = example_inputs(model, fn)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.eval(), tuple(xs), check_trace=False)
    float_type = np.float16 if dtype == "fp16" else np.float32
    io = model.graph_io()
    inputs = [
        ct.TensorType(name=n, shape=tuple(x.shape), dtype=np.int32 if x.dtype == torch.int32 else float_type)
        for n, x in zip(io.inputs(fn.has_last_index), xs, strict=True)
    ]
    head = io.head_spec()
    int_outputs = set(head.outputs[1:]) if not head.full_logits else set()  # the top-k's vocabulary ids
    outputs = [
        ct.TensorType(name=n, dtype=np.int32 if n in int_outputs else float_type) for n in io.outputs()
    ]
    if dtype == "fp32":
        precision = ct.precision.FLOAT32
    elif model.target.safe_norm:  # nothing needs fp32: every op computes in fp16
        precision = ct.transform.FP16ComputePrecision(op_selector=lambda op: True)
    else:
        precision = ct.transform.FP16ComputePrecision(op_selector=_fp16_selector)
    with warnings.catch_warnings(), fast_fp16_checks():
        warnings.simplefilter("ignore")
        return ct.convert(
            traced,
            inputs=inputs,
            outputs=outputs,
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS18,
            compute_precision=precision,
            skip_model_load=True,
        )


# coremltools draws a progress bar per conversion pass; ours already shows
# the export's stages, so theirs are silenced while we convert.
_TQDM_USERS = [
    ("coremltools.converters.mil.frontend.torch.ops", "_tqdm"),
    ("coremltools.converters.mil.mil.passes.pass_pipeline", "tqdm"),
    ("coremltools.optimize.coreml._quantization_passes", "tqdm"),
    ("coremltools.optimize.coreml._post_training_quantization", "tqdm"),
]


def _fp16_overflow(op: Any) -> bool:
    """coremltools' FP16ComputePrecision.fp16_overflow with the same answer:
    does a finite fp32 const input exceed the fp16 range? It masks and copies
    every weight; this looks at the maximum first, which settles almost all."""
    for inputs in op.inputs.values():
        for var in inputs if isinstance(inputs, (list, tuple)) else [inputs]:
            if var.op is None or var.op.op_type != "const" or not var.is_tensor_or_scalar_of(dtype="fp32"):
                continue
            a = np.abs(np.asarray(var.op.val.val))
            if a.size and not float(a.max()) <= 65504 and np.any((a > 65504) & (a < 1e38)):
                return True
    return False


@contextlib.contextmanager
def fast_fp16_checks() -> Iterator[None]:
    from coremltools.converters.mil.mil.passes.defs.quantization import FP16ComputePrecision

    original = FP16ComputePrecision.__dict__["fp16_overflow"]
    FP16ComputePrecision.fp16_overflow = staticmethod(_fp16_overflow)
    try:
        yield
    finally:
        FP16ComputePrecision.fp16_overflow = original


@contextlib.contextmanager
def quiet_coremltools() -> Iterator[None]:
    import importlib

    from tqdm import tqdm

    saved = []
    for module_name, attr in _TQDM_USERS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, attr):
            saved.append((module, attr, getattr(module, attr)))
            setattr(module, attr, functools.partial(tqdm, disable=True))
    log = logging.getLogger("coremltools")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
        for module, attr, original in saved:
            setattr(module, attr, original)
