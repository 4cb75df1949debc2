"""The rotary inputs of a bundle that takes them (llm_section.RopeInput):
cos and sin of each row's position, computed as export computes its tables
(float64 angles, times the scale, rounded to float32, then to the input's dtype)."""

from __future__ import annotations

import numpy as np

from staticllm.llm_section import RopeInput


class RotaryFill:
    """Fills one RopeInput's cos and sin arrays [1, L, n] in place."""

    def __init__(self, rope: RopeInput) -> None:
        self.inv_freq = np.asarray(rope.inv_freq, dtype=np.float64)
        self.scale = rope.scale

    def __call__(self, cos: np.ndarray, sin: np.ndarray, positions: np.ndarray) -> None:
        angles = np.outer(positions.astype(np.float64), self.inv_freq)
        np.copyto(cos[0], (np.cos(angles) * self.scale).astype(np.float32), casting="unsafe")
        np.copyto(sin[0], (np.sin(angles) * self.scale).astype(np.float32), casting="unsafe")
