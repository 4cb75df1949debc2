"""The blocks' math in the Neural Engine layout (export target `ane`,
exporter/targets.py), following Apple's rules (check/rules.py cites them):

- hidden states are [1, C, 1, S] (channels, then rows on the last axis) and
  every projection is a 1x1 conv on them;
- RMSNorm in fp16 without overflow: the row is divided by its largest
  magnitude before squaring, so the sum of squares is at most the row's length;
- attention per head, each head's scores [1, S, cache + S] against the
  caches [1, kv_heads, cache, head_dim] (head_dim last, as the runner keeps them);
- the embedding table and the LM head in chunks of rows: every gather reads
  a table small enough for 16-bit row indices and the chip's largest
  dimension, every head chunk is one conv whose output is a graph output or
  reduced to its top-k in the model.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F  # noqa: N812


def conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A linear layer's weight [out, in] as a 1x1 conv on [1, in, 1, S] data."""
    return F.conv2d(x, weight[:, :, None, None], bias)


def to_bc1s(x: torch.Tensor) -> torch.Tensor:
    """[1, S, D] -> [1, D, 1, S]."""
    return x.transpose(1, 2).unsqueeze(2)


# Smallest divisor of the norm's rescale: below it the row is multiplied up
# instead, which keeps (sqrt(eps) / m)^2 within fp16 (see safe_rms_norm).
_NORM_FLOOR = 2.0**-10


def safe_rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float, axis: int) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * w along `axis`, computed as
    y / sqrt(mean(y^2) + eps / m^2) * w with y = x / m, m = max|x| (floored):
    the same value for any m > 0, and |y| <= 1, so the fp16 sum of squares
    cannot overflow (coremltools #2585, #2821). eps / m^2 is formed as
    (sqrt(eps) / m)^2 with m >= max(2^-10, sqrt(eps) / 128), at most 16,384."""
    root = math.sqrt(eps)
    m = torch.maximum(x.abs().amax(dim=axis, keepdim=True), x.new_tensor(max(_NORM_FLOOR, root / 128.0)))
    y = x / m
    e = x.new_tensor(root) / m
    # division and sqrt, not reciprocal and rsqrt: Core ML's inverse and rsqrt
    # add an epsilon of their own (1e-4 for inverse), kept in fp32
    return y / torch.sqrt((y * y).mean(dim=axis, keepdim=True) + e * e) * w


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def heads(x: torch.Tensor, n: int, head_dim: int) -> torch.Tensor:
    """A projection's [1, n * head_dim, 1, S] as [1, n, S, head_dim]."""
    return x.view(1, n, head_dim, x.shape[3]).transpose(2, 3)


def attention(
    attn: Any,
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    mask: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """blocks.Attention on x [1, D, 1, S], one head at a time: returns
    (o_proj output [1, D, 1, S], new keys and values [1, kv_heads, S, head_dim]).
    Each head's scores are its rows of q against the cache and against the
    new keys, joined (the caches are never copied), masked and softmaxed;
    a query head reads the kv head its group shares."""
    cfg = attn.cfg
    hd, kv, n_heads = cfg.head_dim, cfg.n_kv_heads, cfg.n_heads
    groups, cache_len = n_heads // kv, k_cache.shape[2]
    q, k, v = attn.project(x)
    q, k, v = heads(q, n_heads, hd), heads(k, kv, hd), heads(v, kv, hd)
    if cfg.qk_norm:
        q, k = attn.q_norm(q, axis=-1), attn.k_norm(k, axis=-1)
    # the query scale goes on q once, not on every head's scores
    q = rotate(q, cos, sin) * attn.scale
    k = rotate(k, cos, sin)
    outs = []
    for h in range(n_heads):
        j = h // groups
        qh = q[:, h]
        scores = torch.cat(
            [torch.matmul(qh, k_cache[:, j].transpose(1, 2)), torch.matmul(qh, k[:, j].transpose(1, 2))],
            dim=-1,
        )
        probs = torch.softmax(scores + mask, dim=-1)
        outs.append(
            torch.matmul(probs[..., :cache_len], v_cache[:, j])
            + torch.matmul(probs[..., cache_len:], v[:, j])
        )
    out = to_bc1s(torch.cat(outs, dim=-1))  # [1, S, n_heads * hd] -> [1, n_heads * hd, 1, S]
    return attn.o_proj(out), k, v


def lookup(weight: torch.Tensor, tokens: torch.Tensor, rows: int) -> torch.Tensor:
    """The embedding rows of tokens [1, S], [1, S, D], read from chunks of
    `rows` rows shaped [rows, D, 1, 1] (the LM head's conv weights, so a tied
    table is stored once). Each chunk gathers at the token's index within it
    (clamped into range) and keeps the row only where the token lies inside."""
    vocab, dim = weight.shape
    n = tokens.shape[1]
    if vocab <= rows:
        return torch.index_select(_chunk(weight, 0, vocab), 0, tokens.view(-1)).view(1, n, dim)
    out = None
    for start in range(0, vocab, rows):
        size = min(rows, vocab - start)
        local = tokens.view(-1) - start
        inside = (local >= 0) & (local < size)
        picked = torch.index_select(_chunk(weight, start, size), 0, torch.clamp(local, 0, size - 1))
        picked = picked.view(n, dim) * inside.to(weight.dtype)[:, None]
        out = picked if out is None else out + picked
    assert out is not None
    return out.view(1, n, dim)


def _chunk(weight: torch.Tensor, start: int, size: int) -> torch.Tensor:
    return weight[start : start + size][:, :, None, None]


def head(
    weight: torch.Tensor, x: torch.Tensor, rows: int, mode: str, k: int, last: bool
) -> tuple[torch.Tensor, ...]:
    """The LM head on x [1, D, 1, S] in chunks of `rows` vocabulary rows,
    each a 1x1 conv. "logits": each chunk's logits, [1, S, rows] (or [1, rows]
    when `last`); "argmax"/"topk": the k largest logits of each chunk and
    their vocabulary ids, joined: ([1, S, chunks * k], [1, S, chunks * k])."""
    vocab = weight.shape[0]
    logits = [F.conv2d(x, _chunk(weight, s, min(rows, vocab - s))) for s in range(0, vocab, rows)]
    if mode == "logits":
        return tuple(_rows(y, last) for y in logits)
    values, ids = [], []
    for start, y in zip(range(0, vocab, rows), logits):
        v, i = torch.topk(y, k, dim=1)
        values.append(v)
        ids.append((i + start).to(torch.int32))
    return _rows(torch.cat(values, dim=1), last), _rows(torch.cat(ids, dim=1), last)


def _rows(y: torch.Tensor, last: bool) -> torch.Tensor:
    """[1, N, 1, S] -> [1, S, N], or [1, N] for one row."""
    return y.view(1, y.shape[1]) if last else y.squeeze(2).transpose(1, 2)
