"""Llama 2 / 3.x (Hugging Face `llama`, GGUF `llama`, Meta checkpoints):
RMSNorm, SiLU-gated MLP, RoPE with optional llama3 or linear scaling, tied
embeddings on the small sizes. The reference blocks as they are."""

from __future__ import annotations

from typing import Any

from staticllm.exporter import support
from staticllm.exporter.config import ModelConfig
from staticllm.exporter.models.blocks import CausalLM

MODEL_TYPES = ("llama",)
GGUF_ARCHITECTURES = ("llama",)
# llama.cpp's converter interleaves llama's q/k rows (Meta's rotary layout)
GGUF_QK_INTERLEAVED = True

Model = CausalLM


def config_from_hf(c: dict[str, Any], where: str) -> ModelConfig:
    support.check_hf_keys(c, where)
    if c.get("attention_bias"):
        raise support.refuse(
            where, "attention_bias", c["attention_bias"], "the bias on o_proj is not implemented"
        )
    return support.hf_base(c, where, "llama", rope_types=("llama3", "linear"))


def config_from_gguf(field: support.Field, arch: str, where: str, n_tokens: int) -> ModelConfig:
    return support.gguf_base(field, arch, where, n_tokens, architecture="llama")
