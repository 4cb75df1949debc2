"""Gemma 3 text (Hugging Face `gemma3_text`, GGUF `gemma3`), as transformers'
modeling_gemma3 computes it:

- embeddings scaled by sqrt(hidden_size) (a constant in the model dtype);
- RMSNorm computing x / rms(x) * (1 + w), four per layer (input,
  post-attention, pre-feedforward, post-feedforward) and per-head on q and k;
- query scale query_pre_attn_scalar ** -0.5;
- GELU-tanh gated MLP;
- sliding-window attention on the layers `layer_types` marks, whose rotary
  base is the local one (rope_local_base_freq, 10,000); the global layers use
  rope_theta with its scaling;
- tied embeddings.

llama.cpp's converter stores every norm weight with the 1 already added; the
GGUF loader subtracts it (as transformers' GGUF loader does), so the model
has one convention.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from staticllm.exporter import support
from staticllm.exporter.config import FULL, SLIDING, ModelConfig
from staticllm.exporter.models.blocks import Attention, CausalLM, GatedMLP, RMSNorm

MODEL_TYPES = ("gemma3_text",)
GGUF_ARCHITECTURES = ("gemma3",)
GGUF_QK_INTERLEAVED = False
GGUF_NORM_SHIFT = 1.0  # llama.cpp stores 1 + w
# llama.cpp's Gemma 3: every sixth layer global, local rotary base 10,000
GGUF_SLIDING_PATTERN = 6
LOCAL_ROPE_THETA = 10000.0


class Gemma3Layer(torch.nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        eps = cfg.norm_eps
        self.input_layernorm = RMSNorm(cfg.dim, eps, offset=True)
        self.self_attn = Attention(cfg, norm_offset=True)
        self.post_attention_layernorm = RMSNorm(cfg.dim, eps, offset=True)
        self.pre_feedforward_layernorm = RMSNorm(cfg.dim, eps, offset=True)
        self.mlp = GatedMLP(cfg)
        self.post_feedforward_layernorm = RMSNorm(cfg.dim, eps, offset=True)

    def forward(self, x, cos, sin, mask, k_cache, v_cache):  # noqa: ANN001, ANN201
        h, k, v = self.self_attn(self.input_layernorm(x), cos, sin, mask, k_cache, v_cache)
        x = x + self.post_attention_layernorm(h)
        x = x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))
        return x, k, v


class Model(CausalLM):
    layer_class = Gemma3Layer
    residual_scale = 1.0  # the residual stream is carried divided by this (fold_residual_scale)

    def make_norm(self, cfg: ModelConfig) -> torch.nn.Module:
        return RMSNorm(cfg.dim, cfg.norm_eps, offset=True)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(tokens) * (math.sqrt(self.cfg.dim) / self.residual_scale)

    def fold_residual_scale(self, s: float) -> None:
        """Carries the residual stream divided by `s` (a power of two) at no
        cost in ops: the embedding scale and the post-attention and
        post-feedforward norm weights (1 + w) are divided by s, and the norms
        that read the stream (input, pre-feedforward, final) take eps / s^2,
        which makes them exactly what they were (rms(x / s) = rms(x) / s).
        Gemma 3's residual grows past what fp16 holds; divided, it fits."""
        with torch.no_grad():
            for layer in self.model.layers:
                for norm in (layer.post_attention_layernorm, layer.post_feedforward_layernorm):
                    norm.weight.copy_((1.0 + norm.weight) / s - 1.0)
                for norm in (layer.input_layernorm, layer.pre_feedforward_layernorm):
                    norm.eps /= s * s
            self.model.norm.eps /= s * s
        self.residual_scale *= s


def config_from_hf(c: dict[str, Any], where: str) -> ModelConfig:
    support.check_hf_keys(c, where, hidden_act=None, hidden_activation="gelu_pytorch_tanh")
    if c.get("attention_bias"):
        raise support.refuse(
            where, "attention_bias", c["attention_bias"], "Gemma 3 biases are not implemented"
        )
    n_layers = int(support.need(c, "num_hidden_layers", where))
    heads = int(support.need(c, "num_attention_heads", where))
    head_dim = int(c.get("head_dim") or int(support.need(c, "hidden_size", where)) // heads)
    window, types = support.hf_layer_types(c, n_layers, where)
    global_theta, global_scaling, local_theta = _rope(c, where)
    return support.hf_base(
        c,
        where,
        "gemma3",
        rope_theta=global_theta,
        rope_scaling=global_scaling,
        rope_local_theta=local_theta,
        sliding_window=window,
        layer_types=types,
        qk_norm=True,
        hidden_act="gelu_pytorch_tanh",
        attn_scale=float(c.get("query_pre_attn_scalar", head_dim)) ** -0.5,
        norm_eps=float(c.get("rms_norm_eps", 1e-6)),
        tied_embeddings=bool(c.get("tie_word_embeddings", True)),
    )


def _rope(c: dict[str, Any], where: str) -> tuple[float, dict[str, Any] | None, float]:
    """(global theta, global scaling, local theta): transformers 5 keeps one
    rope setting per layer type; older configs have rope_theta, rope_scaling
    (global) and rope_local_base_freq."""
    params = c.get("rope_parameters")
    if isinstance(params, dict) and FULL in params:
        theta, scaling = support.hf_rope(c, where, ("linear",), params[FULL], f"rope_parameters.{FULL}")
        local = params.get(SLIDING) or {}
        local_theta, _ = support.hf_rope(c, where, (), local, f"rope_parameters.{SLIDING}")
        return theta, scaling, local_theta if SLIDING in params else LOCAL_ROPE_THETA
    theta, scaling = support.hf_rope(c, where, ("linear",))
    return theta, scaling, float(c.get("rope_local_base_freq", LOCAL_ROPE_THETA))


def config_from_gguf(field: support.Field, arch: str, where: str, n_tokens: int) -> ModelConfig:
    n_layers = int(field(f"{arch}.block_count") or 0)
    window = field(f"{arch}.attention.sliding_window")
    types = tuple(FULL if (i + 1) % GGUF_SLIDING_PATTERN == 0 else SLIDING for i in range(n_layers))
    cfg = support.gguf_base(
        field,
        arch,
        where,
        n_tokens,
        architecture="gemma3",
        sliding_window=int(window) if window else None,
        layer_types=types if window else None,
        rope_local_theta=LOCAL_ROPE_THETA,
        qk_norm=True,
        hidden_act="gelu_pytorch_tanh",
        tied_embeddings=True,
    )
    # transformers reads no query_pre_attn_scalar from GGUF and keeps its
    # default, 256, which is every text Gemma 3's head_dim except the 27B's.
    cfg.attn_scale = 256.0**-0.5
    return cfg
