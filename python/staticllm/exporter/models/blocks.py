"""The blocks every family is built from, with Hugging Face parameter names.

Every shape is fixed at trace time. The KV cache is explicit: the graph reads
per-layer caches [1, n_kv_heads, cache_len, head_dim] (cache_len: the
layer's cache group, llm_section.CacheGroup) and returns the keys and values
of its own input positions; the caller writes them into the caches. Rotary
embeddings use the "rotate half" layout (Hugging Face's); the Meta and GGUF
loaders turn interleaved q/k rows into it.

forward(tokens, input_pos, *attn_masks, [last_index], *caches) -> (logits, k0, v0, ...):
one mask per cache group, `last_index` only for "last" logits over several rows.

The export target (exporter/targets.py) shapes the graph: every block holds
it (`Targeted.target`, set by `CausalLM.set_target`) and consults it. The
`ane` target takes rotary cos/sin pairs instead of input_pos, keeps hidden
states as [1, D, 1, S] and returns the head's outputs (llm_section.Head) in
place of `logits`; its math is in ane_ops.py.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from staticllm.exporter.config import ModelConfig
from staticllm.exporter.models import ane_ops
from staticllm.exporter.targets import GENERIC_TARGET, ExportTarget
from staticllm.llm_section import GraphIO, cache_groups, graph_io

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": nn.functional.silu,
    "gelu_pytorch_tanh": lambda x: nn.functional.gelu(x, approximate="tanh"),
}


def rope_frequencies(
    head_dim: int, theta: float, scaling: dict[str, Any] | None
) -> tuple[torch.Tensor, float]:
    """(inverse frequencies [head_dim / 2], factor on cos and sin) as
    transformers' rope types default, linear, llama3 and longrope compute them."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64, device="cpu") / head_dim))
    if scaling is None:
        return inv, 1.0
    s, kind = scaling, scaling["rope_type"]
    if kind == "linear":
        return inv / float(s["factor"]), 1.0
    if kind == "longrope":  # the short factors: the context never exceeds the original length
        short = torch.tensor(s["short_factor"], dtype=torch.float64, device="cpu")
        return inv / short, float(s["attention_factor"])
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
    return torch.where(is_mid, mid, scaled), 1.0


class Targeted:
    """A block that consults the export target (CausalLM.set_target sets it)."""

    target: ExportTarget = GENERIC_TARGET


class Linear(Targeted, nn.Linear):
    """nn.Linear (same parameters) that is a 1x1 conv on [1, D, 1, S] data
    when the target wants that layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.target.bc1s:
            return ane_ops.conv1x1(x, self.weight, self.bias)
        return super().forward(x)


class Embedding(Targeted, nn.Embedding):
    """nn.Embedding (same weight) that reads its table in chunks when the target limits them."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        rows = self.target.chunk_rows
        if rows is None:
            return super().forward(tokens)
        return ane_ops.lookup(self.weight, tokens, rows)


