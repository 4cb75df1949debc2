"""`staticllm inspect` (methods, specs, weight sharing) and `staticllm extract`
(one standalone .mlpackage per method)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from staticllm.bundle_io import read_metadata
from staticllm.bundle_layout import PACKAGE_WEIGHTS_DIR, bundle_paths
from staticllm.errors import BundleError, StaticLLMError
from staticllm.llm_section import LLMSpec
from staticllm.staging import ensure_present


def _blob_offsets(node: Any, out: set[int]) -> None:
    if isinstance(node, dict):
        blob = node.get("blobFileValue")
        if isinstance(blob, dict) and "offset" in blob:
            out.add(int(blob["offset"]))
        for v in node.values():
            _blob_offsets(v, out)
    elif isinstance(node, list):
        for v in node:
            _blob_offsets(v, out)


def weight_sharing(bundle: str | Path) -> dict[str, dict[str, int]]:
    """Per function: blobs it uses and how many of them other functions use too."""
    path = bundle_paths(bundle).program_json
    if not path.is_file():
        raise BundleError(f"{bundle}: no program.json (is this a staticllm bundle?)")
    program = json.loads(path.read_text())
    used: dict[str, set[int]] = {}
    for name, fn in program.get("functions", {}).items():
        used[name] = set()
        _blob_offsets(fn, used[name])
    report = {}
    for name, offsets in used.items():
        others = set().union(*(o for n, o in used.items() if n != name)) if len(used) > 1 else set()
        report[name] = {"blobs": len(offsets), "shared": len(offsets & others)}
    return report


def _fmt_specs(specs: list[dict[str, Any]]) -> list[str]:
    return [f"      {s['name']:<14} {s['dtype']:<6} {s['shape']}" for s in specs]


def _llm_line(meta: dict[str, Any], where: str) -> str:
    try:
        spec = LLMSpec.from_metadata(meta, where)
    except StaticLLMError as exc:  # inspect is for looking at broken bundles too
        return f"  llm: invalid ({exc})"
    pre, dec = spec.methods[spec.prefill_method], spec.methods[spec.decode_method]
    return (
        f"  llm: {spec.architecture}, vocab {spec.vocab_size}, max context {spec.max_context_len}, "
        f"{spec.dtype}, prefill {pre.name}[{pre.input_len}], decode {dec.name}[{dec.input_len}], "
        f"tokenizer {spec.tokenizer}"
    )


def inspect_text(bundle: str | Path) -> str:
    ensure_present(bundle)
    paths = bundle_paths(bundle)
    meta = read_metadata(paths.metadata)
    sharing = weight_sharing(bundle)
    weights = paths.weights
    lines = [
        f"bundle {paths.root}",
        f"  identifier: {meta['identifier']}",
        f"  multifunction: {meta['multifunction']}  default method: {meta['default_method']}",
        f"  weight.bin: {weights.stat().st_size if weights.is_file() else 0:,} bytes",
    ]
    for m in meta["methods"]:
        s = sharing.get(m["function_name"], {"blobs": 0, "shared": 0})
        lines.append(
            f"  method {m['name']} (function {m['function_name']}): {s['blobs']} weight blobs, "
            f"{s['shared']} shared with other functions"
        )
        for key in ("inputs", "outputs", "states"):
            if m.get(key):
                lines.append(f"    {key}:")
                lines += _fmt_specs(m[key])
    if "llm" in meta:
        lines.append(_llm_line(meta, str(paths.metadata)))
    return "\n".join(lines)


def extract(bundle: str | Path, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """Writes OUT_DIR/<method>.mlpackage for every method, each a
    single-function package loadable by coremltools."""
    import coremltools as ct

    from staticllm.package_spec import load_spec, single_function_spec

    ensure_present(bundle)
    paths = bundle_paths(bundle)
    meta = read_metadata(paths.metadata)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = load_spec(paths.mlpackage) if meta["multifunction"] else None
    written = []
    for m in meta["methods"]:
        dest = out / f"{m['name']}.mlpackage"
        if dest.exists():
            if not overwrite:
                raise BundleError(f"{dest} exists; pass --overwrite to replace it")
            shutil.rmtree(dest)
        if spec is None:
            shutil.copytree(paths.mlpackage, dest)
        else:
            one = single_function_spec(spec, m["function_name"], str(paths.mlpackage))
            weights_dir = str(paths.mlpackage / PACKAGE_WEIGHTS_DIR)
            ct.models.MLModel(one, weights_dir=weights_dir, skip_model_load=True).save(str(dest))
        written.append(dest)
    return written


def _run_inspect(args: argparse.Namespace) -> int:
    print(inspect_text(args.bundle))
    if args.verify:
        from staticllm.runtime import verify_weights

        verify_weights(args.bundle)  # BundleError (exit 2) when it differs
        print("  weight.bin: SHA-256 matches metadata.json")
    return 0


def _run_extract(args: argparse.Namespace) -> int:
    for p in extract(args.bundle, args.out_dir, args.overwrite):
        print(f"wrote {p}")
    return 0


def register(subparsers: argparse._SubParsersAction, name: str) -> None:
    if name == "inspect":
        p = subparsers.add_parser(
            name,
            help="show a bundle's methods, specs and weight sharing",
            description="Print every method with its inputs, outputs and states, the size of "
            "weight.bin, and how many weight blobs each function uses and shares.",
        )
        p.add_argument("bundle")
        p.add_argument(
            "--verify",
            action="store_true",
            help="check weight.bin against the SHA-256 recorded at export (exit 2 if it differs)",
        )
        p.set_defaults(func=_run_inspect)
    else:
        p = subparsers.add_parser(
            name,
            help="write one standalone .mlpackage per method",
            description="Write OUT_DIR/<method>.mlpackage for every method, each a "
            "single-function Core ML package.",
        )
        p.add_argument("bundle")
        p.add_argument("out_dir")
        p.add_argument("--overwrite", action="store_true")
        p.set_defaults(func=_run_extract)
