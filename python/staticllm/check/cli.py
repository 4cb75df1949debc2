"""`staticllm check PATH [--target ane-aNN] [--json]`: the Neural Engine check
of a staticllm bundle or any Core ML .mlpackage. Exit 1 if it finds an error,
0 otherwise; bad input (not a bundle or package, unknown target) exits 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from staticllm.check.ane import check_package, has_errors, resolve_target
from staticllm.check.report import report_json, report_text
from staticllm.check.rules import DEFAULT_TARGET, TARGETS
from staticllm.staging import ensure_present


def resolve_package(path: str | Path) -> tuple[Path, str]:
    """(the .mlpackage to check, "bundle" or "package") for a bundle or package path."""
    from staticllm.bundle_layout import bundle_paths
    from staticllm.errors import BundleError

    p = Path(path)
    ensure_present(p)
    if not p.exists():
        raise BundleError(f"{p}: no such file or directory")
    if not p.is_dir():
        raise BundleError(f"{p} is a file; give a staticllm bundle directory or a .mlpackage directory")
    if (p / "Manifest.json").is_file():
        return p, "package"
    paths = bundle_paths(p)
    if paths.metadata.is_file():
        if not (paths.mlpackage / "Manifest.json").is_file():
            raise BundleError(f"{p}: bundle has no {paths.mlpackage.name}/Manifest.json")
        return paths.mlpackage, "bundle"
    raise BundleError(
        f"{p} is neither a staticllm bundle (no metadata.json) nor a Core ML package (no Manifest.json)"
    )


def _run(args: argparse.Namespace) -> int:
    target = resolve_target(args.target)
    package, kind = resolve_package(args.path)
    findings = check_package(package, target)
    if args.json:
        json.dump(report_json(str(args.path), kind, target, findings), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report_text(str(args.path), kind, target, findings, 0 if args.all else args.limit))
    return 1 if has_errors(findings) else 0


def register(subparsers: argparse._SubParsersAction, name: str) -> None:
    chips = ", ".join(f"{t.name} ({t.chip}, dims up to {t.max_dim:,})" for t in TARGETS.values())
    p = subparsers.add_parser(
        name,
        help="report what would fall off (or break on) the Apple Neural Engine",
        description="Statically check a staticllm bundle or any Core ML .mlpackage against the "
        "Neural Engine rules (fp16 only, rank <= 5, dimension limits, static shapes, finite "
        "constants, ...), each finding with its function, op, rule and source. Exit status: "
        "1 if any error is found, 0 otherwise, 2 on bad input. Placement is Core ML's decision "
        "on the device; MLComputePlan on a Mac is the final word.",
        epilog=f"targets: {chips}",
    )
    p.add_argument("path", help="bundle directory or .mlpackage")
    p.add_argument(
        "--target",
        choices=list(TARGETS),
        default=DEFAULT_TARGET,
        help="chip whose limits apply (default: %(default)s, the strictest)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON document instead of the report")
    p.add_argument(
        "--limit",
        type=int,
        default=8,
        help="findings listed per rule and function, 0 for all (default: %(default)s)",
    )
    p.add_argument("--all", action="store_true", help="list every finding")
    p.set_defaults(func=_run)
