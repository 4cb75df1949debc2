"""weight.bin faults: the SHA-256 recorded at import (and export) and checked by
Runtime.load(verify=True) and `staticllm inspect --verify`; mmap=False reads
the weights into memory, so a file truncated or overwritten while a Runtime
has it open changes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import staticllm
from mil_fixtures import affine_program, bundle_from_program
from staticllm import _core
from staticllm.bundle_layout import PACKAGE_WEIGHTS
from staticllm.cli import main


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    w = np.random.default_rng(5).standard_normal((5, 8)).astype(np.float32)
    b = np.arange(5, dtype=np.float32)
    return bundle_from_program(affine_program(w, b), tmp_path_factory.mktemp("weights"), "b")


@pytest.fixture
def bundle(good, tmp_path):
    return shutil.copytree(good, tmp_path / "bundle")


def _weights(bundle):
    return bundle / "model.mlpackage" / PACKAGE_WEIGHTS


def _meta(bundle) -> dict:
    return json.loads((bundle / "metadata.json").read_text())


def _mapped(bundle) -> int:
    target = str(_weights(bundle).resolve())
    with open("/proc/self/maps") as f:
        return sum(line.rstrip().endswith(target) for line in f)


def _overwrite_blobs(bundle) -> None:
    """Negate every blob's data in place (same inode, same size, records intact):
    a silent change, as another process writing the file would make."""
    with _weights(bundle).open("r+b") as f:
        data = bytearray(f.read())
        count = int.from_bytes(data[0:4], "little")
        record = 64
        for _ in range(count):
            nbytes = int.from_bytes(data[record + 8 : record + 16], "little")
            start = int.from_bytes(data[record + 16 : record + 24], "little")
            blob = np.frombuffer(bytes(data[start : start + nbytes]), np.float32)
            data[start : start + nbytes] = (-blob - 1).tobytes()
            record = (start + nbytes + 63) // 64 * 64
        f.seek(0)
        f.write(data)


X = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)


def test_import_records_the_sha256_of_weight_bin(good):
    assert _meta(good)["weights_sha256"] == hashlib.sha256(_weights(good).read_bytes()).hexdigest()


def test_the_runtime_hashes_like_hashlib():
    rng = np.random.default_rng(0)
    for n in [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 1 << 20]:
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert _core._testing.sha256_hex(data) == hashlib.sha256(data).hexdigest(), n


def test_verify_accepts_the_recorded_weights(bundle):
    for mmap in (True, False):
        rt = staticllm.Runtime.load(bundle, backend="mil", verify=True, mmap=mmap)
        assert rt.method()(x=X)["y"].shape == (2, 5)
    staticllm.runtime.verify_weights(bundle)


def test_verify_finds_weights_changed_after_export(bundle):
    _overwrite_blobs(bundle)
    for mmap in (True, False):
        with pytest.raises(
            staticllm.BundleError, match=r"weight.bin: SHA-256 is [0-9a-f]{64}, metadata.json records"
        ):
            staticllm.Runtime.load(bundle, backend="mil", verify=True, mmap=mmap)
    with pytest.raises(staticllm.BundleError, match="weight.bin changed after export"):
        staticllm.runtime.verify_weights(bundle)
    staticllm.Runtime.load(
        bundle, backend="mil"
    )  # without verify it loads, and would run the changed weights


def test_verify_needs_a_recorded_hash(bundle):
    meta = _meta(bundle)
    del meta["weights_sha256"]
    (bundle / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(staticllm.BundleError, match="the bundle has no recorded weights hash"):
        staticllm.Runtime.load(bundle, backend="mil", verify=True)
    staticllm.Runtime.load(bundle, backend="mil")  # older bundles still load


def test_a_malformed_recorded_hash_is_a_metadata_error(bundle):
    meta = _meta(bundle)
    meta["weights_sha256"] = meta["weights_sha256"].upper()
    (bundle / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(staticllm.MetadataError, match="weights_sha256: expected 64 lowercase hex digits"):
        staticllm.Runtime.load(bundle, backend="mil")


def test_inspect_verify(bundle, capsys):
    assert main(["inspect", "--verify", str(bundle)]) == 0
    assert "weight.bin: SHA-256 matches metadata.json" in capsys.readouterr().out
    _overwrite_blobs(bundle)
    assert main(["inspect", "--verify", str(bundle)]) == 2
    assert "weight.bin changed after export" in capsys.readouterr().err


def test_without_mmap_the_weights_are_read_into_memory(bundle):
    mapped = staticllm.Runtime.load(bundle, backend="mil")
    assert _mapped(bundle) == 1
    want = mapped.method()(x=X)["y"]
    del mapped
    rt = staticllm.Runtime.load(bundle, backend="mil", mmap=False)
    assert _mapped(bundle) == 0
    np.testing.assert_array_equal(rt.method()(x=X)["y"], want)
    # overwritten in place while the Runtime is open (a mapping would see the
    # new bytes: measured, results changed)
    _overwrite_blobs(bundle)
    np.testing.assert_array_equal(rt.method()(x=X)["y"], want)
    assert not np.array_equal(staticllm.Runtime.load(bundle, backend="mil").method()(x=X)["y"], want)


_TRUNCATE = """
import sys
import numpy as np
import staticllm
rt = staticllm.Runtime.load(sys.argv[1], backend="mil", mmap=False)
x = np.ones((2, 1024), np.float32)
want = rt.method()(x=x)["y"]
with open(sys.argv[2], "r+b") as f:
    f.truncate(64)
print("same" if np.array_equal(rt.method()(x=x)["y"], want) else "changed")
"""


def test_without_mmap_a_truncated_weight_file_cannot_crash_the_process(tmp_path):
    """256 KB of weights: pages wholly past the new end of a truncated file
    raise SIGBUS in a process that maps it (the default; measured: exit -7)."""
    import subprocess
    import sys

    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    w = np.random.default_rng(6).standard_normal((64, 1024)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 1024))], opset_version=ct.target.iOS18)
    def prog(x):  # noqa: ANN001, ANN202
        return mb.linear(x=x, weight=w, name="y")

    bundle = bundle_from_program(prog, tmp_path, "wide")
    done = subprocess.run(
        [sys.executable, "-c", _TRUNCATE, str(bundle), str(_weights(bundle))],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(staticllm.__file__).parents[1])},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "same"
