"""metadata.json through the C++ serde from Python: round trip and errors."""

from __future__ import annotations

import copy
import json

import pytest

import staticllm
from staticllm import _core

DOC = {
    "format_version": 1,
    "identifier": "x",
    "multifunction": False,
    "default_method": "main",
    "methods": [
        {
            "name": "main",
            "function_name": "main",
            "inputs": [{"name": "a", "dtype": "fp16", "shape": [1, 2]}],
            "outputs": [{"name": "b", "dtype": "fp32", "shape": [2]}],
        }
    ],
    "llm": {"vocab_size": 3},
    "vendor": {"keep": True},
}

MULTI = {
    "format_version": 1,
    "identifier": "pair",
    "multifunction": True,
    "default_method": "decode",
    "methods": [
        {
            "name": "prefill",
            "function_name": "prefill",
            "inputs": [{"name": "tokens", "dtype": "int32", "shape": [1, 8]}],
            "outputs": [{"name": "logits", "dtype": "fp16", "shape": [1, 8, 32]}],
        },
        {
            "name": "decode",
            "function_name": "decode_fn",
            "inputs": [{"name": "tokens", "dtype": "int32", "shape": [1, 1]}],
            "outputs": [{"name": "logits", "dtype": "fp16", "shape": [1, 1, 32]}],
            "states": [{"name": "k_cache", "dtype": "fp16", "shape": [2, 1, 4, 16, 8]}],
        },
    ],
}


def test_round_trip_keeps_unknown_keys(tmp_path):
    _core.save_metadata(json.dumps(DOC), str(tmp_path / "metadata.json"))
    assert json.loads(_core.load_metadata(str(tmp_path / "metadata.json"))) == DOC


def test_unknown_keys_survive_at_every_level(tmp_path):
    doc = copy.deepcopy(MULTI)
    doc["methods"][1]["note"] = "from another tool"
    doc["methods"][1]["states"][0]["layout"] = "BHSD"
    _core.save_metadata(doc, str(tmp_path / "metadata.json"))  # a dict works as well as JSON text
    assert json.loads((tmp_path / "metadata.json").read_text()) == doc


def test_written_file_is_pretty_and_normalized(tmp_path):
    path = tmp_path / "metadata.json"
    _core.save_metadata(json.dumps(MULTI, indent=None), str(path))
    text = path.read_text()
    assert text.endswith("\n")
    assert '\n  "methods": [' in text  # two-space indent
    assert json.loads(_core._testing.metadata_from_json_text(text)) == MULTI
    assert json.loads(_core._testing.metadata_from_json_text(json.dumps(MULTI))) == MULTI


def test_optional_parts_are_normalized():
    doc = copy.deepcopy(DOC)
    del doc["llm"]
    doc["methods"][0]["states"] = []  # empty states are written as absent
    again = json.loads(_core._testing.metadata_from_json_text(json.dumps(doc)))
    assert "states" not in again["methods"][0]
    assert "llm" not in again


def _dup_method(d: dict) -> None:
    d["methods"].append(copy.deepcopy(d["methods"][0]))


def _dup_input(d: dict) -> None:
    d["methods"][0]["inputs"].append(dict(d["methods"][0]["inputs"][0]))


def _dup_output(d: dict) -> None:
    d["methods"][1]["outputs"].append(dict(d["methods"][1]["outputs"][0], dtype="fp32"))


