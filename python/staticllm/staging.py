"""Writing a bundle so that no exit, a crash or `kill -9` included, leaves a
half-written bundle at the output path or lets temporary files pile up.

A write works in one private directory beside the output,
`.NAME.partial-<pid>-<random>/`:

    lock      held (flock) while the writing process lives
    bundle/   the new bundle, renamed onto the output path when complete
    work/     this process's temporary files while it writes (tempfile.tempdir
              points here, so coremltools' tmp*.mlpackage land here too)
    old/      only while replacing without an atomic exchange (see _publish)

On any exit path the directory is removed; after a kill, the next export or
import of the same output removes it once its lock is free (the owner is
dead), and Runtime.load repairs an output path a kill left empty.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from staticllm.errors import BundleError

try:
    import fcntl
except ImportError:  # not on Windows: liveness falls back to the pid in the name
    fcntl = None  # type: ignore[assignment]

_KILL_ENV = "STATICLLM_TEST_KILL_AT"
_NO_EXCHANGE_ENV = "STATICLLM_TEST_NO_EXCHANGE"


def fault_point(stage: str) -> None:
    """Test hook: with STATICLLM_TEST_KILL_AT=<stage> the process ends here by
    SIGKILL, as a crash or `kill -9` would end it (no cleanup runs)."""
    if os.environ.get(_KILL_ENV) == stage:
        os.kill(os.getpid(), signal.SIGKILL)


def _partial_prefix(out: Path) -> str:
    return f".{out.name}.partial-"


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Repairs what an interrupted write left at `out`, then refuses an
    existing output unless `overwrite`."""
    recover(out)
    if out.exists() and not overwrite:
        raise BundleError(f"output {out} already exists; pass overwrite=True (--overwrite) to replace it")


@contextlib.contextmanager
def staged_bundle(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yields the directory to write the bundle into; on success it becomes
    `out_dir`. While the block runs, this process's temporary files go to the
    write's own work directory, so they cannot outlive it."""
    out = Path(out_dir).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    check_output_dir(out, overwrite)
    partial = Path(tempfile.mkdtemp(prefix=f"{_partial_prefix(out)}{os.getpid()}-", dir=out.parent))
    lock = _hold_lock(partial / "lock")
    try:
        bundle, work = partial / "bundle", partial / "work"
        bundle.mkdir()  # mode from the umask: this directory is what gets published
        work.mkdir()
        saved, tempfile.tempdir = tempfile.tempdir, str(work)
        try:
            yield bundle
        finally:
            tempfile.tempdir = saved
        fault_point("written")
        if out.exists() and not overwrite:
            raise BundleError(f"output {out} appeared while writing; pass overwrite=True to replace it")
        _publish(bundle, out, partial)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        os.close(lock)


def _publish(bundle: Path, out: Path, partial: Path) -> None:
    """Puts `bundle` at `out`. Replacing swaps the two directories in one
    step where the system can (Linux renameat2 RENAME_EXCHANGE); elsewhere
    the old bundle moves into the partial directory first, and a kill between
    the two renames is undone by `recover` (the old bundle comes back)."""
    if not out.exists():
        bundle.rename(out)
    elif _exchange(bundle, out):
        fault_point("exchanged")
    else:
        out.rename(partial / "old")
        fault_point("moved-old")
        bundle.rename(out)
    fault_point("published")


def ensure_present(bundle: str | Path) -> None:
    """Before reading a bundle: if its path is missing because a writer was
    killed between the two renames of a replace, the old bundle comes back."""
    if isinstance(bundle, (str, os.PathLike)) and not Path(bundle).exists():
        recover(Path(bundle))


def recover(out: Path) -> None:
    """Removes the partial directories of dead writers of `out`; if one of
    them was killed between the two renames of a replace, its old bundle goes
    back to `out` first."""
    out = Path(out).absolute()
    if not out.parent.is_dir():
        return
    prefix = _partial_prefix(out)
    for partial in out.parent.iterdir():
        if not partial.name.startswith(prefix) or not partial.is_dir():
            continue
        lock = _take_lock_if_dead(partial)
        if lock is None:
            continue
        try:
            old = partial / "old"
            if old.is_dir() and not out.exists():
                with contextlib.suppress(OSError):  # another process restored it first
                    old.rename(out)
            shutil.rmtree(partial, ignore_errors=True)
        finally:
            if lock >= 0:
                os.close(lock)


def _hold_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _take_lock_if_dead(partial: Path) -> int | None:
    """The partial directory's lock if its writer is dead (-1 when there is
    no lock file to hold), None while the writer lives."""
    try:
        fd = os.open(partial / "lock", os.O_RDWR)
    except FileNotFoundError:
        # killed between creating the directory and its lock, or still there:
        # the pid in the name tells
        return None if _pid_alive(partial) else -1
    except OSError:
        return None
    if fcntl is None:
        if _pid_alive(partial):
            os.close(fd)
            return None
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _pid_alive(partial: Path) -> bool:
    pid = partial.name.rsplit(".partial-", 1)[-1].split("-", 1)[0]
    if not pid.isdigit():
        return True  # not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swaps two directories; False where the system cannot."""
    if sys.platform != "linux" or os.environ.get(_NO_EXCHANGE_ENV):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)  # glibc >= 2.28
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a file system without exchange
        return False
    raise BundleError(f"cannot replace {b}: {os.strerror(err)}")
