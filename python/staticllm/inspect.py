"""`staticllm inspect` (methods, specs, weight sharing) and `staticllm extract`
(one standalone .mlpackage per method)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from staticllm.errors import BundleError
from staticllm.package_spec import WEIGHTS_RELPATH


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
    path = Path(bundle) / "program.json"
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


def inspect_text(bundle: str | Path) -> str:
    from staticllm.runtime import _core

    b = Path(bundle)
    meta = json.loads(_core.load_metadata(str(b / "metadata.json")))
    weights = b / "model.mlpackage" / WEIGHTS_RELPATH
    sharing = weight_sharing(b)
    lines = [
        f"bundle {b}",
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
    llm = meta.get("llm")
    if llm:
        lines.append(
            f"  llm: vocab {llm['vocab_size']}, max context {llm['max_context_len']}, "
            f"prefill {llm['prefill_method']}[{llm['prefill_input_len']}], "
            f"decode {llm['decode_method']}[{llm['decode_input_len']}], tokenizer {llm.get('tokenizer')}"
        )
    return "\n".join(lines)


def extract(bundle: str | Path, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """Writes OUT_DIR/<method>.mlpackage for every method, each a
    single-function package loadable by coremltools."""
    import coremltools as ct

    from staticllm.package_spec import load_spec

    b = Path(bundle)
    meta = json.loads((b / "metadata.json").read_text())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pkg = b / "model.mlpackage"
    written = []
    for m in meta["methods"]:
        dest = out / f"{m['name']}.mlpackage"
        if dest.exists():
            if not overwrite:
                raise BundleError(f"{dest} exists; pass --overwrite to replace it")
            shutil.rmtree(dest)
        if not meta["multifunction"]:
            shutil.copytree(pkg, dest)
        else:
            spec = load_spec(pkg)
            fn = next(f for f in spec.description.functions if f.name == m["function_name"])
            d = spec.description
            for field, src in (("input", fn.input), ("output", fn.output), ("state", fn.state)):
                d.ClearField(field)
                getattr(d, field).extend(src)
            d.ClearField("functions")
            d.defaultFunctionName = ""
            body = spec.mlProgram.functions[m["function_name"]]
            kept = type(body)()
            kept.CopyFrom(body)
            for name in list(spec.mlProgram.functions.keys()):
                del spec.mlProgram.functions[name]
            spec.mlProgram.functions["main"].CopyFrom(kept)
            model = ct.models.MLModel(
                spec, weights_dir=str(pkg / WEIGHTS_RELPATH.parent), skip_model_load=True
            )
            model.save(str(dest))
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
