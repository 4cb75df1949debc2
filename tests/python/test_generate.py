"""Generation through real exported bundles run by the interpreter.

One tiny random fp32 checkpoint, exported as a single-method bundle (forward,
16 rows, full logits) and as a prefill/decode multifunction bundle: greedy
continuations agree with the PyTorch model's full-sequence forward, with and
without lookahead; seeded sampling repeats; bad input fails clearly.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import llama_fixtures as f
import staticllm
from staticllm.bundle_io import write_metadata
from staticllm.errors import ContextOverflowError, InputError, MetadataError
from staticllm.generate import Generator

INPUT_LEN, CONTEXT = 16, 128
CFG = f.tiny_config()
PROMPT = [int(t) for t in np.random.default_rng(0).integers(2, CFG.vocab_size, 37)]  # > INPUT_LEN


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    ckpt = f.make_hf_checkpoint(root / "ckpt", CFG)
    out = {}
    for name, multi in (("single", False), ("multi", True)):
        out[name] = staticllm.export(
            root / name,
            hf_dir=ckpt,
            input_len=INPUT_LEN,
            max_context_len=CONTEXT,
            multifunction=multi,
            dtype="fp32",
            progress=False,
        )
    return out


@pytest.fixture(scope="module")
def single(bundles):
    return Generator(bundles["single"])


@pytest.fixture(scope="module")
def multi(bundles):
    return Generator(bundles["multi"])


@pytest.fixture(scope="module")
def torch_model():
    return f.reference_model(CFG, f.random_state_dict(CFG, 0), CONTEXT)


@pytest.fixture(scope="module")
def reference(torch_model):
    return f.torch_greedy(torch_model, PROMPT, 48)


def test_greedy_48_tokens_identical_torch_single_lookahead_multifunction(single, multi, reference):
    a = single.generate(PROMPT, max_new_tokens=48, ignore_eos=True)
    b = single.generate(
        PROMPT, max_new_tokens=48, ignore_eos=True, lookahead=True, ngram=4, window=2, branches=2
    )
    c = multi.generate(PROMPT, max_new_tokens=48, ignore_eos=True)
    assert a.token_ids == reference
    assert b.token_ids == reference
    assert c.token_ids == reference
    assert a.stop_reason == b.stop_reason == c.stop_reason == "max_new_tokens"
    # prompt: 3 chunks through forward / prefill; then one call per token (47 after the first)
    assert a.timings.decode_calls == c.timings.decode_calls == 47
    assert b.timings.accepted_per_call is not None and b.timings.accepted_per_call >= 1.0
    assert b.timings.decode_calls <= 47
    assert b.lookahead is not None and (b.lookahead.ngram, b.lookahead.window, b.lookahead.branches) == (
        4,
        2,
        2,
    )


def test_lookahead_accepts_several_tokens_per_call_on_repetitive_text(single):
    prompt = (PROMPT[:6] * 8)[:40]
    plain = single.generate(prompt, max_new_tokens=60, ignore_eos=True)
    for n, w, g in ((3, 3, 2), (5, 1, 2), (2, 4, 4)):
        look = single.generate(
            prompt, max_new_tokens=60, ignore_eos=True, lookahead=True, ngram=n, window=w, branches=g
        )
        assert look.token_ids == plain.token_ids, (n, w, g)
        assert look.timings.decode_calls < 59
        assert look.timings.accepted_per_call > 1.0


def test_lookahead_defaults_fit_the_method(single):
    r = single.generate(PROMPT, max_new_tokens=8, ignore_eos=True, lookahead=True)
    look = r.lookahead
    assert look is not None and look.rows_needed <= INPUT_LEN and look.ngram == 5
    with pytest.raises(
        InputError,
        match=r"needs 1 \+ \(window \+ branches\) \* \(ngram - 1\) = 33 input rows, "
        r"but method 'forward' takes 16",
    ):
        single.generate(PROMPT, lookahead=True, ngram=5, window=4, branches=4)


def test_seeded_sampling_is_reproducible(single, multi):
    opts = dict(
        max_new_tokens=24, temperature=0.9, top_k=50, top_p=0.95, repetition_penalty=1.1, ignore_eos=True
    )
    a = multi.generate(PROMPT, seed=123, **opts).token_ids
    assert multi.generate(PROMPT, seed=123, **opts).token_ids == a
    assert multi.generate(PROMPT, seed=124, **opts).token_ids != a
    # the same draws from (numerically) the same logits, whatever the bundle kind or decoding
    assert single.generate(PROMPT, seed=123, **opts).token_ids == a
    assert (
        single.generate(PROMPT, seed=123, lookahead=True, ngram=3, window=2, branches=3, **opts).token_ids
        == a
    )


def test_context_limit_stops_or_raises_before_running(single, multi, torch_model):
    prompt = PROMPT * 3 + PROMPT[:9]  # 120 tokens of 128
    ref = f.torch_greedy(torch_model, prompt, 8)
    for gen, extra in (
        (multi, {}),
        (single, {}),
        (single, dict(lookahead=True, ngram=3, window=2, branches=2)),
    ):
        r = gen.generate(prompt, max_new_tokens=20, ignore_eos=True, **extra)
        assert r.stop_reason == "context_limit"
        assert r.token_ids == ref  # 120 + 8 = 128: never past the cache
    calls_before = multi.runner.calls
    with pytest.raises(
        ContextOverflowError,
        match="prompt of 120 tokens \\+ max_new_tokens 20 exceed the context limit of 128 tokens",
    ):
        multi.generate(prompt, max_new_tokens=20, strict=True)
    assert multi.runner.calls == calls_before  # nothing ran
    with pytest.raises(
        ContextOverflowError, match="prompt of 130 tokens does not fit the context limit of 128"
    ):
        multi.generate(prompt + PROMPT[:10], max_new_tokens=1)
    full = multi.generate(prompt + PROMPT[:8], max_new_tokens=4)
    assert full.token_ids == [] and full.stop_reason == "context_limit"
    multi.runner.reset()
    multi.runner.feed(prompt)
    with pytest.raises(
        ContextOverflowError, match="120 tokens in context \\+ 9 more exceed the context limit of 128"
    ):
        multi.runner.feed([3] * 9)  # the runner itself refuses to wrap the ring


def test_caches_are_shared_between_methods_and_updated_in_place(multi):
    runner = multi.runner
    prefill, decode = runner.io["prefill"], runner.io["decode"]
    ((_, cache),) = runner.caches
    before = {name: arr for name, arr in cache.arrays.items()}
    multi.generate(PROMPT, max_new_tokens=4, ignore_eos=True)
    for name, arr in before.items():
        assert prefill.inputs[name] is arr and decode.inputs[name] is arr and cache.arrays[name] is arr
    assert cache.slot_pos[: len(PROMPT) + 3].tolist() == list(range(len(PROMPT) + 3))
    assert (cache.slot_pos[len(PROMPT) + 3 :] == -1).all()


def test_stop_token_ids_and_max_new_tokens(multi, reference):
    r = multi.generate(PROMPT, max_new_tokens=48, stop_token_ids=[reference[5]], ignore_eos=True)
    first = reference.index(reference[5])
    assert r.token_ids == reference[: first + 1] and r.stop_reason == "stop_token"
    r = multi.generate(PROMPT, max_new_tokens=3, ignore_eos=True)
    assert r.token_ids == reference[:3] and r.stop_reason == "max_new_tokens"
    assert multi.generate(PROMPT, max_new_tokens=0).token_ids == []


def test_text_prompt_streaming_and_stop_strings(multi):
    assert multi.tokenizer is not None
    r = multi.generate("the quick brown fox", max_new_tokens=20, ignore_eos=True)
    pieces = list(multi.stream("the quick brown fox", max_new_tokens=20, ignore_eos=True))
    assert "".join(pieces) == r.text == multi.tokenizer.decode(r.token_ids)
    assert multi.last_result is not None and multi.last_result.token_ids == r.token_ids
    assert r.timings.ttft_s > 0 and r.timings.prefill_tokens_per_s > 0 and r.timings.decode_tokens_per_s > 0
    if len(r.text) > 6:
        stop = r.text[3:6]
        cut = multi.generate("the quick brown fox", max_new_tokens=20, ignore_eos=True, stop=[stop])
        assert cut.stop_reason == "stop_string" and cut.text == r.text[: r.text.index(stop)]
        streamed = "".join(
            multi.stream("the quick brown fox", max_new_tokens=20, ignore_eos=True, stop=[stop])
        )
        assert streamed == cut.text


def test_bad_input_gives_clear_errors(multi, single, bundles, tmp_path):
    with pytest.raises(InputError, match="the prompt is empty"):
        multi.generate("")
    with pytest.raises(InputError, match="the prompt is empty"):
        multi.generate([])
    with pytest.raises(
        InputError,
        match=r"prompt token 400 at index 1 is outside the model's vocabulary \[0, 320\); "
        r"was it made by a different tokenizer\?",
    ):
        multi.generate([5, 400, 7])
    with pytest.raises(InputError, match="temperature must be >= 0"):
        multi.generate(PROMPT, temperature=-1.0)
    with pytest.raises(InputError, match=r"top_p must be in \(0, 1\]"):
        multi.generate(PROMPT, temperature=1.0, top_p=0.0)
    with pytest.raises(InputError, match=r"top_p must be in \(0, 1\]"):
        multi.generate(PROMPT, temperature=1.0, top_p=1.5)
    with pytest.raises(InputError, match="unknown generation option"):
        multi.generate(PROMPT, temprature=1.0)
    with pytest.raises(InputError, match="lookahead decoding needs a single-method bundle"):
        multi.generate(PROMPT, lookahead=True)
    with pytest.raises(InputError, match="no chat template"):
        multi.generate("hello", chat=True)
    # a bundle without an llm section (e.g. imported from an arbitrary package)
    plain = tmp_path / "no-llm"
    shutil.copytree(bundles["single"], plain)
    meta = json.loads((plain / "metadata.json").read_text())
    del meta["llm"]
    write_metadata(meta, plain / "metadata.json")
    with pytest.raises(MetadataError, match="has no 'llm' section, so it cannot be used for text generation"):
        Generator(plain)


def test_cli_generate_prints_text_and_stats(bundles, capsys):
    from staticllm.cli import main

    code = main(
        [
            "generate",
            str(bundles["single"]),
            "--prompt",
            "hello world",
            "--max-new-tokens",
            "12",
            "--lookahead",
            "--ngram",
            "3",
            "--window",
            "2",
            "--branches",
            "2",
            "--stats",
            "--stream",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0 and out.strip()
    assert "time to first token:" in err and "prefill:" in err and "decode:" in err
    assert "accepted tokens per call" in err
    code = main(["generate", str(bundles["multi"]), "--prompt", "hi", "--temperature", "-2"])
    _, err = capsys.readouterr()
    assert code == 2 and "temperature must be >= 0" in err


def test_cli_generate_without_mmap(bundles, capsys):
    from staticllm.cli import main

    args = [
        "generate",
        str(bundles["multi"]),
        "--prompt",
        "hello",
        "--max-new-tokens",
        "4",
        "--temperature",
        "0",
    ]
    assert main(args) == 0
    mapped = capsys.readouterr().out
    assert main([*args, "--no-mmap"]) == 0
    assert capsys.readouterr().out == mapped  # the same greedy text, from weights read into memory


def test_short_prompt_tail_goes_through_decode(multi, torch_model):
    prompt = PROMPT[:34]  # 2 prefill chunks of 16 + a 2-token tail (<= 16 / 8): two decode calls
    ref = f.torch_greedy(torch_model, prompt, 6)
    r = multi.generate(prompt, max_new_tokens=6, ignore_eos=True)
    assert r.token_ids == ref
    assert multi.runner.calls == 2 + 2 + 5
    r = multi.generate(prompt[: 35 - 6], max_new_tokens=2, ignore_eos=True)  # 29 = 16 + 13: padded prefill
    assert multi.runner.calls == 2 + 1
