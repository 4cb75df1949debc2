"""The model hyper-parameters every checkpoint loader produces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class LlamaConfig:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    hidden_dim: int
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    # Llama 3 style scaling: factor, low_freq_factor, high_freq_factor,
    # original_max_position_embeddings. None = plain RoPE.
    rope_scaling: dict[str, float] | None = None
    tied_embeddings: bool = False
    qkv_bias: bool = False
    head_dim: int = 0  # 0 = dim // n_heads
    # The attention window of windowed layers (None: none). Not implemented:
    # export refuses a window shorter than the context (exporter/support.py).
    sliding_window: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            self.head_dim = self.dim // self.n_heads
        if self.n_heads % self.n_kv_heads != 0:
            from staticllm.errors import ExportError

            raise ExportError(
                f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d