class RMSNorm(Targeted, nn.Module):
    """x / rms(x) * w, or * (1 + w) with `offset` (Gemma stores w - 1), over
    `axis` (default: the target's feature axis)."""

    def __init__(self, dim: int, eps: float, offset: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.offset = offset
        self.weight = nn.Parameter(torch.zeros(dim) if offset else torch.ones(dim))

    def forward(self, x: torch.Tensor, axis: int | None = None) -> torch.Tensor:
        w = 1.0 + self.weight if self.offset else self.weight
        axis = self.target.channel_axis if axis is None else axis
        if self.target.safe_norm:
            shape = [1] * x.dim()
            shape[axis] = -1
            return ane_ops.safe_rms_norm(x, w.view(shape), self.eps, axis)
        return x * torch.rsqrt(x.pow(2).mean(axis, keepdim=True) + self.eps) * w


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(Targeted, nn.Module):
    """Grouped-query attention over an explicit cache, with the options the
    families need: q/k/v biases, per-head q/k norms, a query scale."""

    def __init__(self, cfg: ModelConfig, norm_offset: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.make_projections(cfg)
        self.o_proj = Linear(cfg.n_heads * hd, cfg.dim, bias=False)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(hd, cfg.norm_eps, norm_offset)
            self.k_norm = RMSNorm(hd, cfg.norm_eps, norm_offset)
        self.scale = cfg.attn_scale if cfg.attn_scale is not None else 1.0 / math.sqrt(hd)

    def make_projections(self, cfg: ModelConfig) -> None:
        hd = cfg.head_dim
        self.q_proj = Linear(cfg.dim, cfg.n_heads * hd, bias=cfg.qkv_bias)
        self.k_proj = Linear(cfg.dim, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)
        self.v_proj = Linear(cfg.dim, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.target.bc1s:
            return ane_ops.attention(self, x, cos, sin, mask, k_cache, v_cache)
        cfg = self.cfg
        seq = x.shape[1]
        hd, kv, groups = cfg.head_dim, cfg.n_kv_heads, cfg.n_heads // cfg.n_kv_heads
        q, k, v = self.project(x)
        q = q.view(1, seq, cfg.n_heads, hd)
        k = k.view(1, seq, kv, hd)
        if cfg.qk_norm:
            q, k = self.q_norm(q, axis=-1), self.k_norm(k, axis=-1)
        q = rotate(q.transpose(1, 2), cos, sin)
        k = rotate(k.transpose(1, 2), cos, sin)
        v = v.view(1, seq, kv, hd).transpose(1, 2)
        # The cache and the new rows are attended to separately and only the
        # small score rows are joined: concatenating the caches would copy all
        # of k_cache and v_cache on every call, most of a decode step's traffic
        # after the weights. Grouped-query attention without copying keys per
        # head: the query heads that share a kv head become extra rows of one matmul.
        cache_len = k_cache.shape[2]
        total = cache_len + seq
        qg = q.reshape(1, kv, groups * seq, hd)
        scores = torch.cat(
            [torch.matmul(qg, k_cache.transpose(2, 3)), torch.matmul(qg, k.transpose(2, 3))], dim=-1
        )
        scores = (scores * self.scale).view(1, kv, groups, seq, total) + mask.view(1, 1, 1, seq, total)
        probs = torch.softmax(scores, dim=-1).view(1, kv, groups * seq, total)
        out = torch.matmul(probs[..., :cache_len], v_cache) + torch.matmul(probs[..., cache_len:], v)
        out = out.view(1, cfg.n_heads, seq, hd).transpose(1, 2).reshape(1, seq, cfg.n_heads * hd)
        return self.o_proj(out), k, v


class GatedMLP(Targeted, nn.Module):
    """down(act(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.act = ACTIVATIONS[cfg.hidden_act]
        self.make_projections(cfg)
        self.down_proj = Linear(cfg.hidden_dim, cfg.dim, bias=False)

    def make_projections(self, cfg: ModelConfig) -> None:
        self.gate_proj = Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.up_proj = Linear(cfg.dim, cfg.hidden_dim, bias=False)

    def gate_up(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gate_proj(x), self.up_proj(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x)
        return self.down_proj(self.act(gate) * up)


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    attention_class: type[Attention] = Attention
    mlp_class: type[GatedMLP] = GatedMLP

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = self.attention_class(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = self.mlp_class(cfg)

    def forward(self, x, cos, sin, mask, k_cache, v_cache):  # noqa: ANN001, ANN201
        h, k, v = self.self_attn(self.input_layernorm(x), cos, sin, mask, k_cache, v_cache)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x)), k, v


class Backbone(nn.Module):
    """Hugging Face's `model.` prefix: embeddings, layers, final norm."""

    def __init__(self, cfg: ModelConfig, make_layer: Callable[[int], nn.Module], norm: nn.Module) -> None:
        super().__init__()
        self.embed_tokens = Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(make_layer(i) for i in range(cfg.n_layers))
        self.norm = norm


class CausalLM(Targeted, nn.Module):
    """A decoder-only LM with Hugging Face parameter names (`model.layers.3.
    self_attn.q_proj.weight`, `lm_head.weight`). Families subclass it and
    override `make_layer`, `make_norm` or `embed`."""

    layer_class: type[nn.Module] = DecoderLayer

    def __init__(self, cfg: ModelConfig, max_context_len: int = 2048) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = Backbone(cfg, self.make_layer, self.make_norm(cfg))
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        if cfg.tied_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.set_max_context(max_context_len)
        # "full": logits for every input row; "last": only row last_index.
        self.logits_mode = "full"

    # names the exporter and quantization use
    embedding_name = "model.embed_tokens.weight"
    lm_head_name = "lm_head.weight"

    def make_layer(self, index: int) -> nn.Module:
        return self.layer_class(self.cfg)

    def make_norm(self, cfg: ModelConfig) -> nn.Module:
        return RMSNorm(cfg.dim, cfg.norm_eps)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(tokens)

    def tie_weights(self) -> None:
        """Ties the LM head to the embeddings again (loading by assignment unties them)."""
        if self.cfg.tied_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def rope_tables(self) -> list[tuple[float, dict[str, Any] | None]]:
        """(theta, scaling) of each rotary table; `layer_rope(i)` picks one."""
        cfg = self.cfg
        tables = [(cfg.rope_theta, cfg.rope_scaling)]
        if cfg.rope_local_theta is not None:
            tables.append((cfg.rope_local_theta, None))
        return tables

    def layer_rope(self, index: int) -> int:
        return 1 if self.cfg.rope_local_theta is not None and self.cfg.is_sliding(index) else 0

    def set_max_context(self, n: int) -> None:
        """Rotary tables for positions < n and the cache groups at context n."""
        self.max_context_len = n
        self.groups = cache_groups(self.cfg.windows(n), n)
        self.layer_group = {i: gi for gi, g in enumerate(self.groups) for i in g.layers}
        for t, (inv, factor) in enumerate(self.rope_parameters()):
            freqs = torch.outer(torch.arange(n, dtype=torch.float64, device="cpu"), inv)
            # Named rope_* so quantization leaves the rotary tables alone.
            self.register_buffer(f"rope_cos_{t}", (freqs.cos() * factor).float(), persistent=False)
            self.register_buffer(f"rope_sin_{t}", (freqs.sin() * factor).float(), persistent=False)

    def rope_parameters(self) -> list[tuple[torch.Tensor, float]]:
        """(inverse frequencies [head_dim / 2] in float64, factor) of each rotary table."""
        return [rope_frequencies(self.cfg.head_dim, theta, s) for theta, s in self.rope_tables()]

    def set_target(self, target: ExportTarget) -> None:
        """Every block consults `target` from now on."""
        for m in self.modules():
            if isinstance(m, Targeted):
                m.target = target

    @contextlib.contextmanager
    def targeting(self, target: ExportTarget) -> Iterator[None]:
        saved = self.target
        self.set_target(target)
        try:
            yield
        finally:
            self.set_target(saved)

    def graph_io(self) -> GraphIO:
        """The names and roles of this graph's inputs and outputs for its target."""
        t = self.target
        rope = [(inv.tolist(), factor) for inv, factor in self.rope_parameters()] if t.rope_inputs else []
        rows = t.chunk_rows or self.cfg.vocab_size
        return graph_io(
            self.cfg.n_layers, self.groups, rope, (t.head, t.head_k, -(-self.cfg.vocab_size // rows))
        )

    def forward(self, tokens: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(tokens, input_pos or the rotary pairs, *masks, [last_index], *caches)."""
        t = self.target
        n_rope = 2 * len(self.rope_tables()) if t.rope_inputs else 1
        positions, rest = rest[:n_rope], rest[n_rope:]
        masks, rest = rest[: len(self.groups)], rest[len(self.groups) :]
        if self.logits_mode == "last" and tokens.shape[1] > 1:
            last_index, caches = rest[0], rest[1:]
        else:
            last_index, caches = None, rest
        x = self.embed(tokens)
        if t.bc1s:
            x = ane_ops.to_bc1s(x)
        ropes = self.rotary(positions)
        new_kv: list[torch.Tensor] = []
        for i, layer in enumerate(self.model.layers):
            cos, sin = ropes[self.layer_rope(i)]
            mask = masks[self.layer_group[i]]
            x, k, v = layer(x, cos, sin, mask, caches[2 * i], caches[2 * i + 1])
            new_kv += [k, v]
        if self.logits_mode == "last":
            x = self.last_row(x, last_index)
        return (*self.head(self.model.norm(x)), *new_kv)

    def rotary(self, positions: tuple[torch.Tensor, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(cos, sin) [1, 1, S, head_dim / 2] of each table: gathered by
        input_pos from the tables, or the inputs themselves ([1, S, head_dim / 2])."""
        if self.target.rope_inputs:
            return [
                (positions[2 * t][:, None], positions[2 * t + 1][:, None]) for t in range(len(positions) // 2)
            ]
        input_pos = positions[0]
        return [
            (
                getattr(self, f"rope_cos_{t}")[input_pos][None, None],
                getattr(self, f"rope_sin_{t}")[input_pos][None, None],
            )
            for t in range(len(self.rope_tables()))
        ]

    def last_row(self, x: torch.Tensor, last_index: torch.Tensor | None) -> torch.Tensor:
        """The hidden state of the row whose logits are returned: [1, D] (or [1, D, 1, 1])."""
        if self.target.bc1s:
            return x[..., -1:] if last_index is None else torch.index_select(x, 3, last_index)
        return x[:, -1, :] if last_index is None else torch.index_select(x, 1, last_index).squeeze(1)

    def head(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The LM head's outputs (llm_section.Head) from the final norm's output."""
        t = self.target
        if not t.bc1s:
            return (self.lm_head(x),)
        rows = t.chunk_rows or self.cfg.vocab_size
        return ane_ops.head(self.lm_head.weight, x, rows, t.head, t.head_k, self.logits_mode == "last")

    def sequence_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [n, vocab] of one forward over tokens [1, n] from position 0
        with empty caches, windows applied: the reference for tests and the
        quality gate (always the generic graph: the same math in plain form)."""
        n = tokens.shape[1]
        pos = torch.arange(n)
        masks = []
        for g in self.groups:
            visible = pos[None, :] <= pos[:, None]
            if g.window is not None:
                visible &= pos[None, :] > pos[:, None] - g.window
            masks.append(torch.where(visible, 0.0, float("-inf"))[None])
        cfg = self.cfg
        empty = torch.zeros(1, cfg.n_kv_heads, 0, cfg.head_dim)
        saved, self.logits_mode = self.logits_mode, "full"
        try:
            with torch.no_grad(), self.targeting(GENERIC_TARGET):
                out = self(tokens.to(torch.int32), pos.to(torch.int32), *masks, *[empty] * (2 * cfg.n_layers))
        finally:
            self.logits_mode = saved
        return out[0][0]
