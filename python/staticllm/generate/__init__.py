"""Text generation over a bundle: KV cache, masks, prefill/decode runner,
lookahead decoding, sampling, stopping, streaming and chat sessions."""

from __future__ import annotations

from staticllm.generate.chat import ChatSession
from staticllm.generate.generator import GenerateOptions, GenerationResult, Generator, Timings
from staticllm.generate.lookahead import LookaheadOptions
from staticllm.llm_section import LLMSpec

__all__ = [
    "ChatSession",
    "GenerateOptions",
    "GenerationResult",
    "Generator",
    "LLMSpec",
    "LookaheadOptions",
    "Timings",
]
