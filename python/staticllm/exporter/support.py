"""What the exporter implements, and the refusal of everything else.

An architecture, a config value or a tensor that changes the model's math and
that the exporter does not implement is an ExportError naming it (key and
value), never a bundle that quietly computes a different model. Checkpoint
loaders call these checks before they build anything.

The model-family work replaces the tables here with one module per
architecture; each family then states what it implements next to its code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from staticllm.errors import ExportError

# Hugging Face config.json model_type -> family. qwen2 is Llama with q/k/v
# biases; tests/python/test_hf_families.py checks both against transformers.
HF_MODEL_TYPES = ("llama", "qwen2")
GGUF_ARCHITECTURES = ("llama",)
ROPE_TYPES = ("default", "llama3")

# What known families need beyond this exporter, for a useful message.
_MISSING = {
    "qwen3": "per-head RMSNorm on q and k",
    "gemma3_text": "q/k norm, sliding-window attention, GELU-tanh MLP, four norms per layer",
    "gemma3": "q/k norm, sliding-window attention, GELU-tanh MLP, four norms per layer",
    "gemma2": "logit soft-capping and sliding-window attention",
    "gemma": "GELU MLP and (1 + w) RMSNorm",
    "mistral": "sliding-window attention",
    "mixtral": "mixture-of-experts layers",
    "phi3": "fused qkv_proj / gate_up_proj and longrope scaling",
    "qwen2_moe": "mixture-of-experts layers",
    "qwen3_moe": "mixture-of-experts layers",
}

# config.json keys whose value changes the math, with the value this exporter
# implements (absent or None is always fine).
_HF_MATH_KEYS: dict[str, Any] = {
    "hidden_act": "silu",
    "mlp_bias": False,
    "use_qk_norm": False,
    "qk_norm": False,
    "attn_logit_softcapping": None,
    "final_logit_softcapping": None,
    "partial_rotary_factor": 1.0,
    "num_experts": 0,
    "num_local_experts": 0,
    "n_routed_experts": 0,
}


def refuse(where: str, key: str, value: Any, why: str) -> ExportError:
    return ExportError(f"{where}: {key} = {value!r} is not supported: {why}")


def check_family(kind: str, name: Any, supported: Iterable[str], where: str) -> None:
    supported = tuple(supported)
    if name in supported:
        return
    needs = f" (it needs {_MISSING[name]}, not implemented yet)" if name in _MISSING else ""
    raise refuse(where, kind, name, f"this exporter implements {', '.join(supported)}{needs}")


def check_hf_config(c: dict[str, Any], where: str) -> None:
    """Refuses a config.json this exporter would export as a different model."""
    model_type = c.get("model_type")
    check_family("model_type", model_type, HF_MODEL_TYPES, where)
    for key, implemented in _HF_MATH_KEYS.items():
        value = c.get(key)
        if value not in (None, implemented):  # 0 == False and 1 == 1.0 here, as intended
            raise refuse(where, key, value, f"this exporter implements {implemented!r} only")
    if model_type == "llama" and c.get("attention_bias"):
        raise refuse(where, "attention_bias", c["attention_bias"], "the bias on o_proj is not implemented")


def hf_rope(c: dict[str, Any], where: str) -> tuple[float, dict[str, float] | None]:
    """(rope_theta, llama3 scaling or None) from `rope_parameters`
    (transformers 5) or `rope_scaling` + `rope_theta` (older configs)."""
    key = "rope_parameters" if c.get("rope_parameters") is not None else "rope_scaling"
    params = c.get(key) or {}
    if not isinstance(params, dict) or any(isinstance(v, dict) for v in params.values()):
        raise refuse(where, key, params, "one rope setting for every layer is implemented")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise refuse(where, f"{key}.rope_type", rope_type, f"implemented rope types: {', '.join(ROPE_TYPES)}")
    partial = params.get("partial_rotary_factor")
    if partial is not None and partial != 1.0:
        raise refuse(where, f"{key}.partial_rotary_factor", partial, "rotary on the whole head only")
    theta = float(params.get("rope_theta", c.get("rope_theta", 10000.0)))
    if rope_type == "default":
        return theta, None
    names = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    missing = [n for n in names if n not in params]
    if missing:
        raise ExportError(f"{where}: {key} of type llama3 lacks {missing}")
    return theta, {n: float(params[n]) for n in names}


def hf_sliding_window(c: dict[str, Any]) -> int | None:
    """The attention window of the config's windowed layers, None if no layer
    has one. Qwen2 windows only layers >= max_window_layers, and only with
    use_sliding_window; transformers 5 lists every layer in layer_types."""
    window = c.get("sliding_window")
    if window is None:
        return None
    types = c.get("layer_types")
    if types is not None:
        return int(window) if "sliding_attention" in types else None
    if "use_sliding_window" in c:
        layers = int(c.get("num_hidden_layers", 0))
        return int(window) if c["use_sliding_window"] and c.get("max_window_layers", 0) < layers else None
    return int(window)


def check_context(sliding_window: int | None, max_context_len: int, where: str) -> None:
    """A window at least as long as the context never drops a position, so
    the model without one is exact; a shorter one is not implemented."""
    if sliding_window is not None and sliding_window < max_context_len:
        raise refuse(
            where,
            "sliding_window",
            sliding_window,
            f"sliding-window attention is not implemented and the window is shorter than max_context_len "
            f"({max_context_len}); export with max_context_len <= {sliding_window} to get the exact model",
        )


def check_gguf(field: Any, where: str) -> None:
    """`field(key)` reads a GGUF metadata value (None when absent)."""
    arch = field("general.architecture")
    if arch is None:
        raise ExportError(f"{where}: missing key 'general.architecture'")
    check_family("general.architecture", arch, GGUF_ARCHITECTURES, where)
    experts = field(f"{arch}.expert_count")
    if experts:
        raise refuse(where, f"{arch}.expert_count", experts, "mixture-of-experts layers are not implemented")
    scaling = field(f"{arch}.rope.scaling.type")
    if scaling not in (None, "none"):
        raise refuse(where, f"{arch}.rope.scaling.type", scaling, "rope scaling in GGUF is not implemented")
    for key in ("attn_logit_softcapping", "final_logit_softcapping", "attention.sliding_window"):
        value = field(f"{arch}.{key}")
        if value:
            raise refuse(where, f"{arch}.{key}", value, "not implemented")


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
