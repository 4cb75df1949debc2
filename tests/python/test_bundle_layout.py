"""The Python bundle layout (staticllm.bundle_layout) names the same files as
the C++ loader's bundle_paths (runtime/bundle.cpp), read from its source."""

from __future__ import annotations

import re
from pathlib import Path

from staticllm.bundle_layout import bundle_paths

BUNDLE_CPP = Path(__file__).resolve().parents[2] / "runtime" / "bundle.cpp"


def cpp_bundle_paths(root: str) -> dict[str, str]:
    """Evaluates the assignments of bundle_paths(root) in runtime/bundle.cpp:
    `p.<field> = <root | p.<field>> + "<suffix>";`."""
    text = BUNDLE_CPP.read_text()
    body = text[text.index("BundlePaths bundle_paths(") :]
    body = body[: body.index("return p;")]
    values = {"root": root}
    assignments = re.findall(r'p\.(\w+)\s*=\s*(root|p\.\w+)\s*\+\s*"([^"]*)"\s*;', body)
    for field, base, suffix in assignments:
        values[field] = values[base.removeprefix("p.")] + suffix
    return values


def test_python_layout_matches_cpp_bundle_paths():
    cpp = cpp_bundle_paths("/b")
    assert set(cpp) == {"root", "metadata", "mlpackage", "program_json", "weights"}, cpp
    py = bundle_paths("/b")
    assert {k: str(getattr(py, k)) for k in cpp} == cpp
