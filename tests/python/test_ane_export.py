"""The Neural Engine export target (`export --target ane`, exporter/targets.py).

In torch, before any conversion: the ane graph of every family computes
what the generic one does (its blocks in the [1, C, 1, S] layout, per-head
attention, rotary inputs, chunked head and embedding), its RMSNorm survives
fp16 activations that overflow the plain form, and a chunked embedding reads
the right rows at every chunk edge.

Exported (tiny random transformers checkpoints of each family, fp16, single
method to keep the cost at one conversion each): the package passes
`staticllm check` with no error (the export enforces it), its graph holds no
fp32 value and no `linear`, and through the interpreter its logits reach
40 dB SNR against transformers in fp32 and its greedy continuation equals
transformers' (or first differs at a near-tie). A multifunction bundle
stores its weights once and decodes as the single method does. Bundles with
argmax and top-k heads give the same greedy tokens (lookahead included) and
the same top-k samples as the logits head, and refuse sampling that needs
full logits; a vocabulary of 70,000 reads its embedding rows right around
16,383 and 65,535 in the bundle.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import staticllm
from llama_fixtures import make_hf_checkpoint, tiny_config
from staticllm.check import check_package
from staticllm.exporter import build_model
from staticllm.exporter.checkpoints import load_hf
from staticllm.exporter.models import ane_ops
from staticllm.exporter.targets import GENERIC_TARGET, make_target
from test_hf_families import CONTEXT, FAMILIES, INPUT_LEN, PROMPT, save_random, transformers_generate

N_NEW = 24
NEAR_TIE = 0.05
MIN_SNR_DB = 40.0  # Apple's gate for a compiled model, the bar for the real ones


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean over rows of 10 log10(sum ref^2 / sum (ref - got)^2), as staticllm eval computes it."""
    ref, got = np.atleast_2d(ref).astype(np.float64), np.atleast_2d(got).astype(np.float64)
    return float(np.mean(10 * np.log10((ref**2).sum(-1) / ((ref - got) ** 2).sum(-1))))


# ---------------------------------------------------------------- torch level


def _ane_forward(model, ids: list[int]) -> torch.Tensor:
    """Full logits of one call over ids from position 0 (empty caches)
    through the model's ane graph, fed as the runner feeds a bundle."""
    from staticllm.generate.masks import causal_allowed, fill_mask
    from staticllm.generate.rotary import RotaryFill

    io = model.graph_io()
    n, cfg = len(ids), model.cfg
    pos = np.arange(n)
    ropes = []
    for r in io.rope:
        cos, sin = (
            np.zeros((1, n, len(r.inv_freq)), np.float32),
            np.zeros((1, n, len(r.inv_freq)), np.float32),
        )
        RotaryFill(r)(cos, sin, pos)
        ropes += [torch.from_numpy(cos), torch.from_numpy(sin)]
    masks = []
    for g in model.groups:
        m = np.zeros((1, n, n), np.float32)
        fill_mask(m, np.zeros(0, np.int64), pos, causal_allowed(n, n), g.window, model.target.mask_value)
        masks.append(torch.from_numpy(m))
    empty = torch.zeros(1, cfg.n_kv_heads, 0, cfg.head_dim)
    model.logits_mode = "full"
    with torch.no_grad():
        out = model(torch.tensor([ids], dtype=torch.int32), *ropes, *masks, *[empty] * (2 * cfg.n_layers))
    chunks = out[: len(io.head_spec().outputs)]
    return torch.cat(chunks, dim=-1)[0]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_ane_graph_computes_the_generic_one(tmp_path, name):
    save_random(tmp_path / "hf", FAMILIES[name]())
    model = build_model(load_hf(tmp_path / "hf"), CONTEXT)
    want = model.sequence_logits(torch.tensor([PROMPT]))
    model.set_target(make_target("ane", max_dim=64))  # 320 rows: five chunks
    got = _ane_forward(model, PROMPT)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * float(want.abs().max()))
    assert model.target.name == "ane"  # sequence_logits ran the generic graph and put the target back


