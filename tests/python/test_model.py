"""The export model's attention against textbook attention over the joined
cache: the model attends to the cache and the new rows separately (so the
graph never copies the caches), which must not change the result."""

from __future__ import annotations

import math

import pytest
import torch

from llama_fixtures import tiny_config
from staticllm.exporter.models.blocks import Attention, rotate


def textbook_attention(att: Attention, x, cos, sin, mask, k_cache, v_cache):  # noqa: ANN001, ANN201
    cfg = att.cfg
    seq, hd = x.shape[1], cfg.head_dim
    q = rotate(att.q_proj(x).view(1, seq, cfg.n_heads, hd).transpose(1, 2), cos, sin)
    k = rotate(att.k_proj(x).view(1, seq, cfg.n_kv_heads, hd).transpose(1, 2), cos, sin)
    v = att.v_proj(x).view(1, seq, cfg.n_kv_heads, hd).transpose(1, 2)
    groups = cfg.n_heads // cfg.n_kv_heads
    keys = torch.cat([k_cache, k], dim=2).repeat_interleave(groups, dim=1)
    values = torch.cat([v_cache, v], dim=2).repeat_interleave(groups, dim=1)
    probs = torch.softmax(q @ keys.transpose(2, 3) / math.sqrt(hd) + mask, dim=-1)
    out = (probs @ values).transpose(1, 2).reshape(1, seq, cfg.n_heads * hd)
    return att.o_proj(out), k, v


@pytest.mark.parametrize("seq", [1, 5])
@pytest.mark.parametrize("n_kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_split_cache_attention_matches_textbook(seq, n_kv_heads):
    torch.manual_seed(seq * 10 + n_kv_heads)
    cfg = tiny_config(n_kv_heads=n_kv_heads)
    att = Attention(cfg).eval().requires_grad_(False)
    cache_len, hd = 12, cfg.head_dim
    x = torch.randn(1, seq, cfg.dim)
    angles = torch.randn(seq, hd // 2)
    cos, sin = angles.cos()[None, None], angles.sin()[None, None]
    k_cache = torch.randn(1, n_kv_heads, cache_len, hd)
    v_cache = torch.randn(1, n_kv_heads, cache_len, hd)
    # some cache slots masked out, as the ring buffer's mask does
    mask = torch.zeros(1, seq, cache_len + seq)
    mask[..., 3:7] = float("-inf")
    got = att(x, cos, sin, mask, k_cache, v_cache)
    want = textbook_attention(att, x, cos, sin, mask, k_cache, v_cache)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
