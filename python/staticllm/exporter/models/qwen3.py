"""Qwen3 (Hugging Face `qwen3`, GGUF `qwen3`): Llama with a per-head RMSNorm
on q and k before rotary, and head_dim from the config (independent of
hidden_size / num_heads)."""

from __future__ import annotations

from typing import Any

from staticllm.exporter import support
from staticllm.exporter.config import ModelConfig
from staticllm.exporter.models.blocks import CausalLM

MODEL_TYPES = ("qwen3",)
GGUF_ARCHITECTURES = ("qwen3",)
GGUF_QK_INTERLEAVED = False

Model = CausalLM


def config_from_hf(c: dict[str, Any], where: str) -> ModelConfig:
    support.check_hf_keys(c, where)
    if c.get("attention_bias"):
        raise support.refuse(where, "attention_bias", c["attention_bias"], "Qwen3 biases are not implemented")
    return support.hf_base(c, where, "qwen3", qk_norm=True)


def config_from_gguf(field: support.Field, arch: str, where: str, n_tokens: int) -> ModelConfig:
    return support.gguf_base(field, arch, where, n_tokens, architecture="qwen3", qk_norm=True)
