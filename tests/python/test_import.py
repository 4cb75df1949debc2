"""`staticllm import` / staticllm.import_mlpackage: any ML Program package,
single or multifunction, becomes a runnable bundle."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import staticllm
from mil_fixtures import accumulator_program, affine_program, convert_program
from staticllm import cli
from staticllm.bundle_layout import PACKAGE_WEIGHTS


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


@pytest.fixture(scope="module")
def single_package(tmp_path_factory):
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    tmp = tmp_path_factory.mktemp("single")
    return convert_program(affine_program(w, np.ones(3, np.float32)), tmp / "affine.mlpackage"), w


def test_single_function_package(single_package, tmp_path):
    import coremltools as ct
    from google.protobuf.json_format import MessageToDict

    pkg, w = single_package
    out = staticllm.import_mlpackage(pkg, tmp_path / "bundle")
    assert out == tmp_path / "bundle"
    meta = json.loads((out / "metadata.json").read_text())
    assert meta == {
        "format_version": 1,
        "identifier": "affine",
        "multifunction": False,
        "default_method": "main",
        "methods": [
            {
                "name": "main",
                "function_name": "main",
                "inputs": [{"name": "x", "dtype": "fp32", "shape": [2, 4]}],
                "outputs": [{"name": "y", "dtype": "fp32", "shape": [2, 3]}],
            }
        ],
        "weights_sha256": hashlib.sha256((pkg / PACKAGE_WEIGHTS).read_bytes()).hexdigest(),
    }
    program = json.loads((out / "program.json").read_text())
    assert program == MessageToDict(ct.utils.load_spec(str(pkg)).mlProgram)
    assert _same_tree(pkg, out / "model.mlpackage")  # the package itself, unchanged
    x = np.ones((2, 4), np.float32)
    y = staticllm.Runtime.load(out, backend="mil").method("main")(x=x)["y"]
    np.testing.assert_allclose(y, x @ w.T + 1, rtol=1e-5)


def test_multifunction_package(shared_weight_package, tmp_path):
    pkg, w = shared_weight_package
    out = staticllm.import_mlpackage(pkg, tmp_path / "pair")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["multifunction"] is True
    assert meta["default_method"] == "decode"  # the package's own default function
    assert sorted(m["name"] for m in meta["methods"]) == ["decode", "prefill"]
    for m in meta["methods"]:
        assert m["function_name"] == m["name"]
        assert m["inputs"] == [{"name": "x", "dtype": "fp32", "shape": [1, 4]}]
        assert m["outputs"] == [{"name": "out", "dtype": "fp32", "shape": [1, 3]}]
    program = json.loads((out / "program.json").read_text())
    assert sorted(program["functions"]) == ["decode", "prefill"]


def test_states_are_described(tmp_path):
    pkg = convert_program(accumulator_program(), tmp_path / "acc.mlpackage", fp16=True)
    out = staticllm.import_mlpackage(pkg, tmp_path / "acc")
    method = json.loads((out / "metadata.json").read_text())["methods"][0]
    assert method["inputs"] == [{"name": "x", "dtype": "fp16", "shape": [2, 3]}]
    assert method["states"] == [{"name": "acc", "dtype": "fp16", "shape": [2, 3]}]
    assert method["outputs"] == [{"name": "doubled", "dtype": "fp16", "shape": [2, 3]}]


def test_overwrite_and_refusal(single_package, tmp_path):
    pkg, _ = single_package
    out = tmp_path / "b"
    staticllm.import_mlpackage(pkg, out)
    (out / "stale.txt").write_text("from before")
    with pytest.raises(staticllm.BundleError, match="already exists; pass overwrite=True"):
        staticllm.import_mlpackage(pkg, out)
    assert (out / "stale.txt").exists()  # untouched by the refusal
    staticllm.import_mlpackage(pkg, out, overwrite=True)
    assert not (out / "stale.txt").exists()  # replaced as a whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary siblings left


def test_failures_leave_nothing_behind(tmp_path):
    not_a_package = tmp_path / "empty.mlpackage"
    not_a_package.mkdir()
    with pytest.raises(staticllm.BundleError, match="not a Core ML package \\(no Manifest.json\\)"):
        staticllm.import_mlpackage(not_a_package, tmp_path / "out")
    with pytest.raises(staticllm.BundleError, match="not found \\(expected a .mlpackage directory\\)"):
        staticllm.import_mlpackage(tmp_path / "missing.mlpackage", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mlpackage"]


def test_cli_import(single_package, tmp_path, capsys):
    pkg, _ = single_package
    assert cli.main(["import", str(pkg), str(tmp_path / "b")]) == 0
    assert "methods: main; default: main" in capsys.readouterr().out
    assert cli.main(["import", str(pkg), str(tmp_path / "b")]) == 2
    assert "staticllm import: error: output" in capsys.readouterr().err
    assert cli.main(["import", "--overwrite", str(pkg), str(tmp_path / "b")]) == 0


def test_import_then_load_from_a_fresh_process(shared_weight_package, tmp_path):
    """The issue's acceptance check: `staticllm import` of a two-function
    package, then Runtime.load in a new interpreter."""
    pkg, _ = shared_weight_package
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            p for p in [str(Path(staticllm.__file__).parents[1]), os.environ.get("PYTHONPATH", "")] if p
        ),
    )
    out = tmp_path / "OUT_DIR"
    subprocess.run(
        [sys.executable, "-m", "staticllm.cli", "import", str(pkg), str(out)],
        check=True,
        env=env,
        capture_output=True,
    )
    code = (
        f"import staticllm; rt = staticllm.Runtime.load({str(out)!r}, backend='mil'); "
        "print(rt.method_names, rt.method('decode').input_specs)"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    assert "['prefill', 'decode']" in done.stdout or "['decode', 'prefill']" in done.stdout
    assert "TensorSpec(name='x', dtype=dtype('float32'), shape=(1, 4))" in done.stdout
