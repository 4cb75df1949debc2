"""Export a checkpoint of a supported family (exporter/models/) to a staticllm bundle.

staticllm.export("out", hf_dir="ckpt", input_len=32, max_context_len=1024, multifunction=True)
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from staticllm.errors import ExportError

if TYPE_CHECKING:
    from staticllm.exporter.quantize import QuantPlan

__all__ = ["export"]

DTYPES = ("fp16", "fp32")


def _validate(sources: dict[str, Any], input_len: int, max_context_len: int, dtype: str) -> str:
    given = [k for k, v in sources.items() if v]
    if len(given) != 1:
        raise ExportError("give exactly one checkpoint: checkpoint (+ params), hf_dir or gguf")
    if input_len < 1:
        raise ExportError(f"input_len must be at least 1, got {input_len}")
    if input_len > max_context_len:
        raise ExportError(f"input_len ({input_len}) must not exceed max_context_len ({max_context_len})")
    if dtype not in DTYPES:
        raise ExportError(f"unknown dtype {dtype!r}; choose fp16 or fp32")
    return given[0]


def _load(source: str, checkpoint: Any, params: Any, hf_dir: Any, gguf: Any) -> Any:
    from staticllm.exporter import checkpoints

    if source == "checkpoint":
        return checkpoints.load_meta(checkpoint, params)
    if source == "hf_dir":
        return checkpoints.load_hf(hf_dir)
    return checkpoints.load_gguf(gguf)


def build_model(ckpt: Any, max_context_len: int) -> Any:
    """The family's static-shape torch model holding the checkpoint's weights."""
    from staticllm.exporter import models
    from staticllm.exporter.support import check_context

    where = ckpt.where or ckpt.source
    check_context(ckpt.config, max_context_len, where)
    model = models.build(ckpt.config, max_context_len)
    models.load_weights(model, ckpt.state_dict, where)
    # Weights never need gradients; this keeps autograd out of tracing without
    # touching the caller's global grad mode.
    model.eval().requires_grad_(False)
    return model


def export(
    output: str | Path,
    *,
    checkpoint: str | Path | None = None,
    params: str | Path | None = None,
    hf_dir: str | Path | None = None,
    gguf: str | Path | None = None,
    input_len: int = 32,
    max_context_len: int = 1024,
    multifunction: bool = False,
    dtype: str = "fp16",
    quantize: str | QuantPlan = "none",
    tokenizer: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    group_size: int | None = None,
    block_size: int | None = None,
    quantize_embeddings: str | None = None,
    quantize_head: str | None = None,
    quantize_config: str | Path | None = None,
    calibration_text: str | Path | None = None,
    min_snr: float | None = None,
    force: bool = False,
    target: str = "generic",
    ane_max_dim: int | None = None,
    head: str | None = None,
    topk: int | None = None,
) -> Path:
    """Export a checkpoint to a bundle directory and return its path.

    Single-method bundles hold `forward` (input_len tokens, full logits);
    multifunction bundles hold `prefill` (input_len tokens, last-token logits)
    and `decode` (one token) sharing one copy of the weights.

    Quantization (see staticllm.exporter.quantize): `quantize` is the body's
    mode (none, int8, int4, palettize4, palettize6) or a QuantPlan;
    `group_size` / `block_size` its option; `quantize_embeddings` /
    `quantize_head` override it for those tensors; `quantize_config` is a
    JSON/YAML file of per-layer rules. A quantized or fp16 export is checked
    against the fp32 torch model on a calibration text (the quality gate,
    staticllm.exporter.quality_gate): below `min_snr` dB it raises ExportError
    and writes nothing, unless `force`.

    `target` (staticllm.exporter.targets): "generic", or "ane" for a graph
    shaped by the Neural Engine rules, with the LM head and embeddings in
    chunks of at most `ane_max_dim` rows and `head` "logits", "argmax" or
    "topk" (with `topk` candidates per chunk). An ane export runs
    `staticllm check` on the package it wrote and raises ExportError, writing
    nothing, on any error. A head without logits skips the quality gate.
    """
    from tqdm.auto import tqdm

    from staticllm.bundle_layout import bundle_paths
    from staticllm.exporter import quality_gate
    from staticllm.exporter.convert import FunctionSpec, quiet_coremltools
    from staticllm.exporter.models import fit_fp16
    from staticllm.exporter.parallel import convert_functions
    from staticllm.exporter.quantize import (
        PALETTE_BITS,
        make_plan,
        quantizable_weights,
        quantize_all,
        resolve,
    )
    from staticllm.exporter.quantize_importance import input_importance
    from staticllm.exporter.targets import make_target
    from staticllm.staging import check_output_dir, fault_point, staged_bundle

    source = _validate(
        {"checkpoint": checkpoint, "hf_dir": hf_dir, "gguf": gguf}, input_len, max_context_len, dtype
    )
    tgt = make_target(target, ane_max_dim, head, topk)
    plan = make_plan(
        quantize,
        group_size=group_size,
        block_size=block_size,
        embeddings=quantize_embeddings,
        lm_head=quantize_head,
        config=quantize_config,
    )
    _check_target_options(tgt, dtype, plan)
    gate = quality_gate.Gate.for_export(plan, dtype, calibration_text, min_snr, force, tgt.head == "logits")
    out = Path(output)
    check_output_dir(out, overwrite)  # fail before minutes of work
    if multifunction:
        functions = [FunctionSpec("prefill", input_len, "last"), FunctionSpec("decode", 1, "last")]
    else:
        functions = [FunctionSpec("forward", input_len, "full")]
    # (progress label while running, fault_point name once done)
    stages: list[tuple[str, str | None]] = [
        ("load checkpoint", "loaded"),
        *[(f"convert {f.name}", f"converted:{f.name}") for f in functions],
        ("quantize", None),
        ("write package", "packaged"),
        *([("check Neural Engine rules", None)] if tgt.check_target else []),
        ("write bundle", None),  # staged_bundle's own fault points follow
        ("check quality", None),
    ]
    bar = tqdm(total=len(stages), desc="export", disable=not progress, unit="stage")
    bar.set_postfix_str(stages[0][0])
    finished = 0  # stages done (a disabled bar does not count)

    def done() -> None:
        nonlocal finished
        _, fault = stages[finished]
        finished += 1
        bar.update()
        if finished < len(stages):
            bar.set_postfix_str(stages[finished][0])
        if fault is not None:
            fault_point(fault)

    try:
        ckpt = _load(source, checkpoint, params, hf_dir, gguf)
        model = build_model(ckpt, max_context_len)
        model.set_target(tgt)
        residual_scale = fit_fp16(model, _special_tokens(ckpt)[0]) if dtype == "fp16" else 1.0
        resolved = resolve(plan, quantizable_weights(model), dtype)
        done()
        with staged_bundle(out, overwrite) as staging, tempfile.TemporaryDirectory() as work:
            tokenizer_files = _copy_tokenizer(staging, ckpt, tokenizer)
            calibration = importance = None
            if gate.active:  # the gate's text also weighs the palettes' k-means
                calibration = gate.calibration(
                    _open_tokenizer(staging, tokenizer_files), ckpt.config.vocab_size, max_context_len
                )
                if any(spec.mode in PALETTE_BITS for _, spec in resolved.values()):
                    importance = input_importance(model, calibration.ids)
            with quiet_coremltools():
                packages = convert_functions(model, functions, dtype, Path(work), on_done=done)
                packages = quantize_all(packages, resolved, progress, importance)
                done()
                _write_package(packages, functions, bundle_paths(staging).mlpackage)
            done()
            if tgt.check_target:
                _check_package(bundle_paths(staging).mlpackage, tgt.check_target)
                done()
            _write_bundle(
                staging,
                ckpt,
                model,
                functions,
                max_context_len=max_context_len,
                dtype=dtype,
                quantize=plan.default.mode,
                quantization=plan.to_dict(),
                source=source,
                tokenizer_files=tokenizer_files,
                residual_scale=residual_scale,
            )
            done()
            if calibration is not None:
                gate.run(staging, model, calibration, progress)
            done()
    finally:
        bar.close()
    return out


def _check_target_options(tgt: Any, dtype: str, plan: Any) -> None:
    if tgt.name == "generic":
        return
    if dtype != "fp16":
        raise ExportError(
            f"target {tgt.name} computes in fp16 (the Neural Engine's type); dtype {dtype} is refused"
        )
    if not plan.is_none:
        raise ExportError(
            f"quantization is not implemented for target {tgt.name} yet (its weights are conv kernels and "
            f"chunks, which the quantization plan does not name); export with quantize none"
        )


def _check_package(package: Path, check_target: str) -> None:
    """The Neural Engine check of what an ane export wrote: an error fails the export."""
    from staticllm.check import check_package, error_summary, has_errors
    from staticllm.check.rules import TARGETS

    findings = check_package(package, check_target)
    if has_errors(findings):
        raise ExportError(
            f"the exported package breaks the Neural Engine rules, so nothing was written:\n"
            f"{error_summary(findings, TARGETS[check_target])}"
        )


def _write_package(models: list[Any], functions: list[Any], dest: Path) -> None:
    from staticllm.exporter.multifunction import merge_functions

    if len(models) == 1:
        models[0].save(str(dest))
        return
    merge_functions({fn.name: m for m, fn in zip(models, functions)}, functions[-1].name, dest)


def _copy_tokenizer(staging: Path, ckpt: Any, tokenizer: str | Path | None) -> tuple[str | None, str | None]:
    """Returns the bundle names of (tokenizer file, tokenizer_config file)."""
    tok_name = cfg_name = None
    if tokenizer is not None:
        src = Path(tokenizer)
        if not src.is_file():
            raise ExportError(f"tokenizer file not found: {src}")
        tok_name = "tokenizer.json" if src.suffix == ".json" else "tokenizer.model"
        shutil.copyfile(src, staging / tok_name)
        side = src.parent / "tokenizer_config.json"
        if side.is_file():
            shutil.copyfile(side, staging / "tokenizer_config.json")
            cfg_name = "tokenizer_config.json"
        return tok_name, cfg_name
    for name, src in ckpt.tokenizer_files.items():
        shutil.copyfile(src, staging / name)
        if name == "tokenizer_config.json":
            cfg_name = name
        elif tok_name is None or name == "tokenizer.json":
            tok_name = name
    if ckpt.tokenizer_json is not None:
        (staging / "tokenizer.json").write_text(ckpt.tokenizer_json)
        tok_name = "tokenizer.json"
    if ckpt.tokenizer_config is not None:
        (staging / "tokenizer_config.json").write_text(json.dumps(ckpt.tokenizer_config, indent=2))
        cfg_name = "tokenizer_config.json"
    return tok_name, cfg_name


def _open_tokenizer(staging: Path, files: tuple[str | None, str | None]) -> Any:
    """The bundle's tokenizer from the files copied into staging, or None."""
    from staticllm.tokenizers import load_tokenizer

    tok_name, cfg_name = files
    if tok_name is None:
        return None
    return load_tokenizer(staging / tok_name, None if cfg_name is None else staging / cfg_name)


