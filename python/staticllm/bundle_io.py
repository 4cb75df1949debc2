"""Writing bundles atomically: everything goes into a temporary sibling
directory that is renamed into place at the end, so an interrupted export or
import never leaves a half-written bundle."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from staticllm.errors import BundleError


def check_output_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise BundleError(f"output {out} already exists; pass overwrite=True (--overwrite) to replace it")


@contextlib.contextmanager
def staged_bundle(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yields a temporary directory; on success it replaces `out_dir`."""
    out = Path(out_dir).absolute()
    check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a bundle is an ordinary directory
    try:
        yield tmp
        backup = None
        if out.exists():
            backup = out.with_name(f".{out.name}.old-{tmp.name[-8:]}")
            out.rename(backup)
        tmp.rename(out)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def weights_sha256(bundle: Path) -> str | None:
    """SHA-256 of the bundle's weights/weight.bin (64 lowercase hex digits), which
    metadata.json records as "weights_sha256"; None when the package has no weight file."""
    from staticllm.package_spec import WEIGHTS_RELPATH

    weights = bundle / "model.mlpackage" / WEIGHTS_RELPATH
    if not weights.is_file():
        return None
    digest = hashlib.sha256()
    with weights.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_metadata(metadata: dict[str, Any], path: Path) -> None:
    """metadata.json goes through the C++ serde, which validates it."""
    try:
        from staticllm import _core  # type: ignore[attr-defined]
    except ImportError as exc:  # the native module is part of every install
        raise BundleError(f"staticllm._core cannot be imported ({exc}): reinstall staticllm") from exc
    _core.save_metadata(json.dumps(metadata), str(path))


def write_program_json(spec: Any, path: Path) -> None:
    from staticllm.package_spec import program_json

    path.write_text(json.dumps(program_json(spec)))
