"""metadata.json through the C++ serde from Python: round trip and errors."""

from __future__ import annotations

import json

import pytest

import staticllm
from staticllm import _core

DOC = {
    "format_version": 1, "identifier": "x", "multifunction": False, "default_method": "main",
    "methods": [{"name": "main", "function_name": "main",
                 "inputs": [{"name": "a", "dtype": "fp16", "shape": [1, 2]}],
                 "outputs": [{"name": "b", "dtype": "fp32", "shape": [2]}]}],
    "llm": {"vocab_size": 3}, "vendor": {"keep": True},
}


def test_round_trip_keeps_unknown_keys(tmp_path):
    _core.save_metadata(json.dumps(DOC), str(tmp_path / "metadata.json"))
    assert json.loads(_core.load_metadata(str(tmp_path / "metadata.json"))) == DOC


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("methods"), "methods: missing key"),
        (lambda d: d["methods"][0]["inputs"][0].update(dtype="half"), r"methods\[0\]\.inputs\[0\]\.dtype: expected one of"),
        (lambda d: d.update(default_method="decode"), "default_method: \"decode\" is not a method"),
        (lambda d: d["methods"].append(dict(d["methods"][0], name="other")), "multifunction: false, but 2 methods"),
        (lambda d: d.update(identifier=3), "identifier: expected a string, got number"),
    ],
)
def test_invalid_documents(edit, message):
    doc = json.loads(json.dumps(DOC))
    edit(doc)
    with pytest.raises(staticllm.MetadataError, match=message):
        _core.validate_metadata(json.dumps(doc))
