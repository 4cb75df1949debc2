"""When generation ends: stop token ids, stop strings, max_new_tokens.

Stop reasons reported in GenerationResult.stop_reason:
  "stop_token"     a stop token id (the bundle's eos ids, plus any given) was generated
  "stop_string"    the text produced a stop string (the text is cut before it)
  "max_new_tokens" the requested number of tokens was generated
  "context_limit"  the context is full (the cache cannot hold another token)
  "cancelled"      the caller stopped consuming the stream (closed it, Ctrl-C, a client gone)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from staticllm.errors import InputError

STOP_TOKEN = "stop_token"
STOP_STRING = "stop_string"
MAX_NEW_TOKENS = "max_new_tokens"
CONTEXT_LIMIT = "context_limit"
CANCELLED = "cancelled"


@dataclass(frozen=True)
class StopOptions:
    max_new_tokens: int = 128
    stop_token_ids: frozenset[int] = field(default_factory=frozenset)
    stop_strings: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        max_new_tokens: int,
        stop_token_ids: Iterable[int] | None,
        stop: Iterable[str] | str | None,
        default_ids: Iterable[int] = (),
    ) -> StopOptions:
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise InputError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
        ids = set(default_ids)
        for t in stop_token_ids or ():
            if isinstance(t, bool) or not isinstance(t, int) or t < 0:
                raise InputError(f"stop_token_ids must hold token ids (integers >= 0), got {t!r}")
            ids.add(t)
        if isinstance(stop, str):
            stop = [stop]
        strings = tuple(stop or ())
        for s in strings:
            if not isinstance(s, str) or not s:
                raise InputError(f"stop strings must be non-empty strings, got {s!r}")
        return cls(max_new_tokens, frozenset(ids), strings)


def find_stop(text: str, stop_strings: tuple[str, ...], start: int = 0) -> int:
    """Index of the earliest stop string ending at or after `start`, or -1.

    Only the tail that new text can have completed is searched.
    """
    best = -1
    for s in stop_strings:
        i = text.find(s, max(0, start - len(s) + 1))
        if i >= 0 and (best < 0 or i < best):
            best = i
    return best


def partial_stop_len(text: str, stop_strings: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that starts some stop string.

    A stream holds that much back: the next token may complete the stop string.
    """
    longest = 0
    for s in stop_strings:
        for n in range(min(len(s) - 1, len(text)), longest, -1):
            if text.endswith(s[:n]):
                longest = n
                break
    return longest
