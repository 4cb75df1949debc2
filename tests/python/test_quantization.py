"""Quantized exports: each mode writes the coremltools op Apple recommends
(checked in the written program), the interpreter's compressed weights
reproduce what coremltools' own decompress_weights makes of the package,
every mode keeps prefill/decode sharing one copy of the weights, and the
per-layer config file applies per pattern and layer range."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

import staticllm
from llama_fixtures import make_hf_checkpoint, tiny_config
from staticllm.bundle_layout import PACKAGE_WEIGHTS
from staticllm.inspect import weight_sharing

MODES = ["int8", "int4", "palettize4", "palettize6"]
# tiny_config: dim 64, 4 heads of 16, 2 kv heads, hidden 128, vocab 320, 2 layers, untied head
BODY = [
    "self_attn_q_proj",
    "self_attn_k_proj",
    "self_attn_v_proj",
    "self_attn_o_proj",
    "mlp_gate_proj",
    "mlp_down_proj",
    "mlp_up_proj",
]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_hf_checkpoint(tmp_path_factory.mktemp("q") / "hf", tiny_config(), with_tokenizer=False)


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    """(mode, multifunction) -> bundle, each exported once for the module."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    cache = {}

    def get(mode: str, multifunction: bool, **options):
        key = (mode, multifunction, tuple(sorted(options.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp("bundle") / "b"
            cache[key] = staticllm.export(
                out,
                hf_dir=ckpt,
                input_len=8,
                max_context_len=64,
                multifunction=multifunction,
                dtype="fp16",
                quantize=mode,
                force=True,  # the quality gate has its own tests
                progress=False,
                **options,
            )
        return cache[key]

    return get


_SUFFIXES = ("_to_fp16_palettized", "_to_fp16_quantized", "_to_fp16")


def weight_ops(bundle, function: str | None = None) -> dict[str, dict]:
    """Weight name (as in the torch model, underscored) -> how the program
    makes it: {"op": const | constexpr_..., "dtype": of the stored data, and
    "lut"/"scale" shapes}."""
    program = json.loads((bundle / "program.json").read_text())
    fn = program["functions"][function or next(iter(program["functions"]))]
    ops = next(iter(fn["blockSpecializations"].values()))["operations"]

    def arg_type(op, name):
        return op["inputs"][name]["arguments"][0]["value"]["type"]["tensorType"]

    def shape(t):
        return [int(d["constant"]["size"]) for d in t.get("dimensions", [])]

    out = {}
    for op in ops:
        name = op["outputs"][0]["name"]
        base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), None)
        if base is None or not base.endswith("_weight"):
            continue
        info = {"op": op["type"]}
        if op["type"] == "constexpr_lut_to_dense":
            info["dtype"] = arg_type(op, "indices")["dataType"]
            info["lut"] = shape(arg_type(op, "lut"))
        elif op["type"] == "constexpr_blockwise_shift_scale":
            info["dtype"] = arg_type(op, "data")["dataType"]
            info["scale"] = shape(arg_type(op, "scale"))
        elif op["type"] == "const":
            info["dtype"] = op["outputs"][0]["type"]["tensorType"]["dataType"]
        else:
            continue
        out[base[: -len("_weight")]] = info
    return out


def _feed(method, rng):
    feed = {}
    for s in method.input_specs:
        if s.dtype == np.int32:
            feed[s.name] = rng.integers(0, 300, s.shape).astype(np.int32)
        else:
            feed[s.name] = (0.3 * rng.standard_normal(s.shape)).astype(s.dtype)
    feed["input_pos"] = np.arange(method.input_specs[1].shape[0], dtype=np.int32)
    return feed


EXPECTED = {
    # mode -> (op, stored dtype, table/scale shape of layers_0_mlp_gate_proj [128, 64])
    "int8": ("constexpr_blockwise_shift_scale", "INT8", {"scale": [128, 1]}),
    "int4": ("constexpr_blockwise_shift_scale", "INT4", {"scale": [128, 2]}),  # blocks of 32 inputs
    "palettize4": ("constexpr_lut_to_dense", "UINT4", {"lut": [128, 1, 16, 1]}),  # a table per row
    "palettize6": ("constexpr_lut_to_dense", "UINT6", {"lut": [128, 1, 64, 1]}),
}


@pytest.mark.parametrize("mode", MODES)
def test_mode_writes_the_recommended_op_and_leaves_norms_alone(exported, mode):
    ops = weight_ops(exported(mode, False))
    op, dtype, shapes = EXPECTED[mode]
    for layer in (0, 1):
        for w in BODY:
            assert ops[f"model_layers_{layer}_{w}"]["op"] == op, (layer, w)
            assert ops[f"model_layers_{layer}_{w}"]["dtype"] == dtype, (layer, w)
    for key, value in shapes.items():
        assert ops["model_layers_0_mlp_gate_proj"][key] == value
    # a 4-bit body keeps the embeddings and LM head int8 unless they are chosen
    ends = EXPECTED["int8"][:2] if mode in ("int4", "palettize4") else (op, dtype)
    for end in ("model_embed_tokens", "lm_head"):
        assert (ops[end]["op"], ops[end]["dtype"]) == ends, end
    for norm in ("model_layers_0_input_layernorm", "model_layers_1_post_attention_layernorm", "model_norm"):
        assert ops[norm] == {"op": "const", "dtype": "FLOAT16"}
    program = (exported(mode, False) / "program.json").read_text()
    assert "rope_cos_0" in program and "rope_cos_0_to_fp16_palettized" not in program


@pytest.mark.parametrize("mode", MODES)
def test_decompression_matches_coremltools(exported, tmp_path, mode):
    """The interpreter's constexpr ops decode the package exactly as
    coremltools' decompress_weights does (quantization error itself is
    coremltools' business; decoding it is ours)."""
    import coremltools as ct

    bundle = exported(mode, False)
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
    # The compressed kernels expand (code - offset) * scale in fp32 registers;
    # the dense reference holds those weights rounded to fp16 (2^-11 relative),
    # which moves these logits (|logit| < 3 after two layers) by a few 1e-3.
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=1e-2, rtol=0)
    shutil.rmtree(tmp_path / "dense.mlpackage")


