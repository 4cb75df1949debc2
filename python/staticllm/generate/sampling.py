"""Choosing the next token from logits: greedy, temperature, top-k, top-p,
repetition penalty, all from one seeded numpy Generator so runs repeat.
A top-k head's candidates (generate/head.py) serve greedy and top-k sampling
with top_k up to the head's k: the same choice the full logits would give."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from staticllm.errors import InputError
from staticllm.generate.head import Candidates, Scores, check_sampling

# Candidates examined before falling back to a full sort for top-p.
_TOP_P_FIRST_GUESS = 256


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: no limit
    top_p: float = 1.0  # 1: no limit
    repetition_penalty: float = 1.0  # 1: none
    seed: int | None = None

    def __post_init__(self) -> None:
        _check_number("temperature", self.temperature)
        if self.temperature < 0:
            raise InputError(f"temperature must be >= 0 (0 means greedy), got {self.temperature}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer)) or self.top_k < 0:
            raise InputError(f"top_k must be an integer >= 0 (0 means no limit), got {self.top_k!r}")
        _check_number("top_p", self.top_p)
        if not 0.0 < self.top_p <= 1.0:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")
        _check_number("repetition_penalty", self.repetition_penalty)
        if self.repetition_penalty <= 0:
            raise InputError(f"repetition_penalty must be > 0 (1 means none), got {self.repetition_penalty}")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0
        ):
            raise InputError(f"seed must be an integer >= 0, got {self.seed!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _check_number(name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(float(value))
    ):
        raise InputError(f"{name} must be a finite number, got {value!r}")


class Sampler:
    """Stateful: holds the random generator and the tokens seen so far."""

    def __init__(self, options: SamplingOptions, vocab_size: int, history: list[int] | None = None) -> None:
        self.options = options
        self.vocab_size = vocab_size
        self.rng = np.random.default_rng(options.seed)
        # Penalised token set, kept as a bool map so a step costs O(new tokens).
        self._seen = np.zeros(vocab_size, dtype=bool)
        self._seen_ids: list[int] = []
        for t in history or []:
            self.observe(t)

    def observe(self, token: int) -> None:
        """Adds a token to the repetition-penalty history."""
        if 0 <= token < self.vocab_size and not self._seen[token]:
            self._seen[token] = True
            self._seen_ids.append(token)

    def __call__(self, logits: Scores) -> int:
        """Picks one token from logits [vocab] (any float dtype) or a top-k
        head's candidates; does not observe it."""
        if isinstance(logits, Candidates):
            return self._from_candidates(logits)
        x = np.asarray(logits, dtype=np.float32)[: self.vocab_size]
        o = self.options
        if o.repetition_penalty != 1.0 and self._seen_ids:
            x = x.copy()
            idx = np.fromiter(self._seen_ids, dtype=np.int64, count=len(self._seen_ids))
            vals = x[idx]
            x[idx] = np.where(vals > 0, vals / o.repetition_penalty, vals * o.repetition_penalty)
        if o.greedy:
            return int(np.argmax(x))
        return self._sample(x.astype(np.float64) / o.temperature)

    def _from_candidates(self, c: Candidates) -> int:
        o = self.options
        check_sampling(c.head, o)
        ids, vals = c.ranked()
        if o.greedy:
            return int(ids[0])
        ids, vals = ids[: o.top_k], vals[: o.top_k].astype(np.float64) / o.temperature
        top = float(vals[0])
        return self._draw(ids, vals, top + math.log(float(np.exp(vals - top).sum())))

    def _sample(self, x: np.ndarray) -> int:
        ids, vals, log_z = _top_candidates(x, self.options.top_k, self.options.top_p)
        return self._draw(ids, vals, log_z)

    def _draw(self, ids: np.ndarray, vals: np.ndarray, log_z: float) -> int:
        """One id from candidates sorted by descending logit (already divided
        by the temperature), log_z their log partition function."""
        o = self.options
        probs = np.exp(vals - log_z)  # probabilities within the top-k set, descending
        if o.top_p < 1.0:
            # Smallest prefix whose mass reaches top_p (the top token always stays).
            keep = int(np.searchsorted(np.cumsum(probs), o.top_p, side="left")) + 1
            ids, probs = ids[:keep], probs[:keep]
        cum = np.cumsum(probs)
        j = int(np.searchsorted(cum, self.rng.random() * cum[-1], side="right"))
        return int(ids[min(j, len(ids) - 1)])


def _top_candidates(x: np.ndarray, top_k: int, top_p: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Candidate ids sorted by descending logit (ties: lower id first), their
    logits, and log of the partition function over the top-k set (or all)."""
    n = x.shape[0]
    if 0 < top_k < n:
        ids = np.argpartition(-x, top_k - 1)[:top_k]
        universe = x[ids]
    else:
        ids, universe = np.arange(n), x
    top = float(universe.max())
    log_z = top + math.log(float(np.exp(universe - top).sum()))
    if top_p < 1.0 and len(ids) > _TOP_P_FIRST_GUESS:
        # The nucleus is usually small: sort a first guess when its mass suffices.
        guess = ids[np.argpartition(-x[ids], _TOP_P_FIRST_GUESS - 1)[:_TOP_P_FIRST_GUESS]]
        if float(np.exp(x[guess] - log_z).sum()) >= top_p:
            ids = guess
    order = np.lexsort((ids, -x[ids]))
    ids = ids[order]
    return ids, x[ids], log_z
