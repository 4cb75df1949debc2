"""A directory's content as one hash, to tell a complete old bundle from a new one."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_digest(path: Path) -> str | None:
    """sha256 over every relative path and file content; None if absent."""
    if not path.exists():
        return None
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()
