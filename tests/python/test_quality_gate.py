"""The quality gate at export: a quantized or fp16 bundle is compared with the
fp32 torch model on a calibration text; the figures land in the llm section,
and a bundle below --min-snr is refused with nothing written unless forced.
Also the k-means behind palettization against the exact 1-D optimum."""

from __future__ import annotations

import json

import numpy as np
import pytest

import staticllm
from llama_fixtures import make_hf_checkpoint, tiny_config
from staticllm.errors import ExportError
from staticllm.exporter.quality_gate import DEFAULT_MIN_SNR_DB


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_hf_checkpoint(tmp_path_factory.mktemp("gate") / "hf", tiny_config())


def _export(ckpt, out, **kw):
    return staticllm.export(out, hf_dir=ckpt, input_len=8, max_context_len=64, progress=False, **kw)


def _quality(bundle):
    return json.loads((bundle / "metadata.json").read_text())["llm"].get("quality")


# One scale per 64-input row in int4 is a deliberately bad setting: on this
# model it measures well below 20 dB, int8 above 25 dB.
BAD = dict(quantize="int4", block_size=64, min_snr=20)


def test_gate_refuses_a_bad_setting_and_writes_nothing(ckpt, tmp_path):
    out = tmp_path / "bad"
    with pytest.raises(ExportError) as info:
        _export(ckpt, out, **BAD)
    message = str(info.value)
    assert message.startswith(
        "quality gate: the fp16 model quantized int4 (block_size 64), embeddings int8, lm_head int8: "
        "its logits are "
    )
    assert "below the minimum of 20 dB" in message
    assert "nothing was written" in message and "--force" in message
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory left behind


def test_force_writes_it_and_says_so(ckpt, tmp_path):
    q = _quality(_export(ckpt, tmp_path / "forced", force=True, **BAD))
    assert q["forced"] is True and q["snr_db"] < 20 and q["min_snr_db"] == 20


def test_gate_accepts_int8_and_records_the_figures(ckpt, tmp_path):
    q = _quality(_export(ckpt, tmp_path / "int8", quantize="int8"))
    assert q["snr_db"] > 25 and q["forced"] is False
    assert q["reference"] == "fp32 torch model"
    assert q["calibration"] == "built-in text, last 64 tokens"  # capped by the 64-token context
    assert q["tokens_scored"] == 63
    assert q["ppl_ratio"] == pytest.approx(q["perplexity"] / q["reference_perplexity"], rel=1e-3)
    assert 0.8 < q["top1_agreement"] <= 1 and q["mean_kl"] >= 0
    assert q["min_snr_db"] == DEFAULT_MIN_SNR_DB


def test_min_snr_and_calibration_text(ckpt, tmp_path):
    text = tmp_path / "calib.txt"
    text.write_text("a static graph runs the same on every device. " * 3)
    with pytest.raises(ExportError, match=r"below the minimum of 60 dB"):
        _export(ckpt, tmp_path / "strict", quantize="int8", min_snr=60, calibration_text=text)
    q = _quality(_export(ckpt, tmp_path / "loose", quantize="int8", min_snr=0, calibration_text=text))
    assert q["calibration"].startswith("calib.txt, last ") and q["min_snr_db"] == 0
    with pytest.raises(ExportError, match=r"calibration text: text file not found"):
        _export(ckpt, tmp_path / "x", quantize="int8", calibration_text=tmp_path / "missing.txt")


def test_fp16_records_its_distance_to_fp32_and_fp32_none_records_nothing(ckpt, tmp_path):
    q = _quality(_export(ckpt, tmp_path / "fp16", dtype="fp16"))
    # A tiny random model has near-tied logits on some rows, where fp16 rounding may pick
    # the other token (1 of 63 rows with the Hugging Face-named model): agreement, not identity.
    assert q["snr_db"] > 40 and q["top1_agreement"] >= 0.95
    assert _quality(_export(ckpt, tmp_path / "fp32", dtype="fp32")) is None


def test_kmeans_is_close_to_the_exact_optimum():
    from coremltools.models.neural_network.quantization_utils import _get_kmeans_lookup_table_and_weight

    from staticllm.exporter.quantize import kmeans_1d

    rng = np.random.default_rng(0)
    for sample in (rng.standard_normal((16, 576)), rng.laplace(size=(8, 576))):
        w = (0.05 * sample).astype(np.float16)
        table, idx = kmeans_1d(w, 16)
        exact_table, exact_idx = _get_kmeans_lookup_table_and_weight(4, w, force_kmeans1d=True)
        err = float(((w.astype(np.float64).ravel() - table[idx]) ** 2).sum())
        best = float(((w.astype(np.float64).ravel() - exact_table.ravel()[exact_idx]) ** 2).sum())
        assert best <= err < 1.03 * best
    few = np.array([0.5, -1.0, 0.5, 2.0], dtype=np.float16)  # fewer distinct values than entries
    table, idx = kmeans_1d(few, 16)
    np.testing.assert_array_equal(table[idx], few.astype(np.float64))
