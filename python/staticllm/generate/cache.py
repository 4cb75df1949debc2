"""The KV cache the runner owns: one numpy array per cache input, as a ring.

A token at position p lives in slot p % cache_len. The graphs only read the
caches; after a call the runner copies the rows of k_out/v_out it keeps into
their slots, in place, so a step moves a few rows and never a whole cache.
`slot_pos` records which position each slot holds (-1: empty), which is what
the mask is built from.
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

    def holds_prefix(self, length: int) -> bool:
        """True if positions 0..length-1 are all present."""
        if length > self.cache_len:
            return False
        return bool(np.array_equal(self.slot_pos[:length], np.arange(length)))

    def commit(
        self, outputs: Mapping[str, np.ndarray], rows: np.ndarray | slice, positions: np.ndarray
    ) -> None:
        """Writes rows `rows` of every k_out/v_out into the slots of `positions`."""
        positions = np.asarray(positions, dtype=np.int64)
        n = positions.shape[0]
        if n == 0:
            return
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
