"""Additive attention masks [1, L, cache_len + L] that match the cache contents.

Columns [0, cache_len) are cache slots, [cache_len, cache_len + L) the call's
own tokens. 0 means attend, -inf (or the bundle's finite `mask_value`, which
a Neural Engine bundle needs) means not. A cache slot is visible to a row
only when it holds a position (it was written and not overwritten since) that
lies before the row's position. Among the new tokens, `allowed[j, i]` says
whether row j sees token i; padding rows see only themselves so that no row
is all -inf (softmax of an all -inf row is NaN).
"""

from __future__ import annotations

import numpy as np

NEG_INF = float("-inf")


def fill_mask(
    out: np.ndarray,
    slot_pos: np.ndarray,
    row_pos: np.ndarray,
    allowed: np.ndarray,
    window: int | None = None,
    masked: float = NEG_INF,
) -> None:
    """Writes the mask for one call into `out` in place.

    slot_pos[s]: position held by cache slot s, -1 for an empty slot.
    row_pos[j]: position of input row j.
    allowed[j, i]: row j attends to new token i.
    window: a row at position p sees only positions above p - window (every
    row of the call, cache slots and new tokens alike); None: no window.
    masked: the value of the entries a row does not see.
    """
    cache_len = slot_pos.shape[0]
    n = row_pos.shape[0]
    if out.shape != (1, n, cache_len + n) or allowed.shape != (n, n):
        raise ValueError(
            f"mask shape {out.shape} does not fit {n} rows over {cache_len} cache slots "
            f"(allowed is {allowed.shape})"
        )
    visible = (slot_pos[None, :] >= 0) & (slot_pos[None, :] < row_pos[:, None])
    if window is not None:
        visible &= slot_pos[None, :] > row_pos[:, None] - window
        # a padding row sees only itself, which is always inside the window
        allowed = allowed & ((row_pos[None, :] > row_pos[:, None] - window) | np.eye(n, dtype=bool))
    np.copyto(out[0, :, :cache_len], np.where(visible, 0.0, masked), casting="unsafe")
    np.copyto(out[0, :, cache_len:], np.where(allowed, 0.0, masked), casting="unsafe")


def causal_allowed(n_rows: int, n_valid: int) -> np.ndarray:
    """Causal among the first n_valid rows; padding rows see only themselves."""
    allowed = np.tril(np.ones((n_rows, n_rows), dtype=bool))
    allowed[:, n_valid:] = False
    allowed[n_valid:, :] = False
    idx = np.arange(n_valid, n_rows)
    allowed[idx, idx] = True
    return allowed


def tree_allowed(parents: np.ndarray) -> np.ndarray:
    """Rows form a forest: each row sees itself and its chain of ancestors.

    parents[j] is the row index of j's parent (< j) or -1 for a root. This is
    how lookahead lays out its grid and candidate branches in one call.
    """
    n = parents.shape[0]
    allowed = np.eye(n, dtype=bool)
    for j in range(n):
        p = int(parents[j])
        if p >= j:
            raise ValueError(f"row {j} has parent {p}; a parent must come before its child")
        if p >= 0:
            allowed[j] |= allowed[p]
    return allowed
