"""GGUF for every family llama.cpp writes: a tiny random transformers model of
the family written as llama.cpp's converter writes it (tensor names from the
gguf package's own map, q/k rows interleaved only for `llama`, Gemma's norm
weights stored with the +1), loaded by staticllm's GGUF loader and checked
against transformers on the same weights (fp32 logits within 1e-4 of the
largest). One family also goes through a whole export. The rebuilt
SentencePiece tokenizer (GGUF tokenizer model `llama`) is checked against
transformers' own GGUF tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import staticllm
from bundle_loop import BundleLoop
from llama_fixtures import half_to_interleaved
from staticllm.exporter import build_model
from staticllm.exporter.checkpoints import load_gguf
from test_hf_families import _config, save_random

CONTEXT = 64
IDS = [5, 17, 42, 99, 3, 250, 7, 61, 8, 123, 44, 9, 31, 77, 2, 150, 19, 23, 4, 88]  # longer than the window


def _gemma3():
    return _config(
        "Gemma3TextConfig",
        num_hidden_layers=6,  # llama.cpp's pattern: layer 5 global, the rest sliding
        head_dim=16,
        sliding_window=8,
        query_pre_attn_scalar=256,  # what transformers assumes for a GGUF
    )


# arch -> (transformers config, extra GGUF keys)
FAMILIES = {
    "llama": (lambda: _config("LlamaConfig"), {}),
    "qwen2": (lambda: _config("Qwen2Config", tie_word_embeddings=True), {}),
    "qwen3": (lambda: _config("Qwen3Config", head_dim=32), {"attention.key_length": 32}),
    "gemma3": (_gemma3, {"attention.key_length": 16, "attention.sliding_window": 8}),
    "phi3": (lambda: _config("Phi3Config"), {}),
}


def write_gguf(path, model, arch: str, extra: dict) -> None:
    """The model as llama.cpp's convert_hf_to_gguf writes it (F32 tensors)."""
    import gguf

    c = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(CONTEXT)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    theta = c.rope_parameters.get("full_attention", c.rope_parameters)["rope_theta"]
    w.add_rope_freq_base(theta)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    for key, value in extra.items():
        w.add_uint32(f"{arch}.{key}", value)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<t{i}>" for i in range(c.vocab_size)])
    w.add_token_scores([0.0] * c.vocab_size)
    w.add_token_types([1] * c.vocab_size)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], c.num_hidden_layers)
    hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and c.tie_word_embeddings:
            continue
        if arch == "llama" and name.endswith("q_proj.weight"):
            t = half_to_interleaved(t, c.num_attention_heads, hd)
        elif arch == "llama" and name.endswith("k_proj.weight"):
            t = half_to_interleaved(t, c.num_key_value_heads, hd)
        if arch == "gemma3" and name.endswith("norm.weight"):
            t = t + 1
        w.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), t.numpy().astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("arch", sorted(FAMILIES))
def test_gguf_family_matches_transformers(tmp_path, arch):
    make, extra = FAMILIES[arch]
    model = save_random(tmp_path / "hf", make())
    write_gguf(tmp_path / "m.gguf", model, arch, extra)
    ckpt = load_gguf(tmp_path / "m.gguf")
    assert ckpt.config.architecture == arch
    got = build_model(ckpt, CONTEXT).sequence_logits(torch.tensor([IDS]))
    with torch.no_grad():
        want = model(torch.tensor([IDS])).logits[0]
    torch.testing.assert_close(got, want, atol=1e-4 * float(want.abs().max()), rtol=0)


def test_gguf_gemma3_exports_with_rings(tmp_path):
    model = save_random(tmp_path / "hf", _gemma3())
    write_gguf(tmp_path / "m.gguf", model, "gemma3", FAMILIES["gemma3"][1])
    b = staticllm.export(
        tmp_path / "b",
        gguf=tmp_path / "m.gguf",
        input_len=8,
        max_context_len=CONTEXT,
        dtype="fp32",
        progress=False,
    )
    loop = BundleLoop(str(b))
    assert [(g.length, g.layers) for g in loop.llm.groups] == [(CONTEXT, (5,)), (8, (0, 1, 2, 3, 4))]
    rows = np.concatenate([loop.step("forward", IDS[i : i + 8]) for i in range(0, len(IDS), 8)])
    with torch.no_grad():
        want = model(torch.tensor([IDS])).logits[0].numpy()
    np.testing.assert_allclose(rows, want, atol=1e-4 * np.abs(want).max(), rtol=0)


def test_gguf_sentencepiece_tokenizer_matches_transformers(tmp_path):
    """A SentencePiece-style (`llama`) vocabulary without merges: staticllm rebuilds
    the merges from the scores as transformers' GGUF loader does."""
    import gguf
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    words = [
        "\u2581the",
        "\u2581qu",
        "ick",
        "\u2581quick",
        "\u2581b",
        "rown",
        "\u2581brown",
        "\u2581f",
        "ox",
        "\u2581fox",
    ]
    chars = sorted({c for w in words for c in w})
    pieces += chars + ["th", "he", "\u2581t", "\u2581th"] + words
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces) - 259)]
    types = [2, 3, 3] + [6] * 256 + [1] * (len(pieces) - 259)
    path = tmp_path / "tok.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(pieces)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    from staticllm.exporter.gguf_tokenizer import tokenizer_from_gguf

    tok_json, _, _ = tokenizer_from_gguf(gguf.GGUFReader(str(path)))
    ours = Tokenizer.from_str(tok_json)
    ref = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="tok.gguf")
    for text in ["the quick brown fox", "quickbrown the fox", "thee fox!", "  brown"]:
        assert (
            ours.encode(text, add_special_tokens=False).ids
            == ref(text, add_special_tokens=False)["input_ids"]
        ), text
