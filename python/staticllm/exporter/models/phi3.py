"""Phi-3 (Hugging Face `phi3`, GGUF `phi3`): fused `qkv_proj` and
`gate_up_proj` (gate first), longrope scaling with its short factors (the
long ones apply only past `original_max_position_embeddings`, so a longer
context is refused), sliding window on every layer when set."""

from __future__ import annotations

from typing import Any

import torch

from staticllm.exporter import support
from staticllm.exporter.config import ModelConfig
from staticllm.exporter.models.blocks import Attention, CausalLM, DecoderLayer, GatedMLP, Linear

MODEL_TYPES = ("phi3",)
GGUF_ARCHITECTURES = ("phi3",)
GGUF_QK_INTERLEAVED = False


class FusedAttention(Attention):
    def make_projections(self, cfg: ModelConfig) -> None:
        self.qkv_proj = Linear(cfg.dim, (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim, bias=False)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q_size, kv_size = self.cfg.n_heads * self.cfg.head_dim, self.cfg.n_kv_heads * self.cfg.head_dim
        q, k, v = torch.split(self.qkv_proj(x), [q_size, kv_size, kv_size], dim=self.target.channel_axis)
        return q, k, v


class FusedMLP(GatedMLP):
    def make_projections(self, cfg: ModelConfig) -> None:
        self.gate_up_proj = Linear(cfg.dim, 2 * cfg.hidden_dim, bias=False)

    def gate_up(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate, up = self.gate_up_proj(x).chunk(2, dim=self.target.channel_axis)
        return gate, up


class Phi3Layer(DecoderLayer):
    attention_class = FusedAttention
    mlp_class = FusedMLP


class Model(CausalLM):
    layer_class = Phi3Layer


def config_from_hf(c: dict[str, Any], where: str) -> ModelConfig:
    support.check_hf_keys(c, where)
    if c.get("attention_bias"):
        raise support.refuse(where, "attention_bias", c["attention_bias"], "Phi-3 biases are not implemented")
    cfg = support.hf_base(c, where, "phi3", rope_types=("longrope",))
    if cfg.rope_scaling is not None:
        cfg.rope_max_context = int(cfg.rope_scaling["original_max_position_embeddings"])
    return cfg


def config_from_gguf(field: support.Field, arch: str, where: str, n_tokens: int) -> ModelConfig:
    window = field(f"{arch}.attention.sliding_window")
    return support.gguf_base(
        field, arch, where, n_tokens, architecture="phi3", sliding_window=int(window) if window else None
    )
