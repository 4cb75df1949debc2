"""Quantized exports: every mode keeps prefill/decode sharing, and the
interpreter's decompression ops reproduce exactly what coremltools'
own decompress_weights makes of the same package (the quantization error
itself is coremltools' business; decoding it is ours)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

import staticllm
from llama_fixtures import make_hf_checkpoint, tiny_config
from staticllm.inspect import weight_sharing


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_hf_checkpoint(tmp_path_factory.mktemp("q") / "hf", tiny_config(), with_tokenizer=False)


def _feed(method, rng):
    feed = {}
    for s in method.input_specs:
        if s.dtype == np.int32:
            feed[s.name] = rng.integers(0, 300, s.shape).astype(np.int32)
        else:
            feed[s.name] = (0.3 * rng.standard_normal(s.shape)).astype(s.dtype)
    feed["input_pos"] = np.arange(method.input_specs[1].shape[0], dtype=np.int32)
    return feed


@pytest.mark.parametrize("mode", ["int8", "int4", "palettize4"])
def test_decompression_matches_coremltools(ckpt, tmp_path, mode):
    import coremltools as ct

    logging.getLogger("coremltools").setLevel(logging.ERROR)
    bundle = staticllm.export(
        tmp_path / "b",
        hf_dir=ckpt,
        input_len=8,
        max_context_len=64,
        dtype="fp16",
        quantize=mode,
        progress=False,
    )
    program = (bundle / "program.json").read_text()
    op = "constexpr_lut_to_dense" if mode == "palettize4" else "constexpr_blockwise_shift_scale"
    assert op in program
    dense = ct.optimize.coreml.decompress_weights(
        ct.models.MLModel(str(bundle / "model.mlpackage"), skip_model_load=True)
    )
    dense.save(str(tmp_path / "dense.mlpackage"))
    reference = staticllm.import_mlpackage(tmp_path / "dense.mlpackage", tmp_path / "dense")
    assert "constexpr_" not in (reference / "program.json").read_text()
    quantized = staticllm.Runtime.load(bundle, backend="mil").method("forward")
    feed = _feed(quantized, np.random.default_rng(0))
    got = quantized.execute(feed)["logits"]
    want = staticllm.Runtime.load(reference, backend="mil").method("main").execute(feed)["logits"]
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=1e-3, rtol=0)
    shutil.rmtree(tmp_path / "dense.mlpackage")


@pytest.mark.parametrize("mode", ["int4", "palettize4"])
def test_sharing_survives_4bit_quantization(ckpt, tmp_path, mode):
    bundle = staticllm.export(
        tmp_path / "m",
        hf_dir=ckpt,
        input_len=8,
        max_context_len=64,
        multifunction=True,
        dtype="fp16",
        quantize=mode,
        progress=False,
    )
    share = weight_sharing(bundle)
    assert share["decode"]["blobs"] == share["decode"]["shared"] > 0
    m = staticllm.Runtime.load(bundle, backend="mil").method("decode")
    out = m.execute(_feed(m, np.random.default_rng(1)))
    assert np.isfinite(out["logits"].astype(np.float32)).all()