def test_safe_rms_norm_survives_what_overflows_fp16():
    """A row of 576 values near 3,000: its squares sum to 5e9, far past fp16's
    65,504; the plain fp16 form returns zeros, the scaled one the fp32 value."""
    gen = torch.Generator().manual_seed(0)
    x = 3000 + 100 * torch.randn(1, 576, 1, 2, generator=gen)
    w = 1 + 0.1 * torch.randn(1, 576, 1, 1, generator=gen)
    want = x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-5) * w
    plain = (x.half() * torch.rsqrt(x.half().pow(2).mean(1, keepdim=True) + 1e-5) * w.half()).float()
    assert plain.abs().max() == 0  # the sum of squares overflowed to inf
    got = ane_ops.safe_rms_norm(x.half(), w.half(), 1e-5, 1).float()
    torch.testing.assert_close(got, want, rtol=2e-3, atol=2e-3)
    tiny = 1e-4 * torch.randn(1, 64, 1, 3, generator=gen)  # below the floor of the scale: still exact in fp32
    exact = tiny * torch.rsqrt(tiny.pow(2).mean(1, keepdim=True) + 1e-6)
    torch.testing.assert_close(
        ane_ops.safe_rms_norm(tiny, torch.ones(1), 1e-6, 1), exact, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("rows", [16_384, 65_535])
def test_chunked_lookup_reads_the_right_rows_at_chunk_edges(rows):
    vocab = 70_000
    weight = torch.arange(vocab, dtype=torch.float32)[:, None] * torch.tensor([[1.0, -1.0]])
    tokens = torch.tensor([[0, 16_383, 16_384, 32_767, 32_768, 65_534, 65_535, 65_536, 69_999]])
    got = ane_ops.lookup(weight, tokens, rows)
    assert torch.equal(got[0], weight[tokens[0]])


def test_target_options_are_checked(tmp_path):
    with pytest.raises(staticllm.ExportError, match="head topk needs k"):
        make_target("ane", head="topk")
    with pytest.raises(staticllm.ExportError, match="k applies to head topk only"):
        make_target("ane", head="argmax", k=2)
    with pytest.raises(staticllm.ExportError, match=r"ane_max_dim must be an integer in 1..65536"):
        make_target("ane", max_dim=70_000)
    with pytest.raises(staticllm.ExportError, match="applies to target 'ane' only"):
        make_target("generic", max_dim=1024)
    assert (
        make_target("ane").check_target == "ane-a14" and make_target("ane", 65_536).check_target == "ane-a16"
    )
    assert make_target() is GENERIC_TARGET
    hf = make_hf_checkpoint(tmp_path / "hf", tiny_config())
    for kwargs, message in [
        (dict(dtype="fp32"), "target ane computes in fp16"),
        (dict(quantize="int8"), "quantization is not implemented for target ane"),
    ]:
        with pytest.raises(staticllm.ExportError, match=message):
            staticllm.export(tmp_path / "b", hf_dir=hf, target="ane", progress=False, **kwargs)
        assert not (tmp_path / "b").exists()


# ----------------------------------------------------------------- exported


def _check_clean(bundle) -> None:
    """No error from the check (the export enforced it), and the graph is what the target promises."""
    package = bundle / "model.mlpackage"
    findings = check_package(package)
    assert not [f for f in findings if f.level == "error"], findings
    rules = {f.rule for f in findings}
    assert "ane-linear" not in rules and "ane-fp16-reduction" not in rules
    program = json.loads((bundle / "program.json").read_text())
    text = json.dumps(program)
    assert '"conv"' in text and '"linear"' not in text and "FLOAT32" not in text


def _check_greedy(got: list[int], model, prompt: list[int]) -> None:
    want = transformers_generate(model, prompt, N_NEW)
    if got == want:
        return
    first = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
    with torch.no_grad():
        top = torch.topk(model(torch.tensor([prompt + want[:first]])).logits[0, -1], 2).values
    assert float(top[0] - top[1]) < NEAR_TIE, f"differs at token {first}: {got} vs {want}"


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_ane_bundle_passes_the_check_and_matches_transformers(tmp_path, name):
    model = save_random(tmp_path / "hf", FAMILIES[name]())
    b = staticllm.export(
        tmp_path / "b",
        hf_dir=tmp_path / "hf",
        input_len=INPUT_LEN,
        max_context_len=CONTEXT,
        target="ane",
        ane_max_dim=64,
        progress=False,
    )
    _check_clean(b)
    llm = json.loads((b / "metadata.json").read_text())["llm"]
    assert llm["mask_value"] == -40000.0 and "input_pos" not in llm["io"]
    assert llm["head"] == {"mode": "logits", "outputs": [f"logits_{c}" for c in range(5)]}
    gen = staticllm.Generator(b)
    ids = PROMPT[:INPUT_LEN]
    rows: list[np.ndarray] = []
    gen.runner.feed(ids, rows=rows)
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].numpy()
    assert snr_db(want, rows[0]) >= MIN_SNR_DB
    _check_greedy(gen.generate(PROMPT, max_new_tokens=N_NEW, ignore_eos=True).token_ids, model, PROMPT)


