"""Export targets: the profile the shared blocks (models/blocks.py) consult
to shape the graph for where it will run.

- `generic` (the default): the graph as it always was, shaped for a CPU or
  GPU: `linear` on [1, S, D] data, the RMSNorm reduction in fp32, a `-inf`
  mask, rotary tables gathered by position inside the graph, one LM head.
- `ane`: shaped to follow the Neural Engine rules `staticllm check` applies
  (check/rules.py): fp16 everywhere, inputs and outputs included; hidden
  states as [1, C, 1, S] with every projection a 1x1 conv; attention per head;
  an RMSNorm that cannot overflow fp16 (scaled by the row's largest magnitude
  first); a finite mask value; rotary cos/sin as inputs the runner computes
  from positions; the LM head and embeddings in chunks of at most `max_dim`
  rows (embeddings also at most 65,535, so no gather reads an index above 16
  bits); the head optionally reduced in the model to a top-k per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

from staticllm.check.rules import MAX_GATHER_ROWS, TARGETS
from staticllm.errors import ExportError

GENERIC, ANE = "generic", "ane"
NAMES = (GENERIC, ANE)
HEADS = ("logits", "argmax", "topk")
DEFAULT_ANE_MAX_DIM = 16_384
# Apple's causal-mask value (NE rules, "Causal mask"): finite in fp16, and
# exp of it is 0, so a masked score weighs nothing.
ANE_MASK_VALUE = -40_000.0
MAX_TOPK = 64  # candidates per chunk: a few numbers per row, not a vocabulary


@dataclass(frozen=True)
class ExportTarget:
    name: str
    bc1s: bool = False  # hidden states [1, C, 1, S], projections as 1x1 conv, attention per head
    rope_inputs: bool = False  # rotary cos/sin are inputs (the runner computes them) instead of input_pos
    safe_norm: bool = False  # RMSNorm in fp16 scaled by max|x| (else its reduction runs in fp32)
    mask_value: float = float("-inf")  # what the runner writes into masked mask entries
    max_dim: int | None = None  # rows per LM head / embedding chunk; None: one piece
    head: str = "logits"  # logits | argmax | topk
    head_k: int = 0  # candidates per chunk (argmax: 1)

    @property
    def channel_axis(self) -> int:
        """The axis of hidden features in the hidden state."""
        return 1 if self.bc1s else -1

    @property
    def seq_axis(self) -> int:
        """The axis of the input rows in the hidden state."""
        return 3 if self.bc1s else 1

    @property
    def chunk_rows(self) -> int | None:
        """Rows per chunk of the embedding table and of the LM head: at most
        max_dim, and at most 65,535 so every row index a gather reads fits
        16 bits. One size for both, so a tied table is one set of chunks."""
        return None if self.max_dim is None else min(self.max_dim, MAX_GATHER_ROWS)

    @property
    def check_target(self) -> str | None:
        """The `staticllm check` target whose largest dimension max_dim fits
        (the strictest one): what an export for this target must pass."""
        if self.max_dim is None:
            return None
        fits = [t for t in TARGETS.values() if t.max_dim >= self.max_dim]
        return min(fits, key=lambda t: t.max_dim).name

    def describe(self) -> str:
        if self.name == GENERIC:
            return GENERIC
        head = self.head if self.head != "topk" else f"topk {self.head_k}"
        return f"{self.name} (chunks of {self.max_dim} rows, head {head}, check {self.check_target})"


GENERIC_TARGET = ExportTarget(GENERIC)


def make_target(
    name: str = GENERIC, max_dim: int | None = None, head: str | None = None, k: int | None = None
) -> ExportTarget:
    """The target of an export, its options checked before any work starts."""
    if name not in NAMES:
        raise ExportError(f"unknown export target {name!r}; choose one of {', '.join(NAMES)}")
    if name == GENERIC:
        for option, value in (("ane_max_dim", max_dim), ("head", head), ("topk", k)):
            if value is not None and not (option == "head" and value == "logits"):
                raise ExportError(f"{option} applies to target 'ane' only (this export's target is generic)")
        return GENERIC_TARGET
    return ExportTarget(
        ANE,
        bc1s=True,
        rope_inputs=True,
        safe_norm=True,
        mask_value=ANE_MASK_VALUE,
        max_dim=_max_dim(max_dim),
        head=_head(head),
        head_k=_head_k(head, k),
    )


def _max_dim(max_dim: int | None) -> int:
    if max_dim is None:
        return DEFAULT_ANE_MAX_DIM
    largest = max(t.max_dim for t in TARGETS.values())
    if isinstance(max_dim, bool) or not isinstance(max_dim, int) or not 1 <= max_dim <= largest:
        raise ExportError(
            f"ane_max_dim must be an integer in 1..{largest} (the largest dimension a Neural Engine takes), "
            f"got {max_dim!r}"
        )
    return max_dim


def _head(head: str | None) -> str:
    if head is None:
        return "logits"
    if head not in HEADS:
        raise ExportError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    return head


def _head_k(head: str | None, k: int | None) -> int:
    if head == "topk":
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_TOPK:
            raise ExportError(f"head topk needs k, an integer in 1..{MAX_TOPK}, got {k!r}")
        return k
    if k is not None:
        raise ExportError(f"k applies to head topk only (head is {head or 'logits'})")
    return 1 if head == "argmax" else 0
