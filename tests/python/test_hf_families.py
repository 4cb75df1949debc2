"""No silently wrong export. Tiny random checkpoints built with transformers'
own config and model classes and written by save_pretrained: the families
the exporter implements (llama, qwen2) match transformers, and every
architecture, config value or tensor it does not implement is refused with
an ExportError naming it.

Tolerances: fp32 logits within 1e-4 of the largest logit; the greedy
continuation identical to greedy decoding with the transformers model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import staticllm
from bundle_loop import BundleLoop
from llama_fixtures import make_gguf_checkpoint, make_meta_checkpoint, randomize_, tiny_config

INPUT_LEN, CONTEXT = 8, 64
PROMPT = [5, 17, 42, 99, 3, 250, 7, 61, 8, 123, 44]  # longer than one call
SHAPE = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    vocab_size=320,
    max_position_embeddings=CONTEXT,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=None,
)


def save_random(directory, config, seed: int = 0):
    """A transformers model of `config` with random weights, saved by save_pretrained."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).float().eval()
    randomize_(model)
    model.save_pretrained(directory)
    return model


def transformers_greedy(model, prompt: list[int], n_new: int) -> list[int]:
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n_new):
            ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt) :]


def _llama(**kw):
    from transformers import LlamaConfig

    return LlamaConfig(**SHAPE, **kw)


def _qwen2(**kw):
    from transformers import Qwen2Config

    return Qwen2Config(**SHAPE, **kw)


LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}

# name, config, multifunction
EQUAL = [
    (
        "llama-theta5e5",
        lambda: _llama(rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
        False,
    ),
    ("llama-llama3-rope-tied", lambda: _llama(rope_parameters=LLAMA3_ROPE, tie_word_embeddings=True), True),
    ("qwen2-tied", lambda: _qwen2(tie_word_embeddings=True), True),
    # a window as long as the context drops nothing: exact without one
    (
        "qwen2-window-eq-context",
        lambda: _qwen2(use_sliding_window=True, sliding_window=CONTEXT, max_window_layers=0),
        False,
    ),
]


@pytest.mark.parametrize(("name", "make", "multifunction"), EQUAL, ids=[e[0] for e in EQUAL])
def test_implemented_families_match_transformers(tmp_path, name, make, multifunction):
    model = save_random(tmp_path / "hf", make())
    b = staticllm.export(
        tmp_path / "b",
        hf_dir=tmp_path / "hf",
        input_len=INPUT_LEN,
        max_context_len=CONTEXT,
        multifunction=multifunction,
        dtype="fp32",
        progress=False,
    )
    loop = BundleLoop(str(b))
    ids = PROMPT[:INPUT_LEN]
    got = loop.step(loop.llm.prefill_method, ids)
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].numpy()
    if got.shape[0] == 1:
        want = want[-1:]
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max(), rtol=0)
    assert BundleLoop(str(b)).greedy(PROMPT, 24) == transformers_greedy(model, PROMPT, 24)


def _qwen3():
    from transformers import Qwen3Config

    return Qwen3Config(**SHAPE, head_dim=16)


def _gemma3():
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(**SHAPE, head_dim=16, sliding_window=16)


def _mistral():
    from transformers import MistralConfig

    return MistralConfig(**SHAPE, sliding_window=16)


def _phi3():
    from transformers import Phi3Config

    return Phi3Config(**SHAPE)


