"""Every family against transformers, and no silently wrong export.

Tiny random checkpoints built with transformers' own config and model
classes and written by save_pretrained, exported single-method and
multifunction in fp32. Checks: the prompt's logits within 1e-4 of the largest
transformers logit, and the greedy 48-token continuation of a prompt longer
than one call identical to transformers' `generate` (through the product
runner, staticllm.Generator, which keeps sliding-window layers in rings of
window slots; the windowed families use a window of 16 in a context of 64,
so the continuation crosses it). Every architecture, config value or tensor
the exporter does not implement is refused with an ExportError naming it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import staticllm
from bundle_loop import BundleLoop
from llama_fixtures import make_gguf_checkpoint, make_meta_checkpoint, randomize_, tiny_config

INPUT_LEN, CONTEXT, WINDOW, N_NEW = 8, 64, 16, 48
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


def transformers_generate(model, prompt: list[int], n_new: int) -> list[int]:
    """transformers' own greedy generate (its caches, its sliding-window masks), never stopping early."""
    model.generation_config.eos_token_id = None
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]), max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, top_k=None
        )
    return out[0, len(prompt) :].tolist()


def _config(name: str, **kw):
    import transformers

    return getattr(transformers, name)(**{**SHAPE, **kw})


LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}
WINDOWED = dict(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1)
PHI3_ROPE = {
    "rope_type": "longrope",
    "short_factor": [1.0 + 0.1 * i for i in range(8)],
    "long_factor": [2.0 + 0.3 * i for i in range(8)],
    "original_max_position_embeddings": CONTEXT,
}

# name -> config; each family with the features item by item of its module docstring
FAMILIES = {
    "llama-theta5e5": lambda: _config(
        "LlamaConfig", rope_parameters={"rope_type": "default", "rope_theta": 500000.0}
    ),
    "llama-llama3-rope-tied": lambda: _config(
        "LlamaConfig", rope_parameters=LLAMA3_ROPE, tie_word_embeddings=True
    ),
    "qwen2-tied-window": lambda: _config("Qwen2Config", tie_word_embeddings=True, **WINDOWED),
    "qwen3-head-dim-window": lambda: _config("Qwen3Config", head_dim=32, **WINDOWED),
    "gemma3": lambda: _config(
        "Gemma3TextConfig",
        head_dim=32,
        num_key_value_heads=1,
        sliding_window=WINDOW,
        layer_types=["sliding_attention", "full_attention"],
        query_pre_attn_scalar=24,
    ),
    "mistral-window": lambda: _config("MistralConfig", sliding_window=WINDOW, head_dim=32),
    # max_position_embeddings 4x the original: cos and sin scaled by sqrt(1 + ln 4 / ln 64)
    "phi3-longrope-window": lambda: _config(
        "Phi3Config",
        rope_parameters=PHI3_ROPE,
        original_max_position_embeddings=CONTEXT,
        max_position_embeddings=4 * CONTEXT,
        sliding_window=WINDOW,
    ),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory):
    """(name, transformers model, its save_pretrained directory), made once per family."""
    d = tmp_path_factory.mktemp(request.param)
    return request.param, save_random(d / "hf", FAMILIES[request.param]()), d / "hf"


@pytest.mark.parametrize("multifunction", [False, True], ids=["single", "multifunction"])
def test_family_matches_transformers(tmp_path, family, multifunction):
    name, model, hf = family
    b = staticllm.export(
        tmp_path / "b",
        hf_dir=hf,
        input_len=INPUT_LEN,
        max_context_len=CONTEXT,
        multifunction=multifunction,
        dtype="fp32",
        progress=False,
    )
    meta = json.loads((b / "metadata.json").read_text())["llm"]
    assert meta["architecture"] == name.split("-")[0]
    windowed = [g for g in meta["cache"]["groups"] if g["window"] is not None]
    if "window" in name or name == "gemma3":  # layer 0 slides, and keeps a ring of window slots
        assert [(g["length"], g["layers"]) for g in windowed] == [
            (WINDOW, [0] if name != "mistral-window" else [0, 1])
        ]
    else:
        assert windowed == []
    loop = BundleLoop(str(b))
    ids = PROMPT[:INPUT_LEN]
    got = loop.step(loop.llm.prefill_method, ids)
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].numpy()
    if got.shape[0] == 1:
        want = want[-1:]
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max(), rtol=0)
    result = staticllm.Generator(b).generate(PROMPT, max_new_tokens=N_NEW, ignore_eos=True)
    assert result.token_ids == transformers_generate(model, PROMPT, N_NEW)


