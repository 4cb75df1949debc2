"""Tiny random Llama checkpoints in the Meta, Hugging Face and GGUF layouts,
built by the tests themselves (nothing is downloaded)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from staticllm.exporter import models
from staticllm.exporter.config import ModelConfig

TEXT = (
    "the quick brown fox jumps over the lazy dog. a static graph runs the same on every device. "
    "prefill reads the prompt, decode writes one token at a time. hello world! 0123456789 "
) * 4


def tiny_config(**overrides: Any) -> ModelConfig:
    base = dict(
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        vocab_size=320,
        hidden_dim=128,
        norm_eps=1e-5,
        rope_theta=10000.0,
    )
    base.update(overrides)
    return ModelConfig(**base)


def randomize_(model: torch.nn.Module) -> None:
    """Random weights scaled so logits are O(1) and greedy choices are not
    near-ties: norms near 1, matrices 1/sqrt(fan_in), small biases."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif p.ndim == 2:
                p.copy_(torch.randn_like(p) / np.sqrt(p.shape[1]))
            else:
                p.copy_(0.02 * torch.randn_like(p))


def random_state_dict(cfg: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights of our model (HF names, rotate-half q/k layout), scaled so logits are O(1)."""
    torch.manual_seed(seed)
    model = models.FAMILIES[cfg.architecture].Model(cfg, max_context_len=64)
    randomize_(model)
    return {k: v.clone() for k, v in model.state_dict().items()}


def half_to_interleaved(w: torch.Tensor, n_heads: int, head_dim: int) -> torch.Tensor:
    """Inverse of interleaved_to_half (Meta and GGUF store q/k this way)."""
    rest = w.shape[1:]
    return w.reshape(n_heads, 2, head_dim // 2, *rest).transpose(1, 2).reshape(n_heads * head_dim, *rest)


def reference_model(cfg: ModelConfig, sd: dict[str, torch.Tensor], max_context_len: int = 64) -> Any:
    model = models.build(cfg, max_context_len)
    sd = {k: v for k, v in sd.items() if not (cfg.tied_embeddings and k == "lm_head.weight")}
    models.load_weights(model, sd, "reference")
    return model.eval()


def make_tokenizer(path: Path, vocab_size: int) -> Path:
    """A byte-level BPE tokenizer trained on TEXT, padded to `vocab_size`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 2,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TEXT], trainer)
    tok.save(str(path))
    return path


# Our (Hugging Face) names -> Meta's, for writing Meta checkpoints.
_HF_TO_META = {
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


def make_hf_checkpoint(
    directory: str | Path, cfg: ModelConfig, seed: int = 0, with_tokenizer: bool = True
) -> Path:
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    sd = random_state_dict(cfg, seed)
    out = {k: v for k, v in sd.items() if not (k == "lm_head.weight" and cfg.tied_embeddings)}
    save_file({k: v.contiguous() for k, v in out.items()}, str(d / "model.safetensors"))
    config = {
        # q/k/v biases without an o_proj bias are Qwen2's layout
        "architectures": ["Qwen2ForCausalLM" if cfg.qkv_bias else "LlamaForCausalLM"],
        "model_type": "qwen2" if cfg.qkv_bias else "llama",
        "hidden_size": cfg.dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "vocab_size": cfg.vocab_size,
        "intermediate_size": cfg.hidden_dim,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": cfg.tied_embeddings,
        "bos_token_id": 0,
        "eos_token_id": 1,
    }
    if cfg.rope_scaling:
        config["rope_scaling"] = {"rope_type": "llama3", **cfg.rope_scaling}
    (d / "config.json").write_text(json.dumps(config, indent=2))
    (d / "generation_config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": 1}))
    if with_tokenizer:
        make_tokenizer(d / "tokenizer.json", cfg.vocab_size)
    return d


def make_meta_checkpoint(directory: str | Path, cfg: ModelConfig, seed: int = 0) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    sd = random_state_dict(cfg, seed)
    meta = {}
    top = {"model.embed_tokens.weight": "tok_embeddings.weight", "model.norm.weight": "norm.weight"}
    top["lm_head.weight"] = "output.weight"
    for name, t in sd.items():
        if name.endswith("self_attn.q_proj.weight"):
            t = half_to_interleaved(t, cfg.n_heads, cfg.head_dim)
        elif name.endswith("self_attn.k_proj.weight"):
            t = half_to_interleaved(t, cfg.n_kv_heads, cfg.head_dim)
        if name == "lm_head.weight" and cfg.tied_embeddings:
            continue
        if name in top:
            meta[top[name]] = t.clone()
        else:
            _, _, idx, rest = name.split(".", 3)
            part, _, suffix = rest.rpartition(".")
            meta[f"layers.{idx}.{_HF_TO_META[part]}.{suffix}"] = t.clone()
    torch.save(meta, d / "consolidated.00.pth")
    params = {
        "dim": cfg.dim,
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "n_kv_heads": cfg.n_kv_heads,
        "vocab_size": cfg.vocab_size,
        "hidden_dim": cfg.hidden_dim,
        "norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
    }
    (d / "params.json").write_text(json.dumps(params))
    return d


def make_gguf_checkpoint(
    path: str | Path,
    cfg: ModelConfig,
    seed: int = 0,
    arch: str = "llama",
    extra: Callable[[Any], None] | None = None,
) -> Path:
    """An F32 GGUF file as llama.cpp's converter writes it (q/k interleaved).
    `extra(writer)` may add keys and tensors before the file is written."""
    import gguf

    p = Path(path)
    sd = random_state_dict(cfg, seed)
    w = gguf.GGUFWriter(str(p), arch)
    w.add_block_count(cfg.n_layers)
    w.add_context_length(2048)
    w.add_embedding_length(cfg.dim)
    w.add_feed_forward_length(cfg.hidden_dim)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    tokens = [f"<t{i}>" for i in range(cfg.vocab_size)]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * cfg.vocab_size)
    w.add_token_types([1] * cfg.vocab_size)
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    # gguf's own name map (HF -> llama.cpp), independent of the loader's table
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.n_layers)
    for name, t in sd.items():
        if name == "lm_head.weight" and cfg.tied_embeddings:
            continue
        gname = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if name.endswith("self_attn.q_proj.weight"):
            t = half_to_interleaved(t, cfg.n_heads, cfg.head_dim)
        elif name.endswith("self_attn.k_proj.weight"):
            t = half_to_interleaved(t, cfg.n_kv_heads, cfg.head_dim)
        w.add_tensor(gname, t.numpy().astype(np.float32))
    if extra is not None:
        extra(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return p


def torch_greedy(model: Any, prompt: list[int], n_new: int) -> list[int]:
    """Greedy continuation with full-sequence forwards (no cache): the reference."""
    ids = list(prompt)
    for _ in range(n_new):
        logits = full_logits(model, ids)
        ids.append(int(logits[-1].argmax()))
    return ids[len(prompt) :]


def full_logits(model: Any, ids: list[int]) -> torch.Tensor:
    """Logits [len(ids), vocab] of one forward over the whole sequence with an empty cache."""
    return model.sequence_logits(torch.tensor([ids], dtype=torch.int32))
