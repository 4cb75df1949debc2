"""Weight quantization of one converted function (before any merge:
coremltools refuses to quantize multifunction packages)."""

from __future__ import annotations

from typing import Any

from staticllm.errors import ExportError

MODES = ("none", "int8", "int4", "palettize4")


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ExportError(f"unknown quantize mode {mode!r}; choose one of {', '.join(MODES)}")


def _excluded_ops(mlmodel: Any) -> dict[str, None]:
    """Const ops that must keep full precision: rotary tables and norm weights."""
    prog = mlmodel._mil_program
    names: dict[str, None] = {}
    if prog is None:
        return names
    for func in prog.functions.values():
        for op in func.operations:
            if op.op_type == "const" and any(k in op.name for k in ("rope", "norm")):
                names[op.name] = None
    return names


def quantize(mlmodel: Any, mode: str) -> Any:
    check_mode(mode)
    if mode == "none":
        return mlmodel
    import coremltools.optimize.coreml as cto

    if mode == "int8":
        op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
    elif mode == "int4":
        op = cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int4", granularity="per_block", block_size=32
        )
    else:
        op = cto.OpPalettizerConfig(nbits=4, mode="uniform", granularity="per_tensor")
    config = cto.OptimizationConfig(global_config=op, op_name_configs=_excluded_ops(mlmodel))
    if mode == "palettize4":
        return cto.palettize_weights(mlmodel, config)
    return cto.linear_quantize_weights(mlmodel, config)
