"""Checkpoint loaders: Meta, Hugging Face and GGUF layouts.

Each returns a `Checkpoint`: the config, a state dict named like the Meta
layout (which `model.Llama` uses) with q/k rows in the rotate-half layout, and
tokenizer material found beside the weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from staticllm.errors import ExportError
from staticllm.exporter import support
from staticllm.exporter.config import LlamaConfig


@dataclass
class Checkpoint:
    config: LlamaConfig
    state_dict: dict[str, torch.Tensor]
    source: str
    tokenizer_files: dict[str, Path] = field(default_factory=dict)  # bundle name -> source file
    tokenizer_json: str | None = None  # built in memory (GGUF)
    tokenizer_config: dict[str, Any] | None = None
    special_tokens: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # the file that described it, for messages


def interleaved_to_half(w: torch.Tensor, n_heads: int, head_dim: int) -> torch.Tensor:
    """Rows of a q/k projection from interleaved rotary pairs (Meta, GGUF) to
    the rotate-half layout: per head, even rows first, then odd rows."""
    rest = w.shape[1:]
    return w.reshape(n_heads, head_dim // 2, 2, *rest).transpose(1, 2).reshape(n_heads * head_dim, *rest)


def qk_to_rotate_half(sd: dict[str, torch.Tensor], cfg: LlamaConfig) -> None:
    """In place: every layer's wq/wk from interleaved to rotate-half rows.
    Tensors of an unexpected shape are left for check_state_dict to report."""
    for i in range(cfg.n_layers):
        for name, heads in (("wq", cfg.n_heads), ("wk", cfg.n_kv_heads)):
            key = f"layers.{i}.attention.{name}.weight"
            if key in sd and sd[key].shape[0] == heads * cfg.head_dim:
                sd[key] = interleaved_to_half(sd[key], heads, cfg.head_dim)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ExportError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: invalid JSON ({exc})") from exc


def _key(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise ExportError(f"{where}: missing key '{key}'")
    return d[key]


def expected_shapes(cfg: LlamaConfig) -> dict[str, tuple[int, ...]]:
    hd, ffn = cfg.head_dim, cfg.hidden_dim
    shapes: dict[str, tuple[int, ...]] = {
        "tok_embeddings.weight": (cfg.vocab_size, cfg.dim),
        "norm.weight": (cfg.dim,),
    }
    if not cfg.tied_embeddings:
        shapes["output.weight"] = (cfg.vocab_size, cfg.dim)
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        shapes.update(
            {
                p + "attention.wq.weight": (cfg.n_heads * hd, cfg.dim),
                p + "attention.wk.weight": (cfg.n_kv_heads * hd, cfg.dim),
                p + "attention.wv.weight": (cfg.n_kv_heads * hd, cfg.dim),
                p + "attention.wo.weight": (cfg.dim, cfg.n_heads * hd),
                p + "feed_forward.w1.weight": (ffn, cfg.dim),
                p + "feed_forward.w2.weight": (cfg.dim, ffn),
                p + "feed_forward.w3.weight": (ffn, cfg.dim),
                p + "attention_norm.weight": (cfg.dim,),
                p + "ffn_norm.weight": (cfg.dim,),
            }
        )
        if cfg.qkv_bias:
            shapes[p + "attention.wq.bias"] = (cfg.n_heads * hd,)
            shapes[p + "attention.wk.bias"] = (cfg.n_kv_heads * hd,)
            shapes[p + "attention.wv.bias"] = (cfg.n_kv_heads * hd,)
    return shapes


def check_state_dict(cfg: LlamaConfig, sd: dict[str, torch.Tensor], source: str) -> None:
    """Every tensor the model needs is present with the expected shape."""
    for name, shape in expected_shapes(cfg).items():
        if name not in sd:
            raise ExportError(f"{source}: missing tensor '{name}' (expected shape {list(shape)})")
        if tuple(sd[name].shape) != shape:
            raise ExportError(
                f"{source}: tensor '{name}' has shape {list(sd[name].shape)}, expected {list(shape)}"
            )


# ---------------------------------------------------------------- Meta layout


def _meta_hidden_dim(params: dict[str, Any], dim: int) -> int:
    if "hidden_dim" in params:
        return int(params["hidden_dim"])
    hidden = int(2 * (4 * dim) / 3)
    if params.get("ffn_dim_multiplier") is not None:
        hidden = int(params["ffn_dim_multiplier"] * hidden)
    multiple = int(params.get("multiple_of", 256))
    return multiple * ((hidden + multiple - 1) // multiple)


# Every params.json key of the Llama 2 / 3.x releases; anything else (experts,
# q/k norm, vision) describes a model this exporter does not build.
_META_KEYS = {
    "dim",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "vocab_size",
    "hidden_dim",
    "multiple_of",
    "ffn_dim_multiplier",
    "norm_eps",
    "rope_theta",
    "use_scaled_rope",
    "rope_scale_factor",
    "max_seq_len",
    "max_batch_size",
}


def load_meta(checkpoint: str | Path, params: str | Path | None = None) -> Checkpoint:
    ckpt = Path(checkpoint)
    params_path = Path(params) if params else ckpt.parent / "params.json"
    p = _read_json(params_path, "params.json")
    where = str(params_path)
    unknown = sorted(set(p) - _META_KEYS)
    if unknown:
        key = unknown[0]
        raise support.refuse(where, key, p[key], f"not a key of the Llama releases ({sorted(_META_KEYS)})")
    dim = int(_key(p, "dim", where))
    n_heads = int(_key(p, "n_heads", where))
    vocab = int(_key(p, "vocab_size", where))
    if vocab <= 0:
        raise ExportError(f"{where}: vocab_size must be positive, got {vocab}")
    scaling = None
    if p.get("use_scaled_rope"):
        scaling = {
            "factor": float(p.get("rope_scale_factor", 8.0)),
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        }
    cfg = LlamaConfig(
        dim=dim,
        n_layers=int(_key(p, "n_layers", where)),
        n_heads=n_heads,
        n_kv_heads=int(p.get("n_kv_heads") or n_heads),
        vocab_size=vocab,
        hidden_dim=_meta_hidden_dim(p, dim),
        norm_eps=float(p.get("norm_eps", 1e-5)),
        rope_theta=float(p.get("rope_theta", 10000.0)),
        rope_scaling=scaling,
    )
    if not ckpt.is_file():
        raise ExportError(f"checkpoint not found: {ckpt}")
    sd = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    if "output.weight" not in sd:
        cfg.tied_embeddings = True
    sd = {k: v.float() for k, v in sd.items() if not k.endswith("rope.freqs")}
    qk_to_rotate_half(sd, cfg)
    check_state_dict(cfg, sd, str(ckpt))
    files = {}
    tok = ckpt.parent / "tokenizer.model"
    if tok.is_file():
        files["tokenizer.model"] = tok
    return Checkpoint(cfg, sd, "meta", tokenizer_files=files, where=where)


# ------------------------------------------------------- Hugging Face layout

_HF_LAYER = {
    "self_attn.q_proj": "attention.wq",
    "self_attn.k_proj": "attention.wk",
    "self_attn.v_proj": "attention.wv",
    "self_attn.o_proj": "attention.wo",
    "mlp.gate_proj": "feed_forward.w1",
    "mlp.down_proj": "feed_forward.w2",
    "mlp.up_proj": "feed_forward.w3",
    "input_layernorm": "attention_norm",
    "post_attention_layernorm": "ffn_norm",
}


def hf_to_meta_name(name: str) -> str | None:
    if name.startswith("model."):
        name = name[len("model.") :]
    if name == "embed_tokens.weight":
        return "tok_embeddings.weight"
    if name == "norm.weight":
        return "norm.weight"
    if name == "lm_head.weight":
        return "output.weight"
    if name.startswith("layers."):
        _, idx, rest = name.split(".", 2)
        for hf, ours in _HF_LAYER.items():
            if rest.startswith(hf + "."):
                return f"layers.{idx}.{ours}{rest[len(hf) :]}"
    return None


def hf_config(c: dict[str, Any], where: str) -> LlamaConfig:
    support.check_hf_config(c, where)
    n_heads = int(_key(c, "num_attention_heads", where))
    rope_theta, scaling = support.hf_rope(c, where)
    return LlamaConfig(
        dim=int(_key(c, "hidden_size", where)),
        n_layers=int(_key(c, "num_hidden_layers", where)),
        n_heads=n_heads,
        n_kv_heads=int(c.get("num_key_value_heads") or n_heads),
        vocab_size=int(_key(c, "vocab_size", where)),
        hidden_dim=int(_key(c, "intermediate_size", where)),
        norm_eps=float(c.get("rms_norm_eps", 1e-5)),
        rope_theta=rope_theta,
        rope_scaling=scaling,
        tied_embeddings=bool(c.get("tie_word_embeddings", False)),
        qkv_bias=c["model_type"] == "qwen2",  # transformers' Qwen2 always has q/k/v biases
        head_dim=int(c.get("head_dim") or 0),
        sliding_window=support.hf_sliding_window(c),
    )


def load_hf(directory: str | Path) -> Checkpoint:
    from safetensors.torch import load_file

    d = Path(directory)
    if not d.is_dir():
        raise ExportError(f"Hugging Face checkpoint directory not found: {d}")
    cfg = hf_config(_read_json(d / "config.json", "config.json"), str(d / "config.json"))
    index = d / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_read_json(index, "index")["weight_map"].values()))
        files = [d / s for s in shards]
    elif (d / "model.safetensors").is_file():
        files = [d / "model.safetensors"]
    else:
        raise ExportError(f"{d}: no model.safetensors or model.safetensors.index.json")
    sd: dict[str, torch.Tensor] = {}
    unused = []
    for f in files:
        if not f.is_file():
            raise ExportError(f"{d}: shard {f.name} listed in the index is missing")
        for name, t in load_file(str(f)).items():
            ours = hf_to_meta_name(name)
            if ours is not None:
                sd[ours] = t.float()
            elif not name.endswith("rotary_emb.inv_freq"):  # a buffer older exports saved
                unused.append(name)
    support.refuse_unused_tensors(unused, str(d))
    if cfg.tied_embeddings:
        sd.pop("output.weight", None)
    elif "output.weight" not in sd and "tok_embeddings.weight" in sd:
        cfg.tied_embeddings = True  # some exports drop lm_head when it equals the embedding
    check_state_dict(cfg, sd, str(d))
    tok_files = {
        n: d / n for n in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json") if (d / n).is_file()
    }
    special = {}
    gen_cfg = d / "generation_config.json"
    if gen_cfg.is_file():
        g = json.loads(gen_cfg.read_text())
        special = {"bos": g.get("bos_token_id"), "eos": g.get("eos_token_id")}
    return Checkpoint(
        cfg, sd, "hf", tokenizer_files=tok_files, special_tokens=special, where=str(d / "config.json")
    )


# --------------------------------------------------------------------- GGUF

_GGUF_LAYER = {
    "attn_q": "attention.wq",
    "attn_k": "attention.wk",
    "attn_v": "attention.wv",
    "attn_output": "attention.wo",
    "ffn_gate": "feed_forward.w1",
    "ffn_down": "feed_forward.w2",
    "ffn_up": "feed_forward.w3",
    "attn_norm": "attention_norm",
    "ffn_norm": "ffn_norm",
}


def _field(reader: Any, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def load_gguf(path: str | Path) -> Checkpoint:
    import gguf

    from staticllm.exporter.gguf_tokenizer import tokenizer_from_gguf

    p = Path(path)
    if not p.is_file():
        raise ExportError(f"GGUF file not found: {p}")
    try:
        reader = gguf.GGUFReader(str(p))
    except Exception as exc:  # the gguf package raises plain ValueError/struct errors
        raise ExportError(f"{p}: not a readable GGUF file ({exc})") from exc
    where = f"{p} metadata"
    support.check_gguf(lambda key: _field(reader, key), where)

    def need(key: str) -> Any:
        v = _field(reader, key)
        if v is None:
            raise ExportError(f"{where}: missing key '{key}'")
        return v

    n_heads = int(need("llama.attention.head_count"))
    tokens = _field(reader, "tokenizer.ggml.tokens") or []
    cfg = LlamaConfig(
        dim=int(need("llama.embedding_length")),
        n_layers=int(need("llama.block_count")),
        n_heads=n_heads,
        n_kv_heads=int(_field(reader, "llama.attention.head_count_kv", n_heads)),
        vocab_size=int(_field(reader, "llama.vocab_size", len(tokens))),
        hidden_dim=int(need("llama.feed_forward_length")),
        norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(_field(reader, "llama.rope.freq_base", 10000.0)),
    )
    rope_dims = _field(reader, "llama.rope.dimension_count")
    if rope_dims is not None and int(rope_dims) != cfg.head_dim:
        raise support.refuse(
            where, "llama.rope.dimension_count", rope_dims, f"rotary on the whole head ({cfg.head_dim}) only"
        )
    sd: dict[str, torch.Tensor] = {}
    support.refuse_unused_tensors(
        [t.name for t in reader.tensors if _gguf_to_meta_name(t.name) is None], str(p)
    )
    for t in reader.tensors:
        name = str(_gguf_to_meta_name(t.name))
        arr = gguf.quants.dequantize(t.data, t.tensor_type)
        # GGUF lists dims fastest-first; the data is already row-major in the
        # reversed order, i.e. torch's [out_features, in_features].
        shape = tuple(int(s) for s in reversed(t.shape))
        sd[name] = torch.from_numpy(np.array(arr, dtype=np.float32).reshape(shape))
    cfg.tied_embeddings = "output.weight" not in sd
    qk_to_rotate_half(sd, cfg)
    check_state_dict(cfg, sd, str(p))
    tok_json, tok_config, special = tokenizer_from_gguf(reader)
    return Checkpoint(
        cfg,
        sd,
        "gguf",
        tokenizer_json=tok_json,
        tokenizer_config=tok_config,
        special_tokens=special,
        where=where,
    )


def _gguf_to_meta_name(name: str) -> str | None:
    if name == "token_embd.weight":
        return "tok_embeddings.weight"
    if name == "output_norm.weight":
        return "norm.weight"
    if name == "output.weight":
        return "output.weight"
    if name.startswith("blk."):
        _, idx, rest = name.split(".", 2)
        base, _, suffix = rest.partition(".")
        if base in _GGUF_LAYER:
            return f"layers.{idx}.{_GGUF_LAYER[base]}.{suffix}"
    return None
