"""The refusal of what the exporter does not implement, and the config
reading the family modules share.

An architecture, a config value or a tensor that changes the model's math and
that the exporter does not implement is an ExportError naming it (key and
value), never a bundle that quietly computes a different model. Each family
module (exporter/models/<family>.py) states what it implements and calls
these helpers; checkpoint loaders call them before they build anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from staticllm.errors import ExportError
from staticllm.exporter.config import FULL, SLIDING, ModelConfig

# What known, unimplemented families need, for a useful message.
MISSING = {
    "gemma2": "logit soft-capping",
    "gemma": "the Gemma 1 architecture (GELU MLP, no q/k norm)",
    "mixtral": "mixture-of-experts layers",
    "qwen2_moe": "mixture-of-experts layers",
    "qwen3_moe": "mixture-of-experts layers",
    "qwen2moe": "mixture-of-experts layers",
    "qwen3moe": "mixture-of-experts layers",
    "gemma3n": "per-layer embeddings and AltUp",
    "gemma3": "the vision tower of the multimodal Gemma 3 (its text model, gemma3_text, is implemented)",
}

# config.json keys whose value changes the math, with the value every family
# implements unless it says otherwise (absent or None is always fine).
HF_MATH_KEYS: dict[str, Any] = {
    "hidden_act": "silu",
    "hidden_activation": None,
    "mlp_bias": False,
    "use_qk_norm": False,
    "qk_norm": False,
    "attn_logit_softcapping": None,
    "final_logit_softcapping": None,
    "partial_rotary_factor": 1.0,
    "num_experts": 0,
    "num_local_experts": 0,
    "n_routed_experts": 0,
    "use_bidirectional_attention": False,
}


def refuse(where: str, key: str, value: Any, why: str) -> ExportError:
    return ExportError(f"{where}: {key} = {value!r} is not supported: {why}")


def check_family(kind: str, name: Any, supported: Iterable[str], where: str) -> None:
    supported = tuple(supported)
    if name in supported:
        return
    needs = f" (it needs {MISSING[name]}, not implemented)" if name in MISSING else ""
    raise refuse(where, kind, name, f"this exporter implements {', '.join(supported)}{needs}")


def check_hf_keys(c: dict[str, Any], where: str, **implemented: Any) -> None:
    """Refuses a config.json value this family would export as a different
    model; `implemented` overrides HF_MATH_KEYS for the family."""
    for key, value_ok in {**HF_MATH_KEYS, **implemented}.items():
        value = c.get(key)
        if value not in (None, value_ok):  # 0 == False and 1 == 1.0 here, as intended
            raise refuse(where, key, value, f"this exporter implements {value_ok!r} only")


def need(c: dict[str, Any], key: str, where: str) -> Any:
    if key not in c or c[key] is None:
        raise ExportError(f"{where}: missing key '{key}'")
    return c[key]


def _rope_params(c: dict[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    """(the key, its dict): `rope_parameters` (transformers 5) or
    `rope_scaling` (older configs, with `rope_theta` beside it)."""
    key = "rope_parameters" if c.get("rope_parameters") is not None else "rope_scaling"
    params = c.get(key) or {}
    if not isinstance(params, dict):
        raise refuse(where, key, params, "a dict of rope settings is expected")
    return key, params


def hf_rope(
    c: dict[str, Any],
    where: str,
    rope_types: Iterable[str],
    params: dict[str, Any] | None = None,
    key: str = "",
) -> tuple[float, dict[str, Any] | None]:
    """(rope_theta, scaling dict with "rope_type", or None) of one rope
    setting; `rope_types` are the ones the family implements."""
    if params is None:
        key, params = _rope_params(c, where)
        if any(isinstance(v, dict) for v in params.values()):
            raise refuse(where, key, params, "one rope setting for every layer is implemented")
    rope_types = ("default", *rope_types)
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in rope_types:
        raise refuse(where, f"{key}.rope_type", rope_type, f"implemented rope types: {', '.join(rope_types)}")
    partial = params.get("partial_rotary_factor")
    if partial is not None and partial != 1.0:
        raise refuse(where, f"{key}.partial_rotary_factor", partial, "rotary on the whole head only")
    theta = float(params.get("rope_theta", c.get("rope_theta", 10000.0)))
    if rope_type == "default":
        return theta, None
    names = {
        "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
        "linear": ("factor",),
        "longrope": ("short_factor", "long_factor"),
    }[rope_type]
    missing = [n for n in names if n not in params]
    if missing:
        raise ExportError(f"{where}: {key} of type {rope_type} lacks {missing}")
    if rope_type == "longrope":
        return theta, longrope(c, params, where)
    return theta, {"rope_type": rope_type, **{n: float(params[n]) for n in names}}


def longrope(c: dict[str, Any], params: dict[str, Any], where: str) -> dict[str, Any]:
    """Phi-3 longrope as transformers computes it for contexts up to the
    original length: the short factors, and cos/sin scaled by the attention
    factor derived from max_position_embeddings / original length."""
    original = int(
        params.get("original_max_position_embeddings") or need(c, "original_max_position_embeddings", where)
    )
    factor = params.get("factor") or float(need(c, "max_position_embeddings", where)) / original
    attention = params.get("attention_factor")
    if attention is None:
        import math

        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    return {
        "rope_type": "longrope",
        "short_factor": [float(x) for x in params["short_factor"]],
        "attention_factor": float(attention),
        "original_max_position_embeddings": original,
    }


def hf_layer_types(c: dict[str, Any], n_layers: int, where: str) -> tuple[int | None, tuple[str, ...] | None]:
    """(sliding_window, layer_types): the window and which layers have it.
    transformers 5 lists every layer in layer_types; Qwen2/3 configs without
    it window layers >= max_window_layers when use_sliding_window is set;
    Mistral and Phi-3 window every layer when sliding_window is set."""
    window = c.get("sliding_window")
    types = c.get("layer_types")
    if "use_sliding_window" in c and not c["use_sliding_window"]:
        window = None
    if window is None:
        return None, None
    if types is None and "max_window_layers" in c:
        types = [SLIDING if i >= int(c["max_window_layers"]) else FULL for i in range(n_layers)]
    if types is not None:
        if len(types) != n_layers or any(t not in (SLIDING, FULL) for t in types):
            raise refuse(where, "layer_types", types, f"{n_layers} entries of {SLIDING!r} or {FULL!r}")
        types = tuple(types)
        if SLIDING not in types:
            return None, None
    return int(window), types


def hf_base(
    c: dict[str, Any], where: str, architecture: str, rope_types: Iterable[str] = ("llama3",), **kw: Any
) -> ModelConfig:
    """The fields every family reads the same way from config.json."""
    n_heads = int(need(c, "num_attention_heads", where))
    n_layers = int(need(c, "num_hidden_layers", where))
    if "rope_theta" not in kw:
        kw["rope_theta"], kw["rope_scaling"] = hf_rope(c, where, rope_types)
    if "sliding_window" not in kw:
        kw["sliding_window"], kw["layer_types"] = hf_layer_types(c, n_layers, where)
    fields = dict(
        architecture=architecture,
        dim=int(need(c, "hidden_size", where)),
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=int(c.get("num_key_value_heads") or n_heads),
        vocab_size=int(need(c, "vocab_size", where)),
        hidden_dim=int(need(c, "intermediate_size", where)),
        norm_eps=float(c.get("rms_norm_eps", 1e-5)),
        tied_embeddings=bool(c.get("tie_word_embeddings", False)),
        head_dim=int(c.get("head_dim") or 0),
    )
    return ModelConfig(**{**fields, **kw})  # the family's readings win


def check_context(cfg: ModelConfig, max_context_len: int, where: str) -> None:
    if cfg.rope_max_context is not None and max_context_len > cfg.rope_max_context:
        raise refuse(
            where,
            "max_context_len",
            max_context_len,
            f"the rope scaling is implemented up to original_max_position_embeddings "
            f"({cfg.rope_max_context}); export with max_context_len <= {cfg.rope_max_context}",
        )


# ---------------------------------------------------------------------- GGUF

Field = Callable[[str], Any]  # reads a GGUF metadata value, None when absent


def check_gguf(field: Field, arch: str, where: str) -> None:
    """GGUF keys of an architecture this exporter implements that say the
    model is something else."""
    experts = field(f"{arch}.expert_count")
    if experts:
        raise refuse(where, f"{arch}.expert_count", experts, "mixture-of-experts layers are not implemented")
    scaling = field(f"{arch}.rope.scaling.type")
    if scaling not in (None, "none"):
        raise refuse(where, f"{arch}.rope.scaling.type", scaling, "rope scaling in GGUF is not implemented")
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        value = field(f"{arch}.{key}")
        if value:
            raise refuse(where, f"{arch}.{key}", value, "not implemented")


def gguf_base(field: Field, arch: str, where: str, n_tokens: int, **kw: Any) -> ModelConfig:
    """The fields every family reads the same way from GGUF metadata."""

    def req(key: str) -> Any:
        v = field(f"{arch}.{key}")
        if v is None:
            raise ExportError(f"{where}: missing key '{arch}.{key}'")
        return v

    n_heads = int(req("attention.head_count"))
    kv = field(f"{arch}.attention.head_count_kv")
    cfg = ModelConfig(
        architecture=kw.pop("architecture", arch),
        dim=int(req("embedding_length")),
        n_layers=int(req("block_count")),
        n_heads=n_heads,
        n_kv_heads=int(n_heads if kv is None else kv),
        vocab_size=int(field(f"{arch}.vocab_size") or n_tokens),
        hidden_dim=int(req("feed_forward_length")),
        norm_eps=float(field(f"{arch}.attention.layer_norm_rms_epsilon") or 1e-5),
        rope_theta=float(field(f"{arch}.rope.freq_base") or 10000.0),
        head_dim=int(field(f"{arch}.attention.key_length") or 0),
        **kw,
    )
    rope_dims = field(f"{arch}.rope.dimension_count")
    if rope_dims is not None and int(rope_dims) != cfg.head_dim:
        raise refuse(
            where,
            f"{arch}.rope.dimension_count",
            rope_dims,
            f"rotary on the whole head ({cfg.head_dim}) only",
        )
    return cfg


def refuse_unused_tensors(names: Iterable[str], where: str) -> None:
    """Every tensor of the checkpoint must be one the model uses: a tensor it
    has no place for (a q/k norm, a bias, an expert router, rope factors)
    means the checkpoint computes something this exporter does not."""
    unused = sorted(names)
    if unused:
        more = f" and {len(unused) - 5} more" if len(unused) > 5 else ""
        raise ExportError(
            f"{where}: tensor(s) {unused[:5]}{more} have no place in the model this exporter builds; "
            "the checkpoint's architecture has parts that are not implemented"
        )
