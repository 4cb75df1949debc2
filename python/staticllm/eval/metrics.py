"""Per-row quality measures of logits, in float64, a few rows at a time
(one window of a 50k vocabulary is 100 MB per copy).

- negative log-likelihood of the true next token -> perplexity = exp(mean)
- SNR: 10 log10(sum ref^2 / sum (ref - test)^2) per row, in dB, then averaged
- top-1 agreement: argmax(ref) == argmax(test)
- KL(ref || test) of the two softmax distributions, in nats
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_ROWS = 64


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log p(target) for each row."""
    out = np.empty(len(targets))
    for s in range(0, len(targets), _ROWS):
        lp = log_softmax(logits[s : s + _ROWS])
        out[s : s + _ROWS] = -lp[np.arange(lp.shape[0]), targets[s : s + _ROWS]]
    return out


def snr_db(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Per row; +inf where the rows are identical. A few rows at a time: a
    whole window of Gemma 3's 262,144-entry vocabulary is 1 GB per float64
    copy, and four such temporaries made this a fifth of a Gemma eval."""
    signal, noise = np.empty(ref.shape[0]), np.empty(ref.shape[0])
    for s in range(0, ref.shape[0], _ROWS):
        r = np.asarray(ref[s : s + _ROWS], dtype=np.float64)
        e = r - np.asarray(test[s : s + _ROWS], dtype=np.float64)
        signal[s : s + _ROWS], noise[s : s + _ROWS] = (r * r).sum(axis=-1), (e * e).sum(axis=-1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(signal / noise)


def kl_divergence(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    out = np.empty(ref.shape[0])
    for s in range(0, ref.shape[0], _ROWS):
        lp, lq = log_softmax(ref[s : s + _ROWS]), log_softmax(test[s : s + _ROWS])
        out[s : s + _ROWS] = (np.exp(lp) * (lp - lq)).sum(axis=-1)
    return out


@dataclass
class Totals:
    """Sums over every scored row of every window."""

    rows: int = 0
    nll: float = 0.0
    ref_nll: float = 0.0
    snr_db: float = 0.0
    top1: int = 0
    kl: float = 0.0

    def add(self, logits: np.ndarray, targets: np.ndarray, ref: np.ndarray | None = None) -> None:
        self.rows += len(targets)
        self.nll += float(token_nll(logits, targets).sum())
        if ref is not None:
            self.ref_nll += float(token_nll(ref, targets).sum())
            self.snr_db += float(snr_db(ref, logits).sum())
            self.top1 += int((ref.argmax(axis=-1) == logits.argmax(axis=-1)).sum())
            self.kl += float(kl_divergence(ref, logits).sum())

    def perplexity(self) -> float:
        return math.exp(self.nll / self.rows)

    def reference_perplexity(self) -> float:
        return math.exp(self.ref_nll / self.rows)
