"""Bad input of every kind gives its named exception, never a crash."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import staticllm
from mil_fixtures import affine_program, bundle_from_program


@pytest.fixture(scope="module")
def good(tmp_path_factory, rng):
    tmp = tmp_path_factory.mktemp("good")
    w = rng.standard_normal((4, 6)).astype(np.float32)
    return bundle_from_program(affine_program(w, np.zeros(4, np.float32)), tmp, "b")


@pytest.fixture
def copy(good, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(good, dst)
    return dst


def test_missing_directory(tmp_path):
    with pytest.raises(staticllm.BundleError, match="bundle directory not found"):
        staticllm.Runtime.load(tmp_path / "nope")


def _edit_metadata(bundle, edit) -> None:
    meta = json.loads((bundle / "metadata.json").read_text())
    edit(meta)
    (bundle / "metadata.json").write_text(json.dumps(meta))


def test_missing_metadata(copy):
    (copy / "metadata.json").unlink()
    with pytest.raises(staticllm.BundleError, match="cannot read .*metadata.json"):
        staticllm.Runtime.load(copy, backend="mil")


def test_metadata_that_is_a_directory(copy):
    (copy / "metadata.json").unlink()
    (copy / "metadata.json").mkdir()
    with pytest.raises(staticllm.BundleError, match="cannot read .*metadata.json"):
        staticllm.Runtime.load(copy, backend="mil")


def test_missing_program_json(copy):
    (copy / "program.json").unlink()
    with pytest.raises(staticllm.BundleError, match="program.json"):
        staticllm.Runtime.load(copy, backend="mil")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["methods"][0].update(function_name="other"), "'other'"),
        (lambda m: m["methods"][0]["inputs"][0].update(shape=[3, 6]), r"'x'.*\[3, 6\]"),
        (lambda m: m["methods"][0]["inputs"][0].update(dtype="fp16"), "'x'.*fp16"),
        (lambda m: m["methods"][0]["inputs"][0].update(name="q"), "'x'"),
        (lambda m: m["methods"][0]["outputs"][0].update(name="q"), "'q'"),
    ],
)
def test_metadata_that_disagrees_with_the_program(copy, edit, message):
    _edit_metadata(copy, edit)
    with pytest.raises(staticllm.BundleError, match=message):
        staticllm.Runtime.load(copy, backend="mil").method()


def test_output_spec_that_disagrees_with_the_program(copy):
    _edit_metadata(copy, lambda m: m["methods"][0]["outputs"][0].update(shape=[9]))
    # reported at load or, at the latest, before a mislabeled array reaches the caller
    with pytest.raises(staticllm.BundleError, match=r"'y'.*\[9\]"):
        m = staticllm.Runtime.load(copy, backend="mil").method()
        m.execute({"x": np.zeros((2, 6), np.float32)})


def test_truncated_metadata(copy):
    text = (copy / "metadata.json").read_text()
    (copy / "metadata.json").write_text(text[: len(text) // 2])
    with pytest.raises(staticllm.MetadataError, match="not valid JSON"):
        staticllm.Runtime.load(copy, backend="mil")


def test_invalid_metadata_names_the_key(copy):
    meta = json.loads((copy / "metadata.json").read_text())
    meta["methods"][0]["inputs"][0]["dtype"] = "float"
    (copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(staticllm.MetadataError, match=r"methods\[0\]\.inputs\[0\]\.dtype"):
        staticllm.Runtime.load(copy, backend="mil")


def test_number_out_of_range_names_the_key(copy):
    """1e400 overflows a double: nlohmann's out_of_range must not escape as a RuntimeError."""
    _edit_metadata(copy, lambda m: m["methods"][0]["inputs"][0].update(shape=[123456789, 6]))
    text = (copy / "metadata.json").read_text()
    (copy / "metadata.json").write_text(text.replace("123456789", "1e400"))
    with pytest.raises(
        staticllm.MetadataError,
        match=r"metadata.json: methods\[0\]\.inputs\[0\]\.shape\[0\]: number out of range",
    ):
        staticllm.Runtime.load(copy, backend="mil")