@pytest.mark.parametrize("mode", MODES)
def test_multifunction_pair_stores_one_functions_weights(exported, mode):
    pair, single = exported(mode, True), exported(mode, False)
    share = weight_sharing(pair)
    for fn in ("prefill", "decode"):
        assert share[fn]["blobs"] == share[fn]["shared"] > 0, share
    # the pair's weight.bin holds exactly what one function's does
    size = (pair / "model.mlpackage" / PACKAGE_WEIGHTS).stat().st_size
    assert size == (single / "model.mlpackage" / PACKAGE_WEIGHTS).stat().st_size
    m = staticllm.Runtime.load(pair, backend="mil").method("decode")
    out = m.execute(_feed(m, np.random.default_rng(1)))
    assert np.isfinite(out["logits"].astype(np.float32)).all()


def test_embeddings_and_head_are_chosen_apart_from_the_body(exported):
    bundle = exported("palettize4", False, quantize_embeddings="int8", quantize_head="none", group_size=8)
    ops = weight_ops(bundle)
    assert ops["model_embed_tokens"]["op"] == "constexpr_blockwise_shift_scale"
    assert ops["model_embed_tokens"]["dtype"] == "INT8"
    assert ops["lm_head"] == {"op": "const", "dtype": "FLOAT16"}
    assert ops["model_layers_1_self_attn_o_proj"]["lut"] == [8, 1, 16, 1]  # 64 rows in groups of 8
    recorded = json.loads((bundle / "metadata.json").read_text())["llm"]["export_options"]["quantization"]
    assert recorded == {
        "default": {"mode": "palettize4", "group_size": 8},
        "embeddings": {"mode": "int8"},
        "lm_head": {"mode": "none"},
    }


CONFIG = """\
# body int8; layer 1 palettized; every w2 int4 in blocks of 16; one weight by its program name kept
default: int8
embeddings: none
rules:
  - layers: "1"
    mode: palettize4
    group_size: 8
  - pattern: "model.layers.*.mlp.down_proj.weight"
    mode: int4
    block_size: 16
  - patterns: ["model_layers_0_self_attn_q_proj_weight_to_fp16"]
    mode: none
"""


def test_config_file_applies_per_pattern_and_layer_range(exported, tmp_path_factory):
    config = tmp_path_factory.mktemp("cfg") / "quant.yaml"
    config.write_text(CONFIG)
    bundle = exported("none", True, quantize_config=str(config))
    for fn in ("prefill", "decode"):
        ops = weight_ops(bundle, fn)
        assert ops["model_embed_tokens"] == {"op": "const", "dtype": "FLOAT16"}
        assert ops["lm_head"]["dtype"] == "INT8"  # lm_head follows the default
        assert ops["model_layers_0_self_attn_q_proj"] == {"op": "const", "dtype": "FLOAT16"}
        assert ops["model_layers_0_self_attn_k_proj"]["dtype"] == "INT8"
        assert ops["model_layers_0_mlp_gate_proj"]["dtype"] == "INT8"
        for w in BODY:
            if w != "mlp_down_proj":
                assert ops[f"model_layers_1_{w}"]["op"] == "constexpr_lut_to_dense", w
        assert ops["model_layers_1_self_attn_q_proj"]["lut"] == [8, 1, 16, 1]
        for layer in (0, 1):  # the later rule wins over the layer range
            w2 = ops[f"model_layers_{layer}_mlp_down_proj"]
            assert w2["dtype"] == "INT4" and w2["scale"] == [64, 8], w2
    share = weight_sharing(bundle)
    assert share["decode"]["blobs"] == share["decode"]["shared"]
    options = json.loads((bundle / "metadata.json").read_text())["llm"]["export_options"]
    assert options["quantization"]["config_file"] == str(config)
    assert options["quantization"]["rules"][0] == {"layers": [1], "mode": "palettize4", "group_size": 8}