REFUSED = [
    ("qwen3", _qwen3, r"model_type = 'qwen3' is not supported: .*llama, qwen2 .*RMSNorm on q and k"),
    ("gemma3", _gemma3, r"model_type = 'gemma3_text' is not supported"),
    ("mistral", _mistral, r"model_type = 'mistral' is not supported: .*sliding-window attention"),
    ("phi3", _phi3, r"model_type = 'phi3' is not supported"),
    (
        "rope-yarn",
        lambda: _llama(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}),
        r"rope_parameters.rope_type = 'yarn' is not supported: implemented rope types: default, llama3",
    ),
    (
        "rope-linear",
        lambda: _llama(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}),
        r"rope_parameters.rope_type = 'linear'",
    ),
    (
        "rope-dynamic",
        lambda: _llama(rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}),
        r"rope_parameters.rope_type = 'dynamic'",
    ),
    ("final-softcap", lambda: _llama(final_logit_softcapping=30.0), r"final_logit_softcapping = 30.0"),
    ("attn-softcap", lambda: _llama(attn_logit_softcapping=50.0), r"attn_logit_softcapping = 50.0"),
    ("qk-norm", lambda: _llama(use_qk_norm=True), r"use_qk_norm = True"),
    ("gelu", lambda: _llama(hidden_act="gelu"), r"hidden_act = 'gelu' is not supported: .*'silu'"),
    ("mlp-bias", lambda: _llama(mlp_bias=True), r"mlp_bias = True"),
    (
        "o-bias",
        lambda: _llama(attention_bias=True),
        r"attention_bias = True is not supported: the bias on o_proj",
    ),
    (
        "qwen2-window",
        lambda: _qwen2(use_sliding_window=True, sliding_window=16, max_window_layers=1),
        rf"sliding_window = 16 is not supported: .*shorter than max_context_len \({CONTEXT}\)",
    ),
]


@pytest.mark.parametrize(("name", "make", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_unimplemented_config_is_refused(tmp_path, name, make, message):
    save_random(tmp_path / "hf", make())
    with pytest.raises(staticllm.ExportError, match=message):
        staticllm.export(tmp_path / "b", hf_dir=tmp_path / "hf", max_context_len=CONTEXT, progress=False)
    assert not (tmp_path / "b").exists()


def test_tensor_without_a_place_is_refused(tmp_path):
    """Qwen3 weights under a config that claims qwen2: the q/k norms have no place."""
    save_random(tmp_path / "hf", _qwen3())
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    config["model_type"] = "qwen2"
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    with pytest.raises(staticllm.ExportError, match=r"model.layers.0.self_attn.k_norm.weight.*no place"):
        staticllm.export(tmp_path / "b", hf_dir=tmp_path / "hf", max_context_len=CONTEXT, progress=False)


def _gguf_key(key: str, value, kind: str):
    return lambda w: getattr(w, f"add_{kind}")(key, value)


GGUF_REFUSED = [
    (
        "qwen2",
        "qwen2",
        None,
        r"general.architecture = 'qwen2' is not supported: this exporter implements llama",
    ),
    ("experts", "llama", _gguf_key("llama.expert_count", 4, "uint32"), r"llama.expert_count = 4"),
    (
        "rope-scaling",
        "llama",
        _gguf_key("llama.rope.scaling.type", "linear", "string"),
        r"llama.rope.scaling.type = 'linear'",
    ),
    (
        "partial-rotary",
        "llama",
        _gguf_key("llama.rope.dimension_count", 8, "uint32"),
        r"llama.rope.dimension_count = 8 is not supported: rotary on the whole head \(16\)",
    ),
    (
        "rope-freqs",
        "llama",
        lambda w: w.add_tensor("rope_freqs.weight", np.ones(8, np.float32)),
        r"\['rope_freqs.weight'\] have no place",
    ),
]


@pytest.mark.parametrize(("name", "arch", "extra", "message"), GGUF_REFUSED, ids=[g[0] for g in GGUF_REFUSED])
def test_unimplemented_gguf_is_refused(tmp_path, name, arch, extra, message):
    path = make_gguf_checkpoint(tmp_path / "m.gguf", tiny_config(), arch=arch, extra=extra)
    with pytest.raises(staticllm.ExportError, match=message):
        staticllm.export(tmp_path / "b", gguf=path, max_context_len=CONTEXT, progress=False)


def test_unknown_meta_params_key_is_refused(tmp_path):
    d = make_meta_checkpoint(tmp_path / "meta", tiny_config())
    params = json.loads((d / "params.json").read_text())
    params["moe_args"] = {"num_experts": 16}
    (d / "params.json").write_text(json.dumps(params))
    with pytest.raises(staticllm.ExportError, match=r"moe_args = \{'num_experts': 16\} is not supported"):
        staticllm.export(tmp_path / "b", checkpoint=d / "consolidated.00.pth", progress=False)
