"""The evaluation text and its windows of token ids.

The built-in text (data/eval_text.txt, about 2,700 words of plain English
prose) was written for this project and is under the project's Apache-2.0
license; it holds about 3,100 SmolLM2 tokens, six windows of 512.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from staticllm.errors import InputError

BUILTIN = "built-in text"


def builtin_text() -> str:
    return resources.files("staticllm.eval").joinpath("data/eval_text.txt").read_text(encoding="utf-8")


def read_text(path: str | Path) -> str:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"text file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {p} as UTF-8 text: {exc}") from exc
    if not text.strip():
        raise InputError(f"text file {p} is empty")
    return text


def encode(tokenizer: Any, text: str) -> tuple[list[int], list[int]]:
    """(prefix, ids): the text's ids without special tokens, and what the
    tokenizer puts before a text by default (BOS for Llama, nothing for
    SmolLM2), which every window starts with."""
    ids = list(tokenizer.encode(text, add_bos=False))
    full = list(tokenizer.encode(text))
    extra = len(full) - len(ids)
    prefix = full[:extra] if extra > 0 and full[extra:] == ids else []
    return prefix, ids


def windows(
    ids: list[int], n_windows: int, window_len: int, prefix: list[int] | None = None
) -> list[list[int]]:
    """n_windows consecutive, non-overlapping windows of window_len tokens,
    each the prefix followed by the next text tokens."""
    prefix = prefix or []
    if window_len < len(prefix) + 2:
        raise InputError(
            f"window length {window_len} is too short: a window needs at least 2 tokens to score one"
        )
    if n_windows < 1:
        raise InputError(f"the number of windows must be at least 1, got {n_windows}")
    step = window_len - len(prefix)
    available = len(ids) // step
    if available == 0:
        raise InputError(
            f"the text has {len(ids)} tokens, shorter than one window of {window_len}; "
            f"give a longer text or a smaller window length"
        )
    if available < n_windows:
        raise InputError(
            f"the text holds {available} window(s) of {window_len} tokens ({len(ids)} tokens), "
            f"but {n_windows} were asked for; ask for {available} or give a longer text"
        )
    return [prefix + ids[i * step : (i + 1) * step] for i in range(n_windows)]
