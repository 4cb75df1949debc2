"""Where each file lives in a bundle directory.

The one Python statement of the layout the C++ loader reads through
`bundle_paths` (runtime/bundle.cpp); tests/python/test_bundle_layout.py checks
that the two agree. Export, import, inspect, extract and the parallel
converter take every name from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

METADATA = "metadata.json"
PROGRAM_JSON = "program.json"
MLPACKAGE = "model.mlpackage"

# Inside any Core ML package (the bundle's or a standalone one): the weights
# directory the ML Program's blob references resolve against, and its file.
PACKAGE_WEIGHTS_DIR = "Data/com.apple.CoreML/weights"
PACKAGE_WEIGHTS = f"{PACKAGE_WEIGHTS_DIR}/weight.bin"


@dataclass(frozen=True)
class BundlePaths:
    root: Path

    @property
    def metadata(self) -> Path:
        return self.root / METADATA

    @property
    def program_json(self) -> Path:
        return self.root / PROGRAM_JSON

    @property
    def mlpackage(self) -> Path:
        return self.root / MLPACKAGE

    @property
    def weights(self) -> Path:
        return self.mlpackage / PACKAGE_WEIGHTS


def bundle_paths(root: str | Path) -> BundlePaths:
    return BundlePaths(Path(root))
