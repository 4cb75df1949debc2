"""Reading and writing a bundle's metadata.json and program.json (staging.py
makes the whole bundle appear at once)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from staticllm.bundle_layout import bundle_paths
from staticllm.errors import BundleError


def _native() -> Any:
    try:
        from staticllm import _core  # type: ignore[attr-defined]
    except ImportError as exc:  # the native module is part of every install
        raise BundleError(f"staticllm._core cannot be imported ({exc}): reinstall staticllm") from exc
    return _core


def weights_sha256(bundle: Path) -> str | None:
    """SHA-256 of the package's weight.bin (64 lowercase hex digits), which metadata.json
    records as "weights_sha256"; None when the package has no weight file."""
    weights = bundle_paths(bundle).weights
    if not weights.is_file():
        return None
    digest = hashlib.sha256()
    with weights.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_metadata(metadata: dict[str, Any], path: Path) -> None:
    """metadata.json goes through the C++ serde, which validates it."""
    _native().save_metadata(json.dumps(metadata), str(path))


def write_bundle_metadata(metadata: dict[str, Any], bundle: Path) -> None:
    """The bundle's metadata.json, with the digest of its weights (export and import)."""
    digest = weights_sha256(bundle)
    if digest is not None:
        metadata = {**metadata, "weights_sha256": digest}
    write_metadata(metadata, bundle_paths(bundle).metadata)


def read_metadata(path: Path) -> dict[str, Any]:
    """metadata.json read and validated by the C++ serde, as Runtime.load does."""
    return json.loads(_native().load_metadata(str(path)))


def write_program_json(spec: Any, path: Path) -> None:
    from staticllm.package_spec import program_json

    path.write_text(json.dumps(program_json(spec)))
