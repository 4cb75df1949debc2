"""Crash safety of bundle writing (staticllm.staging): a writer killed with
SIGKILL at any stage leaves the output path holding the complete old bundle
or the complete new one (or, for the one stage a plain rename cannot cover,
nothing that the next load or export does not restore), no temporary file in
TMPDIR, and nothing that survives the next run.

The kills are real: the writer runs in a subprocess and the test hook
STATICLLM_TEST_KILL_AT=<stage> makes it SIGKILL itself at that stage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import staticllm
from llama_fixtures import make_hf_checkpoint, tiny_config
from staticllm.staging import ensure_present, recover
from tree_digest import tree_digest

WRITER = """
import sys, tempfile
from staticllm.staging import staged_bundle
out, tag, overwrite = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
with staged_bundle(out, overwrite) as b:
    tempfile.mkdtemp(suffix=".mlpackage")  # a temporary, as coremltools makes them
    (b / "a").write_text(tag)
    (b / "sub").mkdir()
    (b / "sub" / "b").write_text(tag * 1000)
"""


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def run(args: list[str], tmpdir: Path, kill_at: str | None, exchange: bool = True) -> int:
    env = dict(os.environ, TMPDIR=str(tmpdir), PYTHONPATH=os.pathsep.join(sys.path))
    env.pop("STATICLLM_TEST_KILL_AT", None)
    env.pop("STATICLLM_TEST_NO_EXCHANGE", None)
    if kill_at:
        env["STATICLLM_TEST_KILL_AT"] = kill_at
    if not exchange:
        env["STATICLLM_TEST_NO_EXCHANGE"] = "1"
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, timeout=600).returncode


def write(out: Path, tag: str, tmpdir: Path, kill_at: str | None = None, exchange: bool = True) -> int:
    return run(["-c", WRITER, str(out), tag, "1"], tmpdir, kill_at, exchange)


# stage, overwrite, exchange available -> what the output path holds after the kill
CASES = [
    ("written", False, True, None),
    ("published", False, True, "new"),
    ("written", True, True, "old"),
    ("exchanged", True, True, "new"),
    ("published", True, True, "new"),
    ("written", True, False, "old"),
    ("moved-old", True, False, None),  # the next load or export restores "old"
    ("published", True, False, "new"),
]


@pytest.mark.parametrize(("stage", "overwrite", "exchange", "holds"), CASES)
def test_killed_writer_leaves_old_or_new(tmp_path, stage, overwrite, exchange, holds):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    out = tmp_path / "bundle"
    digests = {}
    for tag in ("old", "new"):  # the complete bundles, for comparison
        assert write(tmp_path / tag, tag, tmpdir) == 0
        digests[tag] = tree_digest(tmp_path / tag)
    if overwrite:
        assert write(out, "old", tmpdir) == 0

    code = write(out, "new", tmpdir, kill_at=stage, exchange=exchange)

    assert code == -signal.SIGKILL
    assert tree_digest(out) == (digests[holds] if holds else None)
    assert len(leftovers(out)) == 1  # the killed writer's partial directory
    assert list(tmpdir.iterdir()) == []  # its temporaries stayed inside it
    ensure_present(out)  # what Runtime.load, inspect and extract do first
    restored = holds or ("old" if overwrite else None)
    assert tree_digest(out) == (digests[restored] if restored else None)
    assert write(out, "new", tmpdir) == 0  # the next export sweeps the rest
    assert tree_digest(out) == digests["new"] and leftovers(out) == [] and list(tmpdir.iterdir()) == []


def test_next_export_sweeps_only_dead_writers(tmp_path):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    out = tmp_path / "bundle"
    assert write(out, "old", tmpdir) == 0
    assert write(out, "new", tmpdir, kill_at="moved-old", exchange=False) == -signal.SIGKILL
    # a live writer's directory (its lock held by this process) is left alone
    live = tmp_path / f".bundle.partial-{os.getpid()}-live"
    live.mkdir()
    from staticllm.staging import _hold_lock

    fd = _hold_lock(live / "lock")
    try:
        assert write(out, "next", tmpdir) == 0
        assert (out / "a").read_text() == "next"
        assert leftovers(out) == [live.name]
    finally:
        os.close(fd)
    recover(out)
    assert leftovers(out) == []


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_hf_checkpoint(tmp_path_factory.mktemp("ckpt") / "hf", tiny_config())


EXPORT = dict(input_len=4, max_context_len=32, multifunction=True, dtype="fp32")


def test_finished_export_leaves_no_temporaries(checkpoint, tmp_path, monkeypatch):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    out = staticllm.export(tmp_path / "b", hf_dir=checkpoint, progress=False, **EXPORT)
    assert list(tmpdir.iterdir()) == [] and leftovers(out) == []
    staticllm.export(out, hf_dir=checkpoint, progress=False, overwrite=True, **EXPORT)
    assert list(tmpdir.iterdir()) == [] and leftovers(out) == []
    assert staticllm.Runtime.load(out, backend="mil").method_names == ["prefill", "decode"]


def test_killed_export_is_undone_by_the_next_run(checkpoint, tmp_path):
    """`staticllm export --overwrite`, killed while the forked converter
    child runs, then between the two renames of a replace without exchange."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    out = staticllm.export(tmp_path / "b", hf_dir=checkpoint, progress=False, **EXPORT)
    old = tree_digest(out)
    args = ["-m", "staticllm.cli", "export", "--hf-dir", str(checkpoint), "--output", str(out)]
    args += ["--input-len", "4", "--max-context-len", "32", "--multifunction", "--dtype", "fp32"]
    args += ["--overwrite", "--quiet"]

    assert run(args, tmpdir, kill_at="converted:prefill") == -signal.SIGKILL
    assert tree_digest(out) == old and list(tmpdir.iterdir()) == []
    # the converter child died with its parent, so the lock is free at once
    deadline = time.monotonic() + 5
    while leftovers(out) and time.monotonic() < deadline:
        recover(out)
        time.sleep(0.1)
    assert leftovers(out) == []

    assert run(args, tmpdir, kill_at="moved-old", exchange=False) == -signal.SIGKILL
    assert not out.exists() and list(tmpdir.iterdir()) == []
    rt = staticllm.Runtime.load(out, backend="mil")  # the load puts the old bundle back
    assert rt.method_names == ["prefill", "decode"]
    assert tree_digest(out) == old and leftovers(out) == []
