"""Token ids to text pieces, one token at a time, never splitting a character.

A token may hold part of a UTF-8 sequence (byte-fallback and byte-level
tokenizers), and SentencePiece drops the leading space of the first piece it
decodes. So each step decodes a small window twice (the previous piece alone,
and with the new tokens) and hands out the difference once it no longer ends
in U+FFFD, the replacement character a partial sequence decodes to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from staticllm.generate.stopping import find_stop, partial_stop_len

REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self._decode = decode
        self.ids: list[int] = []
        self._prefix = 0  # start of the window already turned into text
        self._read = 0  # end of that window

    def push(self, token: int) -> str:
        """Adds one token; returns the text it completes ("" while held back)."""
        self.ids.append(token)
        return self._advance(final=False)

    def flush(self) -> str:
        """Whatever is still held back, replacement characters included."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        if self._read >= len(self.ids):
            return ""
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if len(after) <= len(before) and not final:
            return ""
        if after.endswith(REPLACEMENT) and not final:
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return after[len(before) :]


class TextStream:
    """Incremental text with stop strings: text that might begin a stop string
    is held back until the next token settles it."""

    def __init__(self, decode: Callable[[Sequence[int]], str], stop_strings: tuple[str, ...] = ()) -> None:
        self.decoder = IncrementalDecoder(decode)
        self.stop_strings = stop_strings
        self.text = ""
        self.stopped = False  # a stop string was found; text is cut before it
        self._emitted = 0

    def push(self, token: int) -> str:
        if self.stopped:
            return ""
        return self._add(self.decoder.push(token), final=False)

    def finish(self) -> str:
        if self.stopped:
            return ""
        return self._add(self.decoder.flush(), final=True)

    def _add(self, piece: str, final: bool) -> str:
        start = len(self.text)
        self.text += piece
        safe = len(self.text)
        if self.stop_strings:
            i = find_stop(self.text, self.stop_strings, start)
            if i >= 0:
                self.text, self.stopped, safe = self.text[:i], True, i
            elif not final:
                safe -= partial_stop_len(self.text, self.stop_strings)
        out = self.text[self._emitted : safe]
        self._emitted = max(self._emitted, safe)
        return out
