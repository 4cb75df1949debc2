"""`staticllm eval` / `staticllm.evaluate` on a tiny model: its perplexity,
SNR, top-1 agreement and KL equal the same quantities computed here with torch
from logits taken independently (the bundle's method called directly, the
reference through transformers); decode steps of a multifunction bundle give
the same logits as a single-method bundle's forward; thresholds set the exit
status; bad input is a clear error."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import staticllm
from llama_fixtures import make_hf_checkpoint, tiny_config
from staticllm.cli import main
from staticllm.errors import InputError

WINDOW = 16  # tokens per window; single-method bundles take WINDOW - 1 per call


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_hf_checkpoint(tmp_path_factory.mktemp("eval") / "hf", tiny_config())


def _export(ckpt, out, **kw):
    options = dict(hf_dir=ckpt, max_context_len=64, input_len=WINDOW - 1, progress=False, force=True)
    return staticllm.export(out, **{**options, **kw})


@pytest.fixture(scope="module")
def fp16_forward(ckpt, tmp_path_factory):
    return _export(ckpt, tmp_path_factory.mktemp("f16") / "b", dtype="fp16", quantize="int8")


@pytest.fixture(scope="module")
def fp32_forward(ckpt, tmp_path_factory):
    return _export(ckpt, tmp_path_factory.mktemp("f32") / "b", dtype="fp32")


@pytest.fixture(scope="module")
def fp32_pair(ckpt, tmp_path_factory):
    return _export(ckpt, tmp_path_factory.mktemp("pair") / "b", dtype="fp32", multifunction=True, input_len=4)


def _ids(n: int) -> list[int]:
    return np.random.default_rng(3).integers(0, 320, n).tolist()


def _bundle_logits(bundle, window: list[int]) -> torch.Tensor:
    """The forward method called directly: WINDOW - 1 tokens, empty cache."""
    method = staticllm.Runtime.load(bundle, backend="mil").method("forward")
    specs = {s.name: s for s in method.input_specs}
    n = len(window) - 1
    cache_len = specs["k_cache_0"].shape[2]
    mask = np.full((1, n, cache_len + n), -np.inf, dtype=specs["attn_mask"].dtype)
    mask[0, :, cache_len:] = np.where(np.tril(np.ones((n, n), bool)), 0, -np.inf)
    feed = {name: np.zeros(s.shape, s.dtype) for name, s in specs.items()}
    feed.update(
        tokens=np.array([window[:-1]], np.int32), input_pos=np.arange(n, dtype=np.int32), attn_mask=mask
    )
    return torch.from_numpy(method.execute(feed)["logits"][0].astype(np.float64))


def _transformers_logits(ckpt, window: list[int]) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([window])).logits[0, :-1].double()


def test_metrics_equal_a_torch_computation(ckpt, fp16_forward):
    ids = _ids(2 * WINDOW)
    result = staticllm.evaluate(
        fp16_forward, token_ids=ids, windows=2, window_len=WINDOW, reference_hf_dir=ckpt, progress=False
    )
    windows = [ids[:WINDOW], ids[WINDOW:]]
    got = torch.cat([_bundle_logits(fp16_forward, w) for w in windows])
    ref = torch.cat([_transformers_logits(ckpt, w) for w in windows])
    targets = torch.tensor([t for w in windows for t in w[1:]])
    nll = torch.nn.functional.cross_entropy(got, targets)
    ref_nll = torch.nn.functional.cross_entropy(ref, targets)
    snr = (10 * torch.log10(ref.pow(2).sum(-1) / (ref - got).pow(2).sum(-1))).mean()
    kl = torch.nn.functional.kl_div(
        got.log_softmax(-1), ref.log_softmax(-1), log_target=True, reduction="batchmean"
    )
    assert result.tokens_scored == 2 * (WINDOW - 1)
    assert result.how == "forward (full logits)"
    assert result.perplexity == pytest.approx(math.exp(nll), rel=1e-9)
    assert result.reference_perplexity == pytest.approx(math.exp(ref_nll), rel=1e-6)
    assert result.ppl_ratio == pytest.approx(math.exp(nll - ref_nll), rel=1e-6)
    assert result.snr_db == pytest.approx(float(snr), rel=1e-6)
    assert result.top1_agreement == pytest.approx(float((got.argmax(-1) == ref.argmax(-1)).double().mean()))
    assert result.mean_kl == pytest.approx(float(kl), rel=1e-5, abs=1e-9)
    assert 20 < result.snr_db < 60  # int8 weights in fp16: close to, not equal to, the reference


def test_decode_steps_give_the_forward_logits(fp32_pair, fp32_forward):
    """A multifunction bundle is scored through decode, one token per call;
    against the single-method bundle (same fp32 weights) nothing differs."""
    result = staticllm.evaluate(
        fp32_pair,
        token_ids=_ids(2 * WINDOW),
        windows=2,
        window_len=WINDOW,
        reference_bundle=fp32_forward,
        progress=False,
    )
    assert result.how == "decode steps"
    assert result.tokens_scored == 2 * (WINDOW - 1)
    assert result.ppl_ratio == pytest.approx(1.0, abs=1e-5)
    assert result.snr_db > 80 and result.top1_agreement == 1.0 and result.mean_kl < 1e-8


def test_builtin_text_and_text_file(fp32_forward, tmp_path):
    result = staticllm.evaluate(fp32_forward, windows=3, window_len=32, progress=False)
    assert result.text == "built-in text" and result.windows == 3 and result.tokens_scored == 3 * 31
    assert result.reference is None and result.snr_db is None
    assert 1 < result.perplexity < 320 * 10
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 20)
    assert main(["eval", str(fp32_forward), "--text", str(text), "--windows", "2", "--window-len", "16"]) == 0
    from_path = staticllm.evaluate(fp32_forward, text, windows=2, window_len=16, progress=False)
    from_string = staticllm.evaluate(fp32_forward, text.read_text(), windows=2, window_len=16, progress=False)
    assert from_path.text == "t.txt" and from_string.text == "given text"
    assert from_path.perplexity == from_string.perplexity
    # weights read into memory (--no-mmap) score the same bytes the same way
    read = staticllm.evaluate(fp32_forward, text, windows=2, window_len=16, mmap=False, progress=False)
    assert read.perplexity == from_path.perplexity
    args = ["eval", str(fp32_forward), "--text", str(text), "--windows", "2", "--window-len", "16"]
    assert main([*args, "--no-mmap", "--quiet"]) == 0


def test_thresholds_set_the_exit_status(ckpt, fp16_forward, capsys):
    base = ["eval", str(fp16_forward), "--windows", "2", "--window-len", str(WINDOW), "--quiet"]
    base += ["--reference-hf-dir", str(ckpt)]
    assert main([*base, "--min-snr", "10", "--max-ppl-ratio", "1.5"]) == 0
    capsys.readouterr()
    assert main([*base, "--min-snr", "200"]) == 1
    err = capsys.readouterr().err
    assert "FAILED: logits SNR" in err and "below the minimum 200 dB" in err
    assert main([*base, "--max-ppl-ratio", "0.5", "--json"]) == 1
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["failures"] == [f"perplexity ratio {doc['ppl_ratio']:.4f} is above the maximum 0.5"]
    assert "FAILED: perplexity ratio" in err
    with pytest.raises(SystemExit, match="need a reference"):
        main(["eval", str(fp16_forward), "--min-snr", "10"])


def test_text_shorter_than_one_window(fp32_forward, tmp_path, capsys):
    text = tmp_path / "short.txt"
    text.write_text("hello world")
    assert main(["eval", str(fp32_forward), "--text", str(text), "--window-len", "32"]) == 2
    err = capsys.readouterr().err
    assert "shorter than one window of 32; give a longer text or a smaller window length" in err
    with pytest.raises(
        InputError, match=r"the text holds 1 window\(s\) of 16 tokens \(20 tokens\), but 4 were"
    ):
        staticllm.evaluate(fp32_forward, token_ids=_ids(20), windows=4, window_len=16, progress=False)
    capsys.readouterr()
    assert main(["eval", str(fp32_forward), "--text", str(tmp_path / "none.txt")]) == 2
    assert "text file not found" in capsys.readouterr().err


def test_window_longer_than_the_context(fp32_forward):
    with pytest.raises(InputError, match=r"window length 100 exceeds .* context limit of 64 tokens"):
        staticllm.evaluate(fp32_forward, window_len=100, progress=False)


def test_reference_with_another_vocabulary(fp32_forward, tmp_path):
    other = make_hf_checkpoint(tmp_path / "other", tiny_config(vocab_size=256), with_tokenizer=False)
    with pytest.raises(
        InputError, match=r"has a vocabulary of 256 tokens, the bundle 320: they do not share"
    ):
        staticllm.evaluate(
            fp32_forward, token_ids=_ids(32), windows=2, window_len=16, reference_hf_dir=other, progress=False
        )


def test_token_ids_outside_the_vocabulary(fp32_forward):
    with pytest.raises(InputError, match=r"token id 320 is outside the bundle's vocabulary \[0, 320\)"):
        staticllm.evaluate(fp32_forward, token_ids=[1, 2, 320, 4], windows=1, window_len=4, progress=False)


def test_meta_checkpoint_and_gguf_references(fp32_forward, tmp_path):
    """The same random weights (seed 0) as Meta .pth (staticllm's torch model)
    and as an F32 GGUF file (transformers): both agree with the fp32 bundle."""
    from llama_fixtures import make_gguf_checkpoint, make_meta_checkpoint

    meta = make_meta_checkpoint(tmp_path / "meta", tiny_config())
    gguf = make_gguf_checkpoint(tmp_path / "m.gguf", tiny_config())
    common = dict(token_ids=_ids(2 * WINDOW), windows=2, window_len=WINDOW, progress=False)
    by_meta = staticllm.evaluate(fp32_forward, reference_checkpoint=meta / "consolidated.00.pth", **common)
    by_gguf = staticllm.evaluate(fp32_forward, reference_gguf=gguf, **common)
    for result in (by_meta, by_gguf):
        assert result.snr_db > 60 and result.top1_agreement == 1.0
        assert result.ppl_ratio == pytest.approx(1.0, abs=1e-4)
    assert (
        by_meta.reference == "checkpoint consolidated.00.pth" and by_gguf.reference == "transformers m.gguf"
    )
    with pytest.raises(InputError, match=r"give at most one reference, got reference_hf_dir, reference_gguf"):
        staticllm.evaluate(fp32_forward, reference_hf_dir=tmp_path, reference_gguf=gguf, **common)