@pytest.fixture(scope="module")
def single_method_heads(tmp_path_factory):
    """{head: single-method ane bundle} of one tiny Llama (vocab 320 in chunks of 64)."""
    d = tmp_path_factory.mktemp("heads")
    hf = make_hf_checkpoint(d / "hf", tiny_config())
    out = {}
    for head, k in (("logits", None), ("argmax", None), ("topk", 4)):
        out[head] = staticllm.export(
            d / head,
            hf_dir=hf,
            input_len=16,
            max_context_len=CONTEXT,
            target="ane",
            ane_max_dim=64,
            head=head,
            topk=k,
            progress=False,
        )
    return out


def test_argmax_and_topk_heads_decode_as_the_logits_head(single_method_heads):
    b = single_method_heads
    _check_clean(b["argmax"])
    llm = json.loads((b["topk"] / "metadata.json").read_text())["llm"]
    assert llm["head"] == {"mode": "topk", "k": 4, "outputs": ["topk_values", "topk_indices"]}
    assert "quality" not in llm  # no logits to score
    gens = {h: staticllm.Generator(p) for h, p in b.items()}
    greedy = gens["logits"].generate(PROMPT, max_new_tokens=N_NEW, ignore_eos=True).token_ids
    for head in ("argmax", "topk"):
        for look in (False, True):
            got = gens[head].generate(PROMPT, max_new_tokens=N_NEW, ignore_eos=True, lookahead=look)
            assert got.token_ids == greedy, (head, look)
    sampled = dict(max_new_tokens=N_NEW, ignore_eos=True, temperature=0.8, top_k=4, top_p=0.9, seed=3)
    want = gens["logits"].generate(PROMPT, **sampled).token_ids
    assert gens["topk"].generate(PROMPT, **sampled).token_ids == want


def test_multifunction_stores_weights_once_and_decodes_as_the_single_method(tmp_path, single_method_heads):
    single = single_method_heads["logits"]
    multi = staticllm.export(
        tmp_path / "m",
        hf_dir=single.parent / "hf",
        input_len=16,
        max_context_len=CONTEXT,
        multifunction=True,
        target="ane",
        ane_max_dim=64,
        progress=False,
    )
    _check_clean(multi)

    def weight_bytes(b) -> int:
        return sum(f.stat().st_size for f in (b / "model.mlpackage").rglob("weight.bin"))

    assert weight_bytes(multi) <= 1.02 * weight_bytes(single)
    # The single method computes 16 rows per call and the decode function one:
    # the interpreter's kernels sum a many-row product in another order than a
    # one-row one, so fp16 logits agree to a few ulps (0.002 near 3), not bit
    # for bit. Fed the single bundle's greedy tokens, every step must agree and
    # pick the same token unless the single bundle's top two (nearly) tie.
    want = staticllm.Generator(single).generate(PROMPT, max_new_tokens=N_NEW, ignore_eos=True)
    runners = [staticllm.Generator(b).runner for b in (single, multi)]
    logits = [r.prefill(want.prompt_token_ids) for r in runners]
    for token in want.token_ids:
        ref, got = (np.asarray(x, dtype=np.float64).ravel() for x in logits)
        np.testing.assert_allclose(got, ref, rtol=0, atol=0.01)
        top2 = np.sort(ref)[-2:]
        assert got.argmax() == ref.argmax() or top2[1] - top2[0] < 0.01
        logits = [r.step(token) for r in runners]


