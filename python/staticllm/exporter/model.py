"""A static-shape Llama written for export to Core ML.

Every shape is fixed at trace time. The KV cache is explicit: the graph reads
per-layer caches [1, n_kv_heads, cache_len, head_dim] and returns the keys and
values of its own input positions; the caller writes them into the caches.
Rotary embeddings use the "rotate half" layout (Hugging Face's); loaders turn
Meta/GGUF interleaved q/k rows into it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from staticllm.exporter.config import LlamaConfig


def rope_frequencies(cfg: LlamaConfig) -> torch.Tensor:
    """Inverse frequencies [head_dim / 2], with Llama 3 scaling if configured."""
    hd = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    s = cfg.rope_scaling
    if not s:
        return inv
    factor = float(s.get("factor", 8.0))
    low = float(s.get("low_freq_factor", 1.0))
    high = float(s.get("high_freq_factor", 4.0))
    old_len = float(s.get("original_max_position_embeddings", 8192))
    wavelen = 2 * math.pi / inv
    low_wavelen, high_wavelen = old_len / low, old_len / high
    smooth = (old_len / wavelen - low) / (high - low)
    scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
    mid = (1 - smooth) * inv / factor + smooth * inv
    is_mid = (wavelen <= low_wavelen) & (wavelen >= high_wavelen)
    return torch.where(is_mid, mid, scaled)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=cfg.qkv_bias)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)
        self.wo = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        seq = x.shape[1]
        hd, kv, groups = cfg.head_dim, cfg.n_kv_heads, cfg.n_heads // cfg.n_kv_heads
        q = self.wq(x).view(1, seq, cfg.n_heads, hd).transpose(1, 2)
        k = self.wk(x).view(1, seq, kv, hd).transpose(1, 2)
        v = self.wv(x).view(1, seq, kv, hd).transpose(1, 2)
        q = rotate(q, cos, sin)
        k = rotate(k, cos, sin)
        # The cache and the new rows are attended to separately and only the
        # small score rows are joined: concatenating the caches would copy all
        # of k_cache and v_cache on every call, most of a decode step's traffic
        # after the weights. Grouped-query attention without copying keys per
        # head: the query heads that share a kv head become extra rows of one matmul.
        cache_len = k_cache.shape[2]
        total = cache_len + seq
        scale = 1.0 / math.sqrt(hd)
        qg = q.reshape(1, kv, groups * seq, hd)
        scores = torch.cat(
            [torch.matmul(qg, k_cache.transpose(2, 3)), torch.matmul(qg, k.transpose(2, 3))], dim=-1
        )
        scores = (scores * scale).view(1, kv, groups, seq, total) + mask.view(1, 1, 1, seq, total)
        probs = torch.softmax(scores, dim=-1).view(1, kv, groups * seq, total)
        out = torch.matmul(probs[..., :cache_len], v_cache) + torch.matmul(probs[..., cache_len:], v)
        out = out.view(1, cfg.n_heads, seq, hd).transpose(1, 2).reshape(1, seq, cfg.n_heads * hd)
        return self.wo(out), k, v


class FeedForward(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.w2 = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(nn.functional.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x, cos, sin, mask, k_cache, v_cache):  # noqa: ANN001, ANN201
        h, k, v = self.attention(self.attention_norm(x), cos, sin, mask, k_cache, v_cache)
        x = x + h
        return x + self.feed_forward(self.ffn_norm(x)), k, v


class Llama(nn.Module):
    """forward(tokens, input_pos, attn_mask, [last_index], *caches) -> (logits, k0, v0, ...)."""

    def __init__(self, cfg: LlamaConfig, max_context_len: int = 2048) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tied_embeddings:
            self.output.weight = self.tok_embeddings.weight
        self.set_max_context(max_context_len)
        # "full": logits for every input row; "last": only row last_index.
        self.logits_mode = "full"

    def set_max_context(self, n: int) -> None:
        freqs = torch.outer(torch.arange(n, dtype=torch.float64), rope_frequencies(self.cfg))
        # Named so quantization can leave the rotary tables alone.
        self.register_buffer("rope_cos", freqs.cos().float(), persistent=False)
        self.register_buffer("rope_sin", freqs.sin().float(), persistent=False)

    def forward(
        self, tokens: torch.Tensor, input_pos: torch.Tensor, attn_mask: torch.Tensor, *rest: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        if self.logits_mode == "last" and tokens.shape[1] > 1:
            last_index, caches = rest[0], rest[1:]
        else:
            last_index, caches = None, rest
        x = self.tok_embeddings(tokens)
        cos = self.rope_cos[input_pos].unsqueeze(0).unsqueeze(0)
        sin = self.rope_sin[input_pos].unsqueeze(0).unsqueeze(0)
        new_kv: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, cos, sin, attn_mask, caches[2 * i], caches[2 * i + 1])
            new_kv += [k, v]
        if self.logits_mode == "last":
            x = x[:, -1, :] if last_index is None else torch.index_select(x, 1, last_index).squeeze(1)
        logits = self.output(self.norm(x))
        return (logits, *new_kv)
