"""The Python bundle layout (staticllm.bundle_layout) names the same files as
the C++ loader's bundle_paths (runtime/bundle.cpp), asked through the native
module."""

from __future__ import annotations

from staticllm._core import _testing

from staticllm.bundle_layout import bundle_paths


def test_python_layout_matches_cpp_bundle_paths():
    cpp = _testing.bundle_paths("/b")
    assert set(cpp) == {"root", "metadata", "mlpackage", "program_json", "weights"}, cpp
    assert cpp["weights"].startswith("/b/model.mlpackage/"), cpp
    py = bundle_paths("/b")
    assert {k: str(getattr(py, k)) for k in cpp} == cpp
