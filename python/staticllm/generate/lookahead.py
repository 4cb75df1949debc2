"""Lookahead decoding (Fu et al., 2024) inside one fixed-length forward call.

Each call of a single-method bundle (input_len rows, full logits) carries:

  row 0            the current token x_q at position q (its KV is not cached yet)
  lookahead grid   R <= N-1 levels of W tokens; token (l, c) sits at position
                   q+1+l+c and sees level 0 columns 0..c and levels 1..l of its
                   own column: one Jacobi trajectory per column
  verification     up to G candidate (N-1)-grams from the pool that start after
                   x_q, candidate token d at position q+1+d, each seeing x_q
                   and its own earlier tokens
  padding          the rest, seeing only itself

Every row sees the committed cache. The visibility is a tree (each row has
one parent), so the mask is `masks.tree_allowed(parents)`.

From the logits: x_q's row gives the next token; while a candidate agrees
with the tokens chosen so far, its row gives the one after, so a call yields
1 + (accepted candidate tokens) tokens, each chosen from exactly the logits
plain decoding would have used: greedy output is token-for-token identical.
Only the KV rows of x_q and the accepted candidate tokens are committed.
The grid's last level predicts a new level; once N-1 levels exist each column
gives an N-gram (N-1 grid tokens plus the prediction) for the pool, and the
oldest level is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from staticllm.errors import InputError
from staticllm.generate.masks import tree_allowed

DEFAULT_NGRAM, DEFAULT_WINDOW, DEFAULT_BRANCHES = 5, 4, 4


@dataclass(frozen=True)
class LookaheadOptions:
    ngram: int = DEFAULT_NGRAM  # N
    window: int = DEFAULT_WINDOW  # W
    branches: int = DEFAULT_BRANCHES  # G
    pool_from_text: bool = True  # also put the prompt's and output's N-grams in the pool

    @property
    def rows_needed(self) -> int:
        return rows_needed(self.ngram, self.window, self.branches)


def rows_needed(ngram: int, window: int, branches: int) -> int:
    """Input rows one call uses: x_q, the grid, the candidates."""
    return 1 + (window + branches) * (ngram - 1)


def resolve_options(
    input_len: int,
    ngram: int | None = None,
    window: int | None = None,
    branches: int | None = None,
    method: str = "forward",
    pool_from_text: bool = True,
) -> LookaheadOptions:
    """Checks explicit values against input_len.

    When none of the three is given, the defaults 5/4/4 are used if they fit;
    otherwise branches, then window, then ngram shrink until they do.
    """
    for name, value, low in (("ngram", ngram, 2), ("window", window, 1), ("branches", branches, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise InputError(f"lookahead {name} must be an integer >= {low}, got {value!r}")
    if ngram is None and window is None and branches is None:
        return _fit_defaults(input_len, method, pool_from_text)
    n = DEFAULT_NGRAM if ngram is None else ngram
    w = DEFAULT_WINDOW if window is None else window
    g = DEFAULT_BRANCHES if branches is None else branches
    need = rows_needed(n, w, g)
    if need > input_len:
        raise InputError(
            f"lookahead with ngram={n}, window={w}, branches={g} needs 1 + (window + branches) * (ngram - 1) "
            f"= {need} input rows, but method {method!r} takes {input_len}; lower them or export with "
            f"--input-len >= {need}"
        )
    return LookaheadOptions(n, w, g, pool_from_text)


def _fit_defaults(input_len: int, method: str, pool_from_text: bool) -> LookaheadOptions:
    n, w, g = DEFAULT_NGRAM, DEFAULT_WINDOW, DEFAULT_BRANCHES
    while rows_needed(n, w, g) > input_len:
        if g > 1:
            g -= 1
        elif w > 1:
            w -= 1
        elif n > 2:
            n -= 1
        else:
            raise InputError(
                f"lookahead needs at least {rows_needed(2, 1, 1)} input rows, but method {method!r} takes "
                f"{input_len}; export with a larger --input-len"
            )
    return LookaheadOptions(n, w, g, pool_from_text)


class NGramPool:
    """N-grams keyed by their first token; the most recent `per_key` kept."""

    def __init__(self, ngram: int, per_key: int) -> None:
        self.ngram = ngram
        self.per_key = per_key
        self._pool: dict[int, dict[tuple[int, ...], None]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._pool.values())

    def add(self, gram: Sequence[int]) -> None:
        if len(gram) != self.ngram:
            raise ValueError(f"expected a {self.ngram}-gram, got {len(gram)} tokens")
        entry = self._pool.setdefault(int(gram[0]), {})
        tail = tuple(int(t) for t in gram[1:])
        entry.pop(tail, None)  # re-insert at the end: most recent
        entry[tail] = None
        if len(entry) > self.per_key:
            del entry[next(iter(entry))]

    def add_text(self, tokens: Sequence[int], start: int = 0) -> None:
        """Adds every N-gram of `tokens` that ends at index >= start + N - 1."""
        n = self.ngram
        for i in range(max(0, start), len(tokens) - n + 1):
            self.add(tokens[i : i + n])

    def candidates(self, token: int, limit: int) -> list[tuple[int, ...]]:
        """Up to `limit` continuations of `token`, most recent first."""
        entry = self._pool.get(int(token))
        if not entry:
            return []
        return list(reversed(entry))[:limit]


class LookaheadGrid:
    """The Jacobi trajectories: up to N-1 levels of W tokens."""

    def __init__(self, options: LookaheadOptions, context: Sequence[int], seed: int = 0) -> None:
        self.options = options
        rng = np.random.default_rng(seed)
        # Level 0 starts as tokens drawn from the context: plausible guesses.
        pick = rng.integers(0, len(context), size=options.window)
        self.levels: list[np.ndarray] = [np.asarray(context, dtype=np.int64)[pick]]

    def advance(self, new_level: np.ndarray, pool: NGramPool) -> None:
        """Appends the predicted level; with N-1 levels, harvests N-grams first."""
        n_levels = self.options.ngram - 1
        if len(self.levels) == n_levels:
            grams = np.stack([*self.levels, new_level], axis=1)  # [W, N]
            for gram in grams:
                pool.add(gram.tolist())
            self.levels.pop(0)
        self.levels.append(np.asarray(new_level, dtype=np.int64))


@dataclass
class Layout:
    """Where each part of a lookahead call sits among the input rows."""

    tokens: np.ndarray  # [n_rows] int64
    depth: np.ndarray  # [n_rows] position - q
    allowed: np.ndarray  # [n_rows, n_rows] bool
    grid_rows: np.ndarray  # [R, W] row of grid token (l, c)
    cand_rows: np.ndarray  # [G', N-1] row of candidate token (g, d)


class LayoutBuilder:
    """Builds layouts; the mask of a (levels, candidates) shape is computed once."""

    def __init__(self, options: LookaheadOptions, n_rows: int) -> None:
        self.options = options
        self.n_rows = n_rows
        self._shapes: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def build(self, current: int, levels: Sequence[np.ndarray], cands: Sequence[Sequence[int]]) -> Layout:
        depth, allowed, grid_rows, cand_rows = self._shape(len(levels), len(cands))
        tokens = np.zeros(self.n_rows, dtype=np.int64)
        tokens[0] = current
        if len(levels):
            tokens[grid_rows] = np.stack(levels)
        if len(cands):
            tokens[cand_rows] = np.asarray(cands, dtype=np.int64)
        return Layout(tokens, depth, allowed, grid_rows, cand_rows)

    def _shape(self, n_levels: int, n_cands: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        key = (n_levels, n_cands)
        if key not in self._shapes:
            self._shapes[key] = self._make(n_levels, n_cands)
        return self._shapes[key]

    def _make(self, n_levels: int, n_cands: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        w, m = self.options.window, self.options.ngram - 1
        used = 1 + n_levels * w + n_cands * m
        if used > self.n_rows:
            raise InputError(f"lookahead layout needs {used} rows, the method takes {self.n_rows}")
        parents = np.full(self.n_rows, -1, dtype=np.int64)  # padding rows: roots that see only themselves
        depth = np.zeros(self.n_rows, dtype=np.int64)
        grid_rows = 1 + np.arange(n_levels * w).reshape(n_levels, w)
        for lvl in range(n_levels):
            for c in range(w):
                row = grid_rows[lvl, c]
                if lvl > 0:
                    parents[row] = grid_rows[lvl - 1, c]
                else:
                    parents[row] = grid_rows[0, c - 1] if c > 0 else 0
                depth[row] = 1 + lvl + c
        cand_rows = 1 + n_levels * w + np.arange(n_cands * m).reshape(n_cands, m)
        for g in range(n_cands):
            for d in range(m):
                parents[cand_rows[g, d]] = cand_rows[g, d - 1] if d > 0 else 0
                depth[cand_rows[g, d]] = 1 + d
        return depth, tree_allowed(parents), grid_rows, cand_rows

    def max_depth(self) -> int:
        """Largest position offset any layout uses (grid corner or candidate end)."""
        o = self.options
        return max((o.ngram - 2) + o.window, o.ngram - 1)


def verify(
    row_logits: Callable[[int], Any],
    cands: Sequence[Sequence[int]],
    cand_rows: np.ndarray,
    choose: Callable[[Any], int],
) -> tuple[list[int], list[int]]:
    """Walks the candidates: returns (tokens chosen, rows whose KV is now valid).

    tokens has one more entry than the accepted candidate tokens; rows starts
    with row 0 (x_q) followed by the accepted candidate rows.
    """
    chosen: list[int] = []
    kv_rows = [0]
    alive = list(range(len(cands)))
    row = 0
    depth = 0
    while True:
        token = choose(row_logits(row))
        chosen.append(token)
        alive = [g for g in alive if depth < len(cands[g]) and int(cands[g][depth]) == token]
        if not alive:
            return chosen, kv_rows
        row = int(cand_rows[alive[0], depth])
        kv_rows.append(row)
        depth += 1
