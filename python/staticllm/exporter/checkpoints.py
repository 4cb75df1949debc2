"""Checkpoint loaders: Meta, Hugging Face and GGUF layouts.

Each returns a `Checkpoint`: the config, a state dict in Hugging Face
parameter names (the names of exporter/models/) with q/k rows in the
rotate-half layout, and tokenizer material found beside the weights. The
Meta and GGUF loaders each rename through one table next to them; the
family module (chosen by model_type / general.architecture) reads the config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from staticllm.errors import ExportError
from staticllm.exporter import models, support
from staticllm.exporter.config import ModelConfig


@dataclass
class Checkpoint:
    config: ModelConfig
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


def qk_to_rotate_half(sd: dict[str, torch.Tensor], cfg: ModelConfig) -> None:
    """In place: every layer's q/k projection from interleaved to rotate-half
    rows. Tensors of an unexpected shape are left for the shape check to report."""
    for i in range(cfg.n_layers):
        for name, heads in (("q_proj", cfg.n_heads), ("k_proj", cfg.n_kv_heads)):
            key = f"model.layers.{i}.self_attn.{name}.weight"
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
            "rope_type": "llama3",
            "factor": float(p.get("rope_scale_factor", 8.0)),
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        }
    cfg = ModelConfig(
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
    raw = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    if "output.weight" not in raw:
        cfg.tied_embeddings = True
    sd, unused = _rename(raw, meta_to_hf_name, skip=("rope.freqs",))
    support.refuse_unused_tensors(unused, str(ckpt))
    qk_to_rotate_half(sd, cfg)
    files = {}
    tok = ckpt.parent / "tokenizer.model"
    if tok.is_file():
        files["tokenizer.model"] = tok
    return Checkpoint(cfg, sd, "meta", tokenizer_files=files, where=str(ckpt))


# ------------------------------------------------------- Hugging Face layout

# Meta name -> Hugging Face name, per layer and outside the layers.
_META_LAYER = {
    "attention.wq": "self_attn.q_proj",
    "attention.wk": "self_attn.k_proj",
    "attention.wv": "self_attn.v_proj",
    "attention.wo": "self_attn.o_proj",
    "feed_forward.w1": "mlp.gate_proj",
    "feed_forward.w2": "mlp.down_proj",
    "feed_forward.w3": "mlp.up_proj",
    "attention_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_META_TOP = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def meta_to_hf_name(name: str) -> str | None:
    return _layer_name(name, "layers.", _META_TOP, _META_LAYER)


def _layer_name(name: str, layer_prefix: str, top: dict[str, str], layer: dict[str, str]) -> str | None:
    """`top[name]`, or a layer tensor `<prefix><i>.<part>.<suffix>` through `layer[part]`."""
    if name in top:
        return top[name]
    if name.startswith(layer_prefix):
        idx, _, rest = name[len(layer_prefix) :].partition(".")
        for part, hf in layer.items():
            if rest.startswith(part + "."):
                return f"model.layers.{idx}.{hf}{rest[len(part) :]}"
    return None


def _rename(
    tensors: Any, rename: Any, skip: tuple[str, ...] = ()
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(state dict in HF names, names that map to nothing); `skip`: suffixes of buffers to drop."""
    sd, unused = {}, []
    for name, t in tensors.items():
        ours = rename(name)
        if ours is not None:
            sd[ours] = t
        elif not name.endswith(skip):
            unused.append(name)
    return sd, unused


def hf_config(c: dict[str, Any], where: str) -> ModelConfig:
    return models.for_hf(c.get("model_type"), where).config_from_hf(c, where)


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
        # HF names are the model's; rotary_emb.inv_freq is a buffer older exports saved
        part, rest = _rename(load_file(str(f)), _hf_name, skip=("rotary_emb.inv_freq",))
        sd.update(part)
        unused += rest
    support.refuse_unused_tensors(unused, str(d))
    if cfg.tied_embeddings:
        sd.pop("lm_head.weight", None)
    elif "lm_head.weight" not in sd and "model.embed_tokens.weight" in sd:
        cfg.tied_embeddings = True  # some exports drop lm_head when it equals the embedding
    tok_files = {
        n: d / n for n in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json") if (d / n).is_file()
    }
    special = {}
    gen_cfg = d / "generation_config.json"
    if gen_cfg.is_file():
        g = json.loads(gen_cfg.read_text())
        special = {"bos": g.get("bos_token_id"), "eos": g.get("eos_token_id")}
    return Checkpoint(cfg, sd, "hf", tokenizer_files=tok_files, special_tokens=special, where=str(d))


def _hf_name(name: str) -> str | None:
    return name if name.startswith(("model.", "lm_head.")) else None


# --------------------------------------------------------------------- GGUF

# llama.cpp tensor name -> Hugging Face name. One table for every family;
# the few names whose meaning differs by family (Gemma 3 has four norms per
# layer, so its ffn_norm is the pre-feedforward one) are overridden per
# architecture below it.
_GGUF_LAYER = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_qkv": "self_attn.qkv_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_down": "mlp.down_proj",
    "ffn_up": "mlp.up_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_GGUF_LAYER_BY_ARCH = {
    "gemma3": {
        "post_attention_norm": "post_attention_layernorm",
        "ffn_norm": "pre_feedforward_layernorm",
        "post_ffw_norm": "post_feedforward_layernorm",
    },
    "phi3": {"ffn_up": "mlp.gate_up_proj"},  # llama.cpp keeps Phi-3's fused gate/up as ffn_up
}
_GGUF_TOP = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def gguf_to_hf_name(name: str, arch: str) -> str | None:
    return _layer_name(name, "blk.", _GGUF_TOP, {**_GGUF_LAYER, **_GGUF_LAYER_BY_ARCH.get(arch, {})})


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

    def field(key: str) -> Any:
        return _field(reader, key)

    arch = field("general.architecture")
    if arch is None:
        raise ExportError(f"{where}: missing key 'general.architecture'")
    family = models.for_gguf(arch, where)
    support.check_gguf(field, arch, where)
    cfg = family.config_from_gguf(field, arch, where, len(field("tokenizer.ggml.tokens") or []))
    names = {t.name: gguf_to_hf_name(t.name, arch) for t in reader.tensors}
    support.refuse_unused_tensors([n for n, ours in names.items() if ours is None], str(p))
    shift = getattr(family, "GGUF_NORM_SHIFT", 0.0)
    sd: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        name = str(names[t.name])
        arr = gguf.quants.dequantize(t.data, t.tensor_type)
        # GGUF lists dims fastest-first; the data is already row-major in the
        # reversed order, i.e. torch's [out_features, in_features].
        shape = tuple(int(s) for s in reversed(t.shape))
        w = torch.from_numpy(np.array(arr, dtype=np.float32).reshape(shape))
        sd[name] = w - shift if shift and name.endswith("norm.weight") else w
    cfg.tied_embeddings = "lm_head.weight" not in sd
    if family.GGUF_QK_INTERLEAVED:
        qk_to_rotate_half(sd, cfg)
    tok_json, tok_config, special = tokenizer_from_gguf(reader)
    return Checkpoint(
        cfg,
        sd,
        "gguf",
        tokenizer_json=tok_json,
        tokenizer_config=tok_config,
        special_tokens=special,
        where=str(p),
    )
