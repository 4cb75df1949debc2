"""The KV cache the runner owns: one numpy array per cache input, as a ring.

A token at position p lives in slot p % cache_len. The graphs only read the
caches; after a call the runner copies the rows of k_out/v_out it keeps into
their slots, in place, so a step moves a few rows and never a whole cache.
`slot_pos` records which position each slot holds (-1: empty), which is what
the mask is built from. One KVCache serves one cache group (llm_section.CacheGroup):
a sliding-window group's ring holds its window and wraps by design.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from staticllm.errors import BundleError


class KVCache:
    def __init__(
        self, inputs: Sequence[str], outputs: Sequence[str], shape: tuple[int, ...], dtype: np.dtype
    ) -> None:
        if len(inputs) != len(outputs):
            raise ValueError(f"{len(inputs)} cache inputs but {len(outputs)} cache outputs")
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.shape = tuple(shape)
        self.cache_len = self.shape[2]
        # Zeros, never garbage: a masked slot still enters q.k, and 0 * NaN is NaN.
        self.arrays = {name: np.zeros(self.shape, dtype) for name in self.inputs}
        self.slot_pos = np.full(self.cache_len, -1, dtype=np.int64)

    def reset(self) -> None:
        """Forgets every position; the arrays are reused as they are."""
        self.slot_pos.fill(-1)

    def truncate(self, length: int) -> None:
        """Forgets positions >= length (keeps a shared prompt prefix)."""
        self.slot_pos[self.slot_pos >= length] = -1

    def holds_window_before(self, length: int, window: int | None) -> bool:
        """True if the positions a token at `length` may see (all of 0..length-1,
        or the last `window` of them) are present."""
        first = 0 if window is None else max(0, length - window)
        if length - first > self.cache_len:
            return False
        wanted = np.arange(first, length)
        return bool(np.array_equal(self.slot_pos[wanted % self.cache_len], wanted))

    def commit(
        self, outputs: Mapping[str, np.ndarray], rows: np.ndarray | slice, positions: np.ndarray
    ) -> None:
        """Writes rows `rows` of every k_out/v_out into the slots of `positions`."""
        positions = np.asarray(positions, dtype=np.int64)
        n = positions.shape[0]
        if n == 0:
            return
        if n > self.cache_len:  # a ring shorter than the call keeps the last rows only
            idx = np.arange(rows.start or 0, rows.stop) if isinstance(rows, slice) else np.asarray(rows)
            rows = idx[n - self.cache_len :]
            positions, n = positions[n - self.cache_len :], self.cache_len
        slots = positions % self.cache_len
        first = int(slots[0])
        contiguous = first + n <= self.cache_len and bool(np.all(np.diff(slots) == 1))
        for src_name, dst_name in zip(self.outputs, self.inputs):
            src = outputs[src_name]
            if src.ndim != 4 or src.shape[:2] != self.shape[:2] or src.shape[3] != self.shape[3]:
                raise BundleError(
                    f"output {src_name} has shape {tuple(src.shape)}; expected "
                    f"[1, {self.shape[1]}, seq, {self.shape[3]}] to match cache {dst_name} {list(self.shape)}"
                )
            dst = self.arrays[dst_name]
            if contiguous:
                dst[:, :, first : first + n, :] = src[:, :, rows, :]
            else:
                dst[:, :, slots, :] = src[:, :, rows, :]
        self.slot_pos[slots] = positions
