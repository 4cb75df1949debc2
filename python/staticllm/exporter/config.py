"""The model hyper-parameters every checkpoint loader produces, for every family.

One flat record: the family modules (exporter/models/) read the fields they
use. Defaults are Llama's, so a field a family does not set means "as Llama".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SLIDING, FULL = "sliding_attention", "full_attention"  # transformers' layer_types values


@dataclass
class ModelConfig:
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    hidden_dim: int
    architecture: str = "llama"  # the family module (exporter/models/<architecture>.py)
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    # None = plain RoPE; else a dict with "rope_type" llama3 (factor, low_freq_factor,
    # high_freq_factor, original_max_position_embeddings), linear (factor) or
    # longrope (short_factor, attention_factor, original_max_position_embeddings).
    rope_scaling: dict[str, Any] | None = None
    tied_embeddings: bool = False
    qkv_bias: bool = False
    head_dim: int = 0  # 0 = dim // n_heads
    # Sliding-window attention: the window, and which layers have it (None:
    # every layer when sliding_window is set).
    sliding_window: int | None = None
    layer_types: tuple[str, ...] | None = None
    rope_local_theta: float | None = None  # RoPE base of the sliding layers (Gemma 3)
    qk_norm: bool = False  # per-head RMSNorm on q and k before rotary
    hidden_act: str = "silu"  # the gated MLP's activation: silu or gelu_pytorch_tanh
    # Longest context the rotary setting is valid for (Phi-3 longrope: its
    # short factors end at original_max_position_embeddings); None: no limit.
    rope_max_context: int | None = None
    attn_scale: float | None = None  # None = head_dim ** -0.5
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            self.head_dim = self.dim // self.n_heads
        if self.n_heads % self.n_kv_heads != 0:
            from staticllm.errors import ExportError

            raise ExportError(
                f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})"
            )
        if self.layer_types is not None:
            self.layer_types = tuple(self.layer_types)

    def is_sliding(self, layer: int) -> bool:
        if self.sliding_window is None:
            return False
        return self.layer_types is None or self.layer_types[layer] == SLIDING

    def windows(self, max_context_len: int) -> list[int | None]:
        """Each layer's attention window at this context: None where the layer
        attends to every earlier position (no window, or one that never
        drops a position of a context this long)."""
        w = self.sliding_window
        return [
            w if self.is_sliding(i) and w is not None and w < max_context_len else None
            for i in range(self.n_layers)
        ]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d