def test_heads_without_logits_refuse_what_needs_them(single_method_heads):
    b = single_method_heads
    gen = staticllm.Generator(b["argmax"])
    with pytest.raises(staticllm.InputError, match=r"needs top_k between 1 and 1 .*--head logits"):
        gen.generate(PROMPT, max_new_tokens=2, temperature=0.7)
    with pytest.raises(staticllm.InputError, match="repetition_penalty .* needs full logits"):
        gen.generate(PROMPT, max_new_tokens=2, repetition_penalty=1.2)
    with pytest.raises(staticllm.InputError, match=r"needs top_k between 1 and 4 \(got 5"):
        staticllm.Generator(b["topk"]).generate(PROMPT, max_new_tokens=2, temperature=0.7, top_k=5)
    with pytest.raises(staticllm.InputError, match="not the logits eval compares"):
        staticllm.evaluate(b["topk"], token_ids=PROMPT * 4, windows=1, window_len=32)


def test_split_embedding_reads_rows_around_16383_and_65535(tmp_path):
    """A vocabulary of 70,000 in five chunks of 16,384 rows: tokens at the
    chunk edges give the logits of the fp32 torch model (each wrong row would
    give another hidden state). Every gather reads at most 16,384 rows."""
    cfg = tiny_config(vocab_size=70_000, dim=32, hidden_dim=64, n_heads=2, n_kv_heads=1, tied_embeddings=True)
    hf = make_hf_checkpoint(tmp_path / "hf", cfg)
    b = staticllm.export(
        tmp_path / "b", hf_dir=hf, input_len=8, max_context_len=32, target="ane", progress=False
    )
    findings = check_package(b / "model.mlpackage")
    assert not [f for f in findings if f.level == "error"], findings
    ids = [16_383, 16_384, 65_535, 65_536, 32_767, 32_768, 69_999, 0]
    gen = staticllm.Generator(b)
    rows: list[np.ndarray] = []
    gen.runner.reset()
    gen.runner.feed(ids, rows=rows)
    model = build_model(load_hf(hf), 32)
    want = model.sequence_logits(torch.tensor([ids])).numpy()
    assert snr_db(want, rows[0]) >= MIN_SNR_DB


def test_export_fails_when_the_check_finds_an_error(tmp_path):
    """A context above 16,384 makes the mask wider than an A14 takes: nothing is written."""
    hf = make_hf_checkpoint(tmp_path / "hf", tiny_config(dim=32, hidden_dim=64, n_heads=2, n_kv_heads=1))
    with pytest.raises(staticllm.ExportError, match=r"(?s)breaks the Neural Engine rules.*ane-max-dim"):
        staticllm.export(
            tmp_path / "b", hf_dir=hf, input_len=4, max_context_len=16_400, target="ane", progress=False
        )
    assert not (tmp_path / "b").exists()


def test_cli_export_takes_the_target_and_head(tmp_path, capsys):
    from staticllm.cli import main

    hf = make_hf_checkpoint(tmp_path / "hf", tiny_config(dim=32, hidden_dim=64, n_heads=2, n_kv_heads=1))
    base = ["export", "--hf-dir", str(hf), "--input-len", "8", "--max-context-len", "32", "--quiet"]
    with pytest.raises(SystemExit, match="--head topk takes K"):
        main([*base, "--output", str(tmp_path / "x"), "--target", "ane", "--head", "topk"])
    args = ["--output", str(tmp_path / "b"), "--target", "ane", "--ane-max-dim", "64", "--head", "topk", "2"]
    assert main([*base, *args]) == 0
    out = capsys.readouterr().out
    assert "target ane (head topk 2, chunks of 64 rows, passes check ane-a14)" in out, out
    llm = json.loads((tmp_path / "b" / "metadata.json").read_text())["llm"]
    assert llm["head"]["k"] == 2 and llm["export_options"]["target"] == "ane"
