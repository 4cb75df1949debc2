"""`staticllm import`: turn any Core ML ML Program package, single or
multifunction, into a runnable bundle (metadata.json from the package's own
function descriptions, program.json, the package itself)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from staticllm.bundle_io import write_bundle_metadata, write_program_json
from staticllm.bundle_layout import bundle_paths
from staticllm.errors import BundleError
from staticllm.package_spec import function_descriptions, load_spec
from staticllm.staging import staged_bundle


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
        paths = bundle_paths(staging)
        shutil.copytree(pkg, paths.mlpackage)
        write_program_json(spec, paths.program_json)
        metadata = {
            "format_version": 1,
            "identifier": pkg.stem,
            "multifunction": multi,
            "default_method": default,
            "methods": methods,
        }
        write_bundle_metadata(metadata, staging)
    return out


def _run(args: argparse.Namespace) -> int:
    out = import_mlpackage(args.package, args.out_dir, overwrite=args.overwrite)
    meta = json.loads(bundle_paths(out).metadata.read_text())
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