REFUSED = [
    (
        "gemma2",
        lambda: _config("Gemma2Config", head_dim=16),
        r"model_type = 'gemma2' is not supported: .*llama.*soft-capping",
    ),
    (
        "mixtral",
        lambda: _config("MixtralConfig", num_local_experts=4),
        r"model_type = 'mixtral' is not supported: .*mixture-of-experts",
    ),
    (
        "rope-yarn",
        lambda: _config(
            "LlamaConfig", rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}
        ),
        r"rope_parameters.rope_type = 'yarn' is not supported: "
        r"implemented rope types: default, llama3, linear",
    ),
    (
        "rope-dynamic",
        lambda: _config(
            "LlamaConfig", rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}
        ),
        r"rope_parameters.rope_type = 'dynamic'",
    ),
    (
        "final-softcap",
        lambda: _config("LlamaConfig", final_logit_softcapping=30.0),
        r"final_logit_softcapping = 30.0",
    ),
    (
        "gemma3-attn-softcap",
        lambda: _config("Gemma3TextConfig", head_dim=16, attn_logit_softcapping=50.0),
        r"attn_logit_softcapping = 50.0",
    ),
    ("qk-norm", lambda: _config("LlamaConfig", use_qk_norm=True), r"use_qk_norm = True"),
    (
        "gelu",
        lambda: _config("LlamaConfig", hidden_act="gelu"),
        r"hidden_act = 'gelu' is not supported: .*'silu'",
    ),
    ("mlp-bias", lambda: _config("LlamaConfig", mlp_bias=True), r"mlp_bias = True"),
    (
        "o-bias",
        lambda: _config("LlamaConfig", attention_bias=True),
        r"attention_bias = True is not supported: the bias on o_proj",
    ),
    ("qwen3-bias", lambda: _config("Qwen3Config", attention_bias=True), r"attention_bias = True"),
    (
        "phi3-beyond-original-context",
        lambda: _config(
            "Phi3Config",
            rope_parameters={**PHI3_ROPE, "original_max_position_embeddings": CONTEXT // 2},
            original_max_position_embeddings=CONTEXT // 2,
            max_position_embeddings=4 * CONTEXT,
        ),
        rf"max_context_len = {CONTEXT} is not supported: "
        rf".*original_max_position_embeddings \({CONTEXT // 2}\)",
    ),
    (
        "phi3-partial-rotary",
        lambda: _config("Phi3Config", partial_rotary_factor=0.5),
        r"partial_rotary_factor = 0.5",
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
    save_random(tmp_path / "hf", _config("Qwen3Config", head_dim=16))
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    config["model_type"] = "qwen2"
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    with pytest.raises(staticllm.ExportError, match=r"model.layers.0.self_attn.k_norm.weight.*no place"):
        staticllm.export(tmp_path / "b", hf_dir=tmp_path / "hf", max_context_len=CONTEXT, progress=False)


def test_missing_tensor_and_wrong_shape_are_named(tmp_path):
    from safetensors.torch import load_file, save_file

    save_random(tmp_path / "hf", _config("Qwen3Config", head_dim=16))
    f = tmp_path / "hf" / "model.safetensors"
    sd = load_file(str(f))
    sd.pop("model.layers.1.self_attn.q_norm.weight")
    save_file(sd, str(f))
    with pytest.raises(
        staticllm.ExportError,
        match=r"missing tensor 'model.layers.1.self_attn.q_norm.weight' \(expected shape \[16\]\)",
    ):
        staticllm.export(tmp_path / "b", hf_dir=tmp_path / "hf", max_context_len=CONTEXT, progress=False)
    sd["model.layers.1.self_attn.q_norm.weight"] = torch.ones(8)
    save_file(sd, str(f))
    with pytest.raises(
        staticllm.ExportError,
        match=r"tensor 'model.layers.1.self_attn.q_norm.weight' has shape \[8\], expected \[16\]",
    ):
        staticllm.export(tmp_path / "b", hf_dir=tmp_path / "hf", max_context_len=CONTEXT, progress=False)


def _gguf_key(key: str, value, kind: str):
    return lambda w: getattr(w, f"add_{kind}")(key, value)


GGUF_REFUSED = [
    (
        "qwen2moe",
        "qwen2moe",
        None,
        r"general.architecture = 'qwen2moe' is not supported: this exporter implements llama, qwen2, qwen3, "
        r"gemma3, phi3 \(it needs mixture-of-experts layers",
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


def test_gemma3_residual_scale_is_exact_and_fits_fp16(tmp_path):
    """fp16 headroom for Gemma 3: a stream grown far past fp16 (embeddings x 1e4)
    gets a power-of-two scale folded into the weights; fp32 logits do not move."""
    from staticllm.exporter import build_model
    from staticllm.exporter.checkpoints import load_hf
    from staticllm.exporter.models import FP16_RESIDUAL_LIMIT, fit_fp16

    save_random(tmp_path / "hf", FAMILIES["gemma3"]())
    model = build_model(load_hf(tmp_path / "hf"), CONTEXT)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(1e4)
    ids = torch.tensor([PROMPT])
    want = model.sequence_logits(ids)
    scale = fit_fp16(model, bos=0)
    assert scale >= 16 and model.residual_scale == scale
    peaks = []
    hooks = [
        la.register_forward_hook(lambda m, i, o: peaks.append(float(o[0].abs().max())))
        for la in model.model.layers
    ]
    got = model.sequence_logits(ids)
    for h in hooks:
        h.remove()
    assert max(peaks) <= FP16_RESIDUAL_LIMIT
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * float(want.abs().max()))
