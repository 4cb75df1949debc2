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
    for name, shape in expected.items():
        if name not in sd:
            raise ExportError(f"{where}: missing tensor '{name}' (expected shape {list(shape)})")
        if tuple(sd[name].shape) != shape:
            raise ExportError(
                f"{where}: tensor '{name}' has shape {list(sd[name].shape)}, expected {list(shape)}"
            )
    support.refuse_unused_tensors(set(sd) - set(expected), where)
    model.load_state_dict({k: sd[k].float().contiguous() for k in expected}, strict=False, assign=True)
    model.tie_weights()
