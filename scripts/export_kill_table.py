"""Kill `staticllm export` with SIGKILL at each stage and print what it left
and what the next run did, as a Markdown table.

    PYTHONPATH=python python3 scripts/export_kill_table.py [--workdir DIR]

Each row: one export of a tiny random checkpoint (multifunction, so a forked
converter child runs during conversion), killed at a stage by the test hook
STATICLLM_TEST_KILL_AT (the process SIGKILLs itself there) or from outside
with `kill -9` after a delay; then the same export again, which must sweep
what the killed one left. TMPDIR is a fresh directory per row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))  # the test fixtures
from tree_digest import tree_digest  # noqa: E402

# (mode, stage for the hook, or seconds after the forked converter child
# starts before an outside kill -9 of the export)
CASES: list[tuple[str, str | float]] = [
    ("fresh", "loaded"),
    ("fresh", "converted:prefill"),
    ("fresh", "converted:decode"),
    ("fresh", "packaged"),
    ("fresh", "written"),
    ("fresh", "published"),
    ("overwrite", "converted:prefill"),
    ("overwrite", "packaged"),
    ("overwrite", "written"),
    ("overwrite", "exchanged"),
    ("overwrite", "published"),
    ("overwrite, no exchange", "written"),
    ("overwrite, no exchange", "moved-old"),
    ("overwrite, no exchange", "published"),
    ("overwrite", 0.5),
    ("overwrite", 3.0),
    ("overwrite", 8.0),
]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def describe_output(out: Path, old: str | None) -> str:
    d = tree_digest(out)
    if d is None:
        return "absent"
    if d == old:
        return "old bundle (complete)"
    import staticllm

    try:
        rt = staticllm.Runtime.load(out, backend="mil")
        ok = rt.method_names == ["prefill", "decode"]
    except staticllm.StaticLLMError as exc:
        return f"BROKEN ({exc})"
    return "new bundle (complete)" if ok else "BROKEN (methods)"


def leftovers(out: Path, tmpdir: Path) -> str:
    items = [
        f"`{p.name}` ({du(p) // 1024} KB)" for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")
    ]
    items += [f"TMPDIR/`{p.name}`" for p in tmpdir.iterdir()]
    return ", ".join(items) or "nothing"


def converters_alive(out: Path) -> int:
    """Processes still running an export to `out` (a converter child)."""
    n = 0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(out).encode() in (proc / "cmdline").read_bytes():
                    n += 1
            except OSError:
                pass
    return n


def export_cmd(ckpt: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "staticllm.cli", "export", "--hf-dir", str(ckpt), "--output", str(out),
        "--input-len", "4", "--max-context-len", "32", "--multifunction", "--dtype", "fp32",
        "--overwrite", "--quiet",
    ]  # fmt: skip


def children(pid: int) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            pass
    return out


def run(cmd: list[str], env: dict[str, str], kill_after: float | None) -> tuple[int, float]:
    """Runs an export; with `kill_after`, kill -9 it that long after it forks
    its converter child (both functions are converting then)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_after is not None:
        while proc.poll() is None and not children(proc.pid):
            time.sleep(0.02)
        try:
            proc.wait(kill_after)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
    return proc.wait(), time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", default="/tmp/staticllm-kill-table")
    parser.add_argument("--rows", help="comma-separated row numbers to run (default: all)")
    args = parser.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    import llama_fixtures
    import staticllm

    ckpt = llama_fixtures.make_hf_checkpoint(work / "hf", llama_fixtures.tiny_config())
    reference = staticllm.export(
        work / "reference", hf_dir=ckpt, input_len=4, max_context_len=32, multifunction=True, progress=False
    )
    print("| # | mode | killed at | exit | output path after the kill | left beside it / in TMPDIR "
          "| converter alive 0.5 s later | next run: exit, output path, left |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    rows = {int(r) for r in args.rows.split(",")} if args.rows else set(range(1, len(CASES) + 1))
    for i, (mode, when) in enumerate(CASES, 1):
        if i not in rows:
            continue
        row = work / f"row{i}"
        row.mkdir()
        out, tmpdir = row / "bundle", row / "tmpdir"
        tmpdir.mkdir()
        if mode != "fresh":
            shutil.copytree(reference, out)
        old = tree_digest(out)
        env = dict(os.environ, TMPDIR=str(tmpdir))
        if isinstance(when, str):
            env["STATICLLM_TEST_KILL_AT"] = when
            label, kill_after = f"`{when}` (hook)", None
        else:
            label, kill_after = f"`kill -9` {when:g} s after the converter fork", when
        if "no exchange" in mode:
            env["STATICLLM_TEST_NO_EXCHANGE"] = "1"
        code, _ = run(export_cmd(ckpt, out), env, kill_after)
        time.sleep(0.5)
        alive = converters_alive(out)
        after_kill = describe_output(out, old)
        left = leftovers(out, tmpdir)
        clean_env = {k: v for k, v in env.items() if not k.startswith("STATICLLM_TEST_")}
        loaded = ""
        if not out.exists():  # what a load does before the next export
            load = f"import staticllm; staticllm.Runtime.load({str(out)!r}, backend='mil')"
            subprocess.run([sys.executable, "-c", load], env=clean_env, capture_output=True)
            loaded = f"`Runtime.load`: {describe_output(out, old)}; then "
        code2, secs = run(export_cmd(ckpt, out), clean_env, None)
        after_next = describe_output(out, old)
        print(
            f"| {i} | {mode} | {label} | {code} | {after_kill} | {left} | {alive} "
            f"| {loaded}export {code2} ({secs:.0f} s): {after_next}; left {leftovers(out, tmpdir)} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
