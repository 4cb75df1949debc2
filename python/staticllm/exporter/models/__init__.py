"""One module per architecture, chosen by `model_type` (config.json) or
`general.architecture` (GGUF); all are built from the blocks in blocks.py
and use Hugging Face parameter names.

A family module holds: MODEL_TYPES and GGUF_ARCHITECTURES (what selects it),
GGUF_QK_INTERLEAVED (llama.cpp permuted its q/k rows), `Model` (a
blocks.CausalLM), `config_from_hf(config_dict, where)` and, when llama.cpp
writes the family, `config_from_gguf(field, arch, where, n_tokens)`.
"""

from __future__ import annotations

from types import ModuleType

import torch

from staticllm.errors import ExportError
from staticllm.exporter import support
from staticllm.exporter.config import ModelConfig
from staticllm.exporter.models import gemma3, llama, mistral, phi3, qwen2, qwen3

FAMILIES: dict[str, ModuleType] = {
    "llama": llama,
    "qwen2": qwen2,
    "qwen3": qwen3,
    "gemma3": gemma3,
    "mistral": mistral,
    "phi3": phi3,
}
HF_MODEL_TYPES = {t: m for m in FAMILIES.values() for t in m.MODEL_TYPES}
GGUF_ARCHITECTURES = {a: m for m in FAMILIES.values() for a in m.GGUF_ARCHITECTURES}


def for_hf(model_type: object, where: str) -> ModuleType:
    support.check_family("model_type", model_type, HF_MODEL_TYPES, where)
    return HF_MODEL_TYPES[str(model_type)]


def for_gguf(arch: object, where: str) -> ModuleType:
    support.check_family("general.architecture", arch, GGUF_ARCHITECTURES, where)
    return GGUF_ARCHITECTURES[str(arch)]


def build(cfg: ModelConfig, max_context_len: int) -> torch.nn.Module:
    """The family's model with uninitialized (meta) parameters and real rotary tables."""
    with torch.device("meta"):
        model = FAMILIES[cfg.architecture].Model(cfg, max_context_len)
    model.set_max_context(max_context_len)
    return model


def load_weights(model: torch.nn.Module, sd: dict[str, torch.Tensor], where: str) -> None:
    """Assigns the state dict to a built model: every parameter present with
    its shape (missing: named with the shape expected; wrong shape: expected
    and found), and every tensor of the checkpoint used."""
    tied = model.cfg.tied_embeddings
    expected = {
        k: tuple(v.shape) for k, v in model.state_dict().items() if not (tied and k == model.lm_head_name)
    }
    # a tensor without a place says more (another architecture) than the missing ones it implies
    support.refuse_unused_tensors(set(sd) - set(expected), where)
    for name, shape in expected.items():
        if name not in sd:
            raise ExportError(f"{where}: missing tensor '{name}' (expected shape {list(shape)})")
        if tuple(sd[name].shape) != shape:
            raise ExportError(
                f"{where}: tensor '{name}' has shape {list(sd[name].shape)}, expected {list(shape)}"
            )
    model.load_state_dict({k: sd[k].float().contiguous() for k in expected}, strict=False, assign=True)
    model.tie_weights()


FP16_RESIDUAL_LIMIT = 2048.0  # fp16 holds 65504: keep the measured peak 32x below it


def fit_fp16(model: torch.nn.Module, bos: int | None) -> float:
    """For families whose residual stream outgrows fp16 (Gemma 3): measures
    the stream's peak over a probe sequence in fp32 and folds a power-of-two
    scale into the weights (`fold_residual_scale`, no extra ops) so the peak
    stays under FP16_RESIDUAL_LIMIT. Returns the scale (1.0: none needed)."""
    if not hasattr(model, "fold_residual_scale"):
        return 1.0
    gen = torch.Generator().manual_seed(0)
    probe = torch.randint(0, model.cfg.vocab_size, (1, 64), generator=gen)
    if bos is not None:
        probe[0, 0] = bos  # the first position carries the largest activations
    peaks: list[float] = []
    hooks = [
        layer.register_forward_hook(lambda m, i, o: peaks.append(float(o[0].abs().max())))
        for layer in model.model.layers
    ]
    try:
        model.sequence_logits(probe)
    finally:
        for h in hooks:
            h.remove()
    peak = max(peaks)
    scale = 1.0
    while peak / scale > FP16_RESIDUAL_LIMIT:
        scale *= 2.0
    if scale > 1.0:
        model.fold_residual_scale(scale)
    return scale
