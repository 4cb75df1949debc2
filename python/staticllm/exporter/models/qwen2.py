"""Qwen2 / Qwen2.5 (Hugging Face `qwen2`, GGUF `qwen2`): Llama with biases on
the q, k and v projections (transformers' Qwen2Attention always has them),
tied embeddings on the small sizes, sliding windows on the layers
`layer_types` marks when `use_sliding_window` is set."""

from __future__ import annotations

from typing import Any

from staticllm.exporter import support
from staticllm.exporter.config import ModelConfig
from staticllm.exporter.models.blocks import CausalLM

MODEL_TYPES = ("qwen2",)
GGUF_ARCHITECTURES = ("qwen2",)
GGUF_QK_INTERLEAVED = False

Model = CausalLM


def config_from_hf(c: dict[str, Any], where: str) -> ModelConfig:
    support.check_hf_keys(c, where)
    return support.hf_base(c, where, "qwen2", qkv_bias=True)


def config_from_gguf(field: support.Field, arch: str, where: str, n_tokens: int) -> ModelConfig:
    return support.gguf_base(field, arch, where, n_tokens, architecture="qwen2", qkv_bias=True)
