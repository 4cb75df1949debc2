"""Reading a method's LM head outputs (llm_section.Head) as the sampler needs them.

A "logits" head gives the vocabulary's logits, as one output or as chunks
concatenated here in order. An "argmax" / "topk" head gives, per chunk of
the vocabulary, its k largest logits and their ids: the union over the
chunks holds the k largest of the whole vocabulary, which is all that
greedy decoding and top-k sampling (top_k <= k) use. Anything else needs
the full logits, and `check_sampling` says so before a generation starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from staticllm.errors import BundleError, InputError, MetadataError
from staticllm.llm_section import Head


@dataclass(frozen=True)
class Candidates:
    """One row of a top-k head: vocabulary ids and their logits (in no
    particular order), holding at least the k largest of the vocabulary."""

    ids: np.ndarray
    values: np.ndarray
    head: Head  # whose k bounds what sampling may use

    def ranked(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, values) by descending value, ties by lower id (as np.argmax over logits)."""
        order = np.lexsort((self.ids, -self.values))
        return self.ids[order], self.values[order]

    def best(self) -> int:
        return int(self.ranked()[0][0])


Scores = np.ndarray | Candidates  # what the sampler chooses from: a row of logits, or candidates


class HeadReader:
    """The head outputs of one method, checked against the llm section once."""

    def __init__(self, head: Head, method: Any, vocab_size: int, n_rows: int, full_rows: bool) -> None:
        self.head = head
        self.where = f"method {method.name!r}"
        outs = {s.name: s for s in method.output_specs}
        missing = [n for n in head.outputs if n not in outs]
        if missing:
            raise MetadataError(f"{self.where} has no output {missing[0]!r} (the llm section's head)")
        lead = (1, n_rows) if full_rows else (1,)
        shapes = [tuple(outs[n].shape) for n in head.outputs]
        widths = [s[-1] for s in shapes]
        if any(s[:-1] != lead for s in shapes):
            raise MetadataError(
                f"{self.where}: head outputs {list(head.outputs)} have shapes {[list(s) for s in shapes]}; "
                f"expected {list(lead)} + [n] for logits mode {'full' if full_rows else 'last'!r}"
            )
        if head.full_logits and sum(widths) != vocab_size:
            raise MetadataError(
                f"{self.where}: logits outputs {list(head.outputs)} hold {sum(widths)} columns, "
                f"not the vocabulary's {vocab_size}"
            )
        if not head.full_logits and (widths[0] != widths[1] or widths[0] % head.k):
            raise MetadataError(
                f"{self.where}: top-k outputs {list(head.outputs)} of widths {widths} do not hold "
                f"{head.k} candidates per chunk"
            )

    @property
    def full_logits(self) -> bool:
        return self.head.full_logits

    def row(self, outputs: Mapping[str, np.ndarray], row: int) -> Scores:
        """The scores of one row (row is ignored for a method returning one row)."""
        parts = [self._row_of(outputs[n], row) for n in self.head.outputs]
        if not self.full_logits:
            return Candidates(parts[1].astype(np.int64), parts[0].astype(np.float32), self.head)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def rows(self, outputs: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """Logits [n, vocab] of the first n rows of a full-logits method."""
        if not self.full_logits:
            raise InputError(f"{self.where} returns top-k candidates, not logits (head {self.head.mode})")
        return np.concatenate([np.asarray(outputs[name][0, :n]) for name in self.head.outputs], axis=-1)

    def greedy(self, outputs: Mapping[str, np.ndarray], rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The highest-scoring id of each of `rows`."""
        picks = []
        for r in rows:
            s = self.row(outputs, int(r))
            picks.append(s.best() if isinstance(s, Candidates) else int(np.argmax(s)))
        return np.asarray(picks, dtype=np.int64)

    def _row_of(self, out: np.ndarray, row: int) -> np.ndarray:
        if out.ndim == 3:
            return out[0, row]
        if out.ndim == 2:
            return out[0]
        raise BundleError(f"{self.where} returned a head output of shape {list(out.shape)}")


def check_sampling(head: Head, options: Any) -> None:
    """Refuses, before anything runs, sampling that a top-k head cannot serve."""
    if head.full_logits:
        return
    flag = f"--head topk {head.k}" if head.mode == "topk" else f"--head {head.mode}"
    what = (
        f"this bundle's LM head returns the {head.k} largest logit(s) of each vocabulary chunk "
        f"(exported with {flag}), not the logits"
    )
    again = "or export with --head logits"
    if options.repetition_penalty != 1.0:
        raise InputError(
            f"{what}; repetition_penalty changes logits outside them and needs full logits, {again}"
        )
    if not options.greedy and not 1 <= options.top_k <= head.k:
        raise InputError(
            f"{what}; sampling at temperature {options.temperature} needs top_k between 1 and {head.k} "
            f"(got {options.top_k}; 0 means the whole vocabulary, which needs full logits); use greedy "
            f"decoding (temperature 0), {again}"
        )
