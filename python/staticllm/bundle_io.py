"""Reading and writing a bundle's metadata.json and program.json (staging.py
makes the whole bundle appear at once)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from staticllm.errors import BundleError


def _native() -> Any:
    try:
        from staticllm import _core  # type: ignore[attr-defined]
    except ImportError as exc:  # the native module is part of every install
        raise BundleError(f"staticllm._core cannot be imported ({exc}): reinstall staticllm") from exc
    return _core


def write_metadata(metadata: dict[str, Any], path: Path) -> None:
    """metadata.json goes through the C++ serde, which validates it."""
    _native().save_metadata(json.dumps(metadata), str(path))


def read_metadata(path: Path) -> dict[str, Any]:
    """metadata.json read and validated by the C++ serde, as Runtime.load does."""
    return json.loads(_native().load_metadata(str(path)))


def write_program_json(spec: Any, path: Path) -> None:
    from staticllm.package_spec import program_json

    path.write_text(json.dumps(program_json(spec)))
