"""`staticllm import`: turn any Core ML ML Program package, single or
multifunction, into a runnable bundle (metadata.json from the package's own
function descriptions, program.json, the package itself)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from staticllm.bundle_io import staged_bundle, weights_sha256, write_metadata, write_program_json
from staticllm.errors import BundleError
from staticllm.package_spec import function_descriptions, load_spec


def import_mlpackage(package: str | Path, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Copy `package` into a new bundle at `out_dir` and describe it.

    Methods are named after the package's functions; a single-function
    package has one method, "main".
    """
    pkg = Path(package)
    if not pkg.is_dir():
        raise BundleError(f"{pkg}: not found (expected a .mlpackage directory)")
    spec = load_spec(pkg)
    methods, default, multi = function_descriptions(spec, str(pkg))
    out = Path(out_dir)
    with staged_bundle(out, overwrite) as staging:
        shutil.copytree(pkg, staging / "model.mlpackage")
        write_program_json(spec, staging / "program.json")
        metadata = {
            "format_version": 1,
            "identifier": pkg.stem,
            "multifunction": multi,
            "default_method": default,
            "methods": methods,
        }
        digest = weights_sha256(staging)
        if digest is not None:
            metadata["weights_sha256"] = digest
        write_metadata(metadata, staging / "metadata.json")
    return out


def _run(args: argparse.Namespace) -> int:
    out = import_mlpackage(args.package, args.out_dir, overwrite=args.overwrite)
    meta = json.loads((out / "metadata.json").read_text())
    names = ", ".join(m["name"] for m in meta["methods"])
    print(f"imported {args.package} -> {out} (methods: {names}; default: {meta['default_method']})")
    return 0


def register(subparsers: argparse._SubParsersAction, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="turn a Core ML .mlpackage into a runnable bundle",
        description="Copy a Core ML ML Program package (single or multifunction) into a staticllm bundle "
        "that staticllm.Runtime can run on any platform.",
    )
    p.add_argument("package", help="path to the .mlpackage")
    p.add_argument("out_dir", help="bundle directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    p.set_defaults(func=_run)
