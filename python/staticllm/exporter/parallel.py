"""Converting the functions of a multifunction export side by side.

Conversion is single-threaded Python inside coremltools, so on a machine with
two or more cores the second function is converted in a forked child while
the parent converts the first. The child saves its package; the parent reads
its MIL program back (under a second for a 110M model) for the in-memory
merge. If forking is unavailable or the child fails, the parent converts
everything itself: the result is the same, only slower.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _convert(model: Any, fn: Any, dtype: str) -> Any:
    from staticllm.exporter.convert import convert_function

    return convert_function(model, fn, dtype)


def _load_saved(path: Path) -> Any:
    """An MLModel from a saved package, with its MIL program in memory."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto import load as milproto_load

    from staticllm.bundle_layout import PACKAGE_WEIGHTS_DIR

    model = ct.models.MLModel(str(path), skip_model_load=True)
    spec = model.get_spec()
    model._mil_program = milproto_load.load(spec, spec.specificationVersion, str(path / PACKAGE_WEIGHTS_DIR))
    return model


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this child when the parent dies, so a killed
    export leaves no converter running on (and writing into) its files."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _fork_child(model: Any, fn: Any, dtype: str, dest: Path) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid != 0:
        return pid
    code = 1
    try:
        _die_with_parent(parent)
        import torch

        torch.set_num_threads(1)  # the parent's OpenMP pool does not survive fork
        _convert(model, fn, dtype).save(str(dest))
        code = 0
    except BaseException:  # report, then leave without running the parent's cleanup
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def convert_functions(
    model: Any,
    functions: list[Any],
    dtype: str,
    work: Path,
    on_done: Callable[[], Any] = lambda: None,
) -> list[Any]:
    """One converted MLModel per function, in order (quantization comes after)."""
    parallel = (
        len(functions) == 2
        and hasattr(os, "fork")
        and (os.cpu_count() or 1) > 1
        and not os.environ.get("STATICLLM_SERIAL_EXPORT")
    )
    if not parallel:
        out = []
        for fn in functions:
            out.append(_convert(model, fn, dtype))
            on_done()
        return out
    saved = work / f"{functions[1].name}.mlpackage"
    pid = _fork_child(model, functions[1], dtype, saved)
    first = _convert(model, functions[0], dtype)
    on_done()
    _, status = os.waitpid(pid, 0)
    second = _load_saved(saved) if status == 0 and saved.is_dir() else _convert(model, functions[1], dtype)
    on_done()
    return [first, second]
