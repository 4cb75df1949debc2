"""Export a Llama-family checkpoint to a staticllm bundle.

staticllm.export("out", hf_dir="ckpt", input_len=32, max_context_len=1024, multifunction=True)
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from staticllm.errors import ExportError

__all__ = ["export"]

DTYPES = ("fp16", "fp32")


def _validate(
    sources: dict[str, Any], input_len: int, max_context_len: int, dtype: str, quantize: str
) -> str:
    from staticllm.exporter.quantize import check_mode

    given = [k for k, v in sources.items() if v]
    if len(given) != 1:
        raise ExportError("give exactly one checkpoint: checkpoint (+ params), hf_dir or gguf")
    if input_len < 1:
        raise ExportError(f"input_len must be at least 1, got {input_len}")
    if input_len > max_context_len:
        raise ExportError(f"input_len ({input_len}) must not exceed max_context_len ({max_context_len})")
    if dtype not in DTYPES:
        raise ExportError(f"unknown dtype {dtype!r}; choose fp16 or fp32")
    check_mode(quantize)
    return given[0]


def _load(source: str, checkpoint: Any, params: Any, hf_dir: Any, gguf: Any) -> Any:
    from staticllm.exporter import checkpoints

    if source == "checkpoint":
        return checkpoints.load_meta(checkpoint, params)
    if source == "hf_dir":
        return checkpoints.load_hf(hf_dir)
    return checkpoints.load_gguf(gguf)


def build_model(ckpt: Any, max_context_len: int) -> Any:
    from staticllm.exporter.model import Llama

    model = Llama(ckpt.config, max_context_len)
    missing, unexpected = model.load_state_dict(ckpt.state_dict, strict=False)
    missing = [m for m in missing if not (m == "output.weight" and ckpt.config.tied_embeddings)]
    if missing or unexpected:
        raise ExportError(
            f"checkpoint does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
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
    quantize: str = "none",
    tokenizer: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Export a checkpoint to a bundle directory and return its path.

    Single-method bundles hold `forward` (input_len tokens, full logits);
    multifunction bundles hold `prefill` (input_len tokens, last-token logits)
    and `decode` (one token) sharing one copy of the weights.
    """
    from tqdm.auto import tqdm

    from staticllm.bundle_io import check_output_dir, staged_bundle
    from staticllm.exporter.convert import FunctionSpec, quiet_coremltools
    from staticllm.exporter.parallel import convert_functions

    source = _validate(
        {"checkpoint": checkpoint, "hf_dir": hf_dir, "gguf": gguf},
        input_len,
        max_context_len,
        dtype,
        quantize,
    )
    out = Path(output)
    check_output_dir(out, overwrite)  # fail before minutes of work
    if multifunction:
        functions = [FunctionSpec("prefill", input_len, "last"), FunctionSpec("decode", 1, "last")]
    else:
        functions = [FunctionSpec("forward", input_len, "full")]
    stages = ["load checkpoint", *[f"convert {f.name}" for f in functions], "write package", "write bundle"]
    bar = tqdm(total=len(stages), desc="export", disable=not progress, unit="stage")

    def stage(i: int) -> None:
        bar.set_postfix_str(stages[i])

    try:
        stage(0)
        ckpt = _load(source, checkpoint, params, hf_dir, gguf)
        model = build_model(ckpt, max_context_len)
        bar.update()
        with (
            staged_bundle(out, overwrite) as staging,
            tempfile.TemporaryDirectory(prefix="staticllm-") as work,
        ):
            stage(1)
            with quiet_coremltools():
                packages = convert_functions(
                    model, functions, max_context_len, dtype, quantize, Path(work), on_done=bar.update
                )
            stage(len(functions) + 1)
            with quiet_coremltools():
                _write_package(packages, functions, staging / "model.mlpackage")
            bar.update()
            stage(len(functions) + 2)
            _write_bundle(
                staging,
                ckpt,
                functions,
                dict(
                    input_len=input_len,
                    max_context_len=max_context_len,
                    multifunction=multifunction,
                    dtype=dtype,
                    quantize=quantize,
                    source=source,
                ),
                tokenizer,
            )
            bar.update()
    finally:
        bar.close()
    return out


def _convert_one(model: Any, fn: Any, cache_len: int, dtype: str, mode: str) -> Any:
    from staticllm.exporter.convert import convert_function
    from staticllm.exporter.quantize import quantize

    return quantize(convert_function(model, fn, cache_len, dtype), mode)


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


def _special_tokens(ckpt: Any, staging: Path, cfg_name: str | None) -> dict[str, Any]:
    special = dict(ckpt.special_tokens)
    eos = special.get("eos")
    special["eos"] = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    special.setdefault("bos", None)
    special.setdefault("pad", None)
    return special


def _write_bundle(
    staging: Path, ckpt: Any, functions: list[Any], options: dict[str, Any], tokenizer: str | Path | None
) -> None:
    from staticllm.bundle_io import weights_sha256, write_metadata, write_program_json
    from staticllm.package_spec import function_descriptions, load_spec

    spec = load_spec(staging / "model.mlpackage")
    write_program_json(spec, staging / "program.json")
    methods, default, multi = function_descriptions(spec, "model.mlpackage")
    if not multi:
        methods[0]["name"] = "forward"
        default = "forward"
    tok_name, cfg_name = _copy_tokenizer(staging, ckpt, tokenizer)
    cfg = ckpt.config
    n = cfg.n_layers
    cache_in = [f"{kv}_cache_{i}" for i in range(n) for kv in ("k", "v")]
    cache_out = output_names_from(n)
    by_name = {f.name: f for f in functions}
    prefill = "prefill" if multi else "forward"
    decode = "decode" if multi else "forward"
    llm = {
        "format": 1,
        "architecture": "llama",
        "vocab_size": cfg.vocab_size,
        "max_context_len": options["max_context_len"],
        "cache_len": options["max_context_len"],
        "dtype": options["dtype"],
        "cache": {
            "layout": "batch_heads_seq_dim",
            "n_layers": n,
            "n_kv_heads": cfg.n_kv_heads,
            "head_dim": cfg.head_dim,
            "inputs": cache_in,
            "outputs": cache_out,
        },
        "io": {
            "tokens": "tokens",
            "input_pos": "input_pos",
            "attn_mask": "attn_mask",
            "last_index": "last_index",
            "logits": "logits",
        },
        "methods": {name: {"input_len": f.seq_len, "logits": f.logits} for name, f in by_name.items()},
        "prefill_method": prefill,
        "decode_method": decode,
        "prefill_input_len": by_name[prefill].seq_len,
        "decode_input_len": by_name[decode].seq_len,
        "special_tokens": _special_tokens(ckpt, staging, cfg_name),
        "model": cfg.to_dict(),
        "export_options": options,
    }
    if tok_name:
        llm["tokenizer"] = tok_name
    if cfg_name:
        llm["tokenizer_config"] = cfg_name
    metadata = {
        "format_version": 1,
        "identifier": f"staticllm-llama-{cfg.n_layers}l-{cfg.dim}d-{options['dtype']}",
        "multifunction": multi,
        "default_method": default,
        "methods": methods,
        "llm": llm,
    }
    digest = weights_sha256(staging)
    if digest is not None:
        metadata["weights_sha256"] = digest
    write_metadata(metadata, staging / "metadata.json")


def output_names_from(n_layers: int) -> list[str]:
    return [f"{kv}_out_{i}" for i in range(n_layers) for kv in ("k", "v")]