def _special_tokens(ckpt: Any) -> tuple[int | None, tuple[int, ...], int | None]:
    """(bos, eos ids, pad) from the checkpoint."""
    special = ckpt.special_tokens
    eos = special.get("eos")
    eos_ids = () if eos is None else ((eos,) if isinstance(eos, int) else tuple(eos))
    return special.get("bos"), eos_ids, special.get("pad")


def _target_record(tgt: Any) -> dict[str, Any] | None:
    """export_options keys naming the target (none for the generic one)."""
    from staticllm.llm_section import target_record

    if tgt.name == "generic":
        return None
    return target_record(tgt.name, tgt.max_dim, tgt.head, tgt.head_k, tgt.check_target)


def _write_bundle(
    staging: Path,
    ckpt: Any,
    model: Any,
    functions: list[Any],
    *,
    max_context_len: int,
    dtype: str,
    quantize: str,
    quantization: dict[str, Any],
    source: str,
    tokenizer_files: tuple[str | None, str | None],
    residual_scale: float = 1.0,
) -> None:
    from staticllm.bundle_io import write_bundle_metadata, write_program_json
    from staticllm.bundle_layout import MLPACKAGE, bundle_paths
    from staticllm.llm_section import LLMSpec, MethodInfo, export_options_record
    from staticllm.package_spec import function_descriptions, load_spec

    paths = bundle_paths(staging)
    spec = load_spec(paths.mlpackage)
    write_program_json(spec, paths.program_json)
    methods, default, multi = function_descriptions(spec, MLPACKAGE)
    if not multi:
        methods[0]["name"] = "forward"
        default = "forward"
    tok_name, cfg_name = tokenizer_files
    cfg = ckpt.config
    bos, eos, pad = _special_tokens(ckpt)
    llm = LLMSpec(
        architecture=cfg.architecture,
        vocab_size=cfg.vocab_size,
        max_context_len=max_context_len,
        groups=model.groups,
        dtype=dtype,
        n_layers=cfg.n_layers,
        n_kv_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim,
        io=model.graph_io(),
        methods={f.name: MethodInfo(f.name, f.seq_len, f.logits) for f in functions},
        prefill_method="prefill" if multi else "forward",
        decode_method="decode" if multi else "forward",
        bos=bos,
        eos=eos,
        pad=pad,
        tokenizer=tok_name,
        tokenizer_config=cfg_name,
        mask_value=model.target.mask_value,
    )
    metadata = {
        "format_version": 1,
        "identifier": f"staticllm-{cfg.architecture}-{cfg.n_layers}l-{cfg.dim}d-{dtype}",
        "multifunction": multi,
        "default_method": default,
        "methods": methods,
        "llm": llm.to_section(
            model=cfg.to_dict(),
            export_options=export_options_record(
                quantize, quantization, source, residual_scale, _target_record(model.target)
            ),
        ),
    }
    write_bundle_metadata(metadata, staging)
