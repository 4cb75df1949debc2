"""Mistral (Hugging Face `mistral`; llama.cpp writes it as GGUF `llama`):
Llama with sliding-window attention on every layer when `sliding_window` is
set, and head_dim from the config."""

from __future__ import annotations

from typing import Any

from staticllm.exporter import support
from staticllm.exporter.config import ModelConfig
from staticllm.exporter.models.blocks import CausalLM

MODEL_TYPES = ("mistral",)
GGUF_ARCHITECTURES = ()  # llama.cpp converts Mistral to `llama`
GGUF_QK_INTERLEAVED = True

Model = CausalLM


def config_from_hf(c: dict[str, Any], where: str) -> ModelConfig:
    support.check_hf_keys(c, where)
    return support.hf_base(c, where, "mistral")