def test_truncated_program_json(copy):
    text = (copy / "program.json").read_text()
    (copy / "program.json").write_text(text[: len(text) // 3])
    with pytest.raises(staticllm.BundleError, match="program.json: not valid JSON"):
        staticllm.Runtime.load(copy, backend="mil")


def test_program_json_with_wrong_structure(copy):
    (copy / "program.json").write_text(json.dumps({"functions": {"main": {"opset": "CoreML8"}}}))
    with pytest.raises(staticllm.BundleError, match="blockSpecializations"):
        staticllm.Runtime.load(copy, backend="mil")


def _weights(bundle):
    return bundle / "model.mlpackage/Data/com.apple.CoreML/weights/weight.bin"


def test_bad_sentinel(copy):
    data = bytearray(_weights(copy).read_bytes())
    data[64:68] = b"\0\0\0\0"
    _weights(copy).write_bytes(bytes(data))
    with pytest.raises(staticllm.BundleError, match="bad blob sentinel"):
        staticllm.Runtime.load(copy, backend="mil")


def test_blob_past_end_of_file(copy):
    data = _weights(copy).read_bytes()
    _weights(copy).write_bytes(data[: len(data) - 40])
    with pytest.raises(staticllm.BundleError, match="past the end"):
        staticllm.Runtime.load(copy, backend="mil")


def test_unsupported_op_is_reported_at_load(copy):
    program = json.loads((copy / "program.json").read_text())
    ops = program["functions"]["main"]["blockSpecializations"]["CoreML8"]["operations"]
    next(op for op in ops if op["type"] == "linear")["type"] = "fancy_linear"
    (copy / "program.json").write_text(json.dumps(program))
    with pytest.raises(
        staticllm.UnsupportedOpError, match=r"function 'main', op '.*' \(type 'fancy_linear'\)"
    ):
        staticllm.Runtime.load(copy, backend="mil")


def test_missing_method(good):
    rt = staticllm.Runtime.load(good, backend="mil")
    with pytest.raises(staticllm.MetadataError, match="no method named 'decode'; the bundle has: main"):
        rt.method("decode")


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"z": np.zeros((2, 6), np.float32)}, "unknown input 'z'"),
        ({}, "missing input 'x'"),
        ({"x": np.zeros((2, 6), np.float64)}, r"input 'x' expects fp32 \[2, 6\], got fp64 \[2, 6\]"),
        ({"x": np.zeros((3, 6), np.float32)}, r"input 'x' expects fp32 \[2, 6\], got fp32 \[3, 6\]"),
        ([np.zeros((2, 6), np.float32)] * 2, r"expected 1 inputs \(x\), got 2"),
        ([], r"expected 1 inputs \(x\), got 0"),
        ((np.zeros((2, 6), np.float32),), None),  # a tuple is a sequence too: runs
        ("x", "dict by name or a list by position"),
    ],
)
def test_bad_inputs(good, inputs, message):
    m = staticllm.Runtime.load(good, backend="mil").method()
    if message is None:
        assert m.execute(inputs)["y"].shape == (2, 4)
        return
    with pytest.raises(staticllm.InputError, match=message):
        m.execute(inputs)
    # the method still works after rejecting bad input
    assert m.execute({"x": np.zeros((2, 6), np.float32)})["y"].shape == (2, 4)


def test_unknown_backend(good):
    with pytest.raises(staticllm.InputError, match="choose auto, mil or coreml"):
        staticllm.Runtime.load(good, backend="gpu")


def test_out_of_range_gather_index(tmp_path):
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    table = np.arange(12, dtype=np.float32).reshape(4, 3)

    @mb.program(
        input_specs=[mb.TensorSpec(shape=(2,), dtype=ct.converters.mil.mil.types.int32)],
        opset_version=ct.target.iOS18,
    )
    def prog(idx):  # noqa: ANN001, ANN202
        return mb.gather(x=table, indices=idx, axis=0, name="rows")

    m = staticllm.Runtime.load(bundle_from_program(prog, tmp_path, "g"), backend="mil").method()
    np.testing.assert_array_equal(m.execute({"idx": np.array([3, 0], np.int32)})["rows"], table[[3, 0]])
    with pytest.raises(staticllm.InputError, match="index 4 out of range for axis of size 4"):
        m.execute({"idx": np.array([1, 4], np.int32)})
    # the method still works after the error (its context went back to the pool)
    np.testing.assert_array_equal(m.execute({"idx": np.array([-1, 1], np.int32)})["rows"], table[[3, 1]])


def test_import_refuses_non_ml_program(tmp_path):
    import coremltools as ct
    from coremltools.models import datatypes
    from coremltools.models.neural_network import NeuralNetworkBuilder

    builder = NeuralNetworkBuilder([("x", datatypes.Array(2))], [("y", datatypes.Array(2))])
    builder.add_activation("relu", "RELU", "x", "y")
    model = ct.models.MLModel(builder.spec, skip_model_load=True)
    pkg = tmp_path / "nn.mlpackage"
    model.save(str(pkg))
    with pytest.raises(
        staticllm.BundleError, match="neuralNetwork model; staticllm runs ML Program packages"
    ):
        staticllm.import_mlpackage(pkg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_import_refuses_existing_output(good, tmp_path):
    pkg = good / "model.mlpackage"
    (tmp_path / "taken").mkdir()
    with pytest.raises(staticllm.BundleError, match="already exists"):
        staticllm.import_mlpackage(pkg, tmp_path / "taken")
    staticllm.import_mlpackage(pkg, tmp_path / "taken", overwrite=True)
    assert (tmp_path / "taken" / "metadata.json").is_file()