@pytest.mark.parametrize(
    ("doc", "edit", "message"),
    [
        (DOC, lambda d: d.pop("methods"), "metadata.json: methods: missing key"),
        (DOC, lambda d: d.pop("format_version"), "format_version: missing key"),
        (DOC, lambda d: d.update(format_version=2), "format_version: expected 1, got 2"),
        (DOC, lambda d: d.update(format_version="1"), "format_version: expected an integer, got string"),
        (
            DOC,
            lambda d: d["methods"][0]["inputs"][0].update(dtype="float"),
            r'methods\[0\]\.inputs\[0\]\.dtype: expected one of fp16, fp32, .*; got "float"',
        ),
        (
            MULTI,
            lambda d: d["methods"][1]["states"][0].update(dtype="half"),
            r"methods\[1\]\.states\[0\]\.dtype",
        ),
        (
            DOC,
            lambda d: d["methods"][0]["outputs"][0].update(shape=[2, 0]),
            r"methods\[0\]\.outputs\[0\]\.shape\[1\]: expected a positive integer or null, got 0",
        ),
        (
            DOC,
            lambda d: d["methods"][0]["outputs"][0].update(shape="2"),
            r"methods\[0\]\.outputs\[0\]\.shape: expected a list of positive integers or nulls, got string",
        ),
        (DOC, lambda d: d["methods"][0].pop("function_name"), r"methods\[0\]\.function_name: missing key"),
        (
            DOC,
            lambda d: d["methods"][0].update(inputs={}),
            r"methods\[0\]\.inputs: expected a list, got object",
        ),
        (DOC, lambda d: d.update(default_method="decode"), 'default_method: "decode" is not a method'),
        (
            DOC,
            lambda d: d["methods"].append(dict(d["methods"][0], name="other")),
            "multifunction: false, but 2 methods",
        ),
        (DOC, lambda d: d.update(identifier=3), "identifier: expected a string, got number"),
        (DOC, lambda d: d.update(identifier=""), "identifier: expected a non-empty string"),
        (DOC, lambda d: d.update(multifunction=1), "multifunction: expected true or false, got number"),
        (DOC, lambda d: d.update(methods=[]), "methods: expected a non-empty list of methods"),
        (DOC, lambda d: d.update(llm=[1]), "llm: expected an object, got array"),
        (MULTI, _dup_method, r'methods\[2\]\.name: duplicate method name "prefill"'),
        (MULTI, _dup_input, r'methods\[0\]\.inputs\[1\]\.name: duplicate name "tokens"'),
        (MULTI, _dup_output, r'methods\[1\]\.outputs\[1\]\.name: duplicate name "logits"'),
    ],
)
def test_invalid_documents(doc, edit, message):
    doc = copy.deepcopy(doc)
    edit(doc)
    with pytest.raises(staticllm.MetadataError, match=message):
        _core._testing.metadata_from_json_text(json.dumps(doc))


def test_invalid_documents_are_never_written(tmp_path):
    doc = copy.deepcopy(DOC)
    doc["default_method"] = "nope"
    with pytest.raises(staticllm.MetadataError, match="default_method"):
        _core.save_metadata(doc, str(tmp_path / "metadata.json"))
    assert not (tmp_path / "metadata.json").exists()


@pytest.mark.parametrize("text", ["", "{", '{"format_version": 1,', "[]", "null", '"text"'])
def test_text_that_is_not_a_document(text):
    with pytest.raises(staticllm.MetadataError, match="metadata.json"):
        _core._testing.metadata_from_json_text(text)


def test_files_that_cannot_be_read_or_written(tmp_path):
    with pytest.raises(staticllm.BundleError, match="cannot read .*missing/metadata.json"):
        _core.load_metadata(str(tmp_path / "missing/metadata.json"))
    with pytest.raises(staticllm.BundleError, match="cannot write"):
        _core.save_metadata(DOC, str(tmp_path / "no-such-dir/metadata.json"))
    with pytest.raises(staticllm.MetadataError, match="not JSON-serializable"):
        _core.save_metadata({"format_version": object()}, str(tmp_path / "metadata.json"))
    bad = tmp_path / "metadata.json"
    bad.write_text('{"format_version": 1}')
    with pytest.raises(staticllm.MetadataError, match=f"{bad}: identifier: missing key"):
        _core.load_metadata(str(bad))  # errors from a file name the file


def test_dtype_tables_of_both_languages_agree():
    """Core ML array codes and numpy names: C++ (tensor.cpp) and Python (package_spec) say the same."""
    import numpy as np

    from staticllm.package_spec import _ARRAY_DTYPES

    rows = _core._testing.dtype_table()
    assert [name for name, _, _ in rows] == [
        "fp16",
        "fp32",
        "fp64",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "int64",
        "bool",
    ]
    assert {code: name for name, _, code in rows if code} == _ARRAY_DTYPES
    for name, numpy_name, _ in rows:
        bits = np.dtype(numpy_name).itemsize * 8
        assert name in (f"fp{bits}", f"int{bits}", f"uint{bits}", "bool")
