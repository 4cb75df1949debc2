"""The llm section (staticllm.llm_section): what export writes is what the
generation loop reads, errors name the key, and format 1 bundles (written
before the repeated facts were dropped) still generate the same tokens."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

import staticllm
from llama_fixtures import make_hf_checkpoint, tiny_config
from staticllm.bundle_io import write_metadata
from staticllm.bundle_layout import bundle_paths
from staticllm.errors import MetadataError
from staticllm.llm_section import FORMAT, CacheGroup, GraphIO, LLMSpec, MethodInfo, cache_groups, graph_io

SPEC = LLMSpec(
    architecture="llama",
    vocab_size=320,
    max_context_len=128,
    groups=(CacheGroup("attn_mask", 128, None, (0,)),),
    dtype="fp32",
    n_layers=1,
    n_kv_heads=2,
    head_dim=16,
    io=graph_io(1),
    methods={"prefill": MethodInfo("prefill", 16, "last"), "decode": MethodInfo("decode", 1, "last")},
    prefill_method="prefill",
    decode_method="decode",
    bos=0,
    eos=(1,),
    pad=None,
    tokenizer="tokenizer.json",
    tokenizer_config=None,
)


def method_specs(spec: LLMSpec, dtype: str = "fp32") -> list[dict]:
    """metadata.json's `methods` for SPEC: only what the parser reads (cache input dtypes)."""
    shape = list(spec.cache_shape(spec.groups[0]))
    cache = [{"name": n, "dtype": dtype, "shape": shape} for n in spec.io.cache_inputs]
    return [{"name": name, "inputs": cache} for name in spec.methods]


def doc(spec: LLMSpec = SPEC) -> dict:
    llm = spec.to_section(model={"dim": 32}, export_options={"quantize": "none", "source": "hf_dir"})
    return {"methods": method_specs(spec), "llm": llm}


def test_graph_io_names_and_order():
    io = graph_io(2)
    assert io.inputs(with_last_index=True) == [
        "tokens",
        "input_pos",
        "attn_mask",
        "last_index",
        "k_cache_0",
        "v_cache_0",
        "k_cache_1",
        "v_cache_1",
    ]
    assert io.inputs(with_last_index=False)[3] == "k_cache_0"
    assert io.outputs() == ["logits", "k_out_0", "v_out_0", "k_out_1", "v_out_1"]
    assert io.roles() == {r: r for r in ("tokens", "input_pos", "last_index", "logits")}


def test_cache_groups_keep_windows_as_rings():
    """Gemma 3 at context 4096: five of six layers slide over 512 positions and hold 512 slots."""
    windows = [None if (i + 1) % 6 == 0 else 512 for i in range(18)]
    full, sliding = cache_groups(windows, 4096)
    assert full == CacheGroup("attn_mask", 4096, None, (5, 11, 17))
    assert sliding.mask == "attn_mask_sliding" and sliding.length == sliding.window == 512
    assert len(sliding.layers) == 15
    io = graph_io(18, (full, sliding))
    assert io.inputs(False)[:5] == ["tokens", "input_pos", "attn_mask", "attn_mask_sliding", "k_cache_0"]
    assert cache_groups([64, 64], 128) == (CacheGroup("attn_mask_sliding", 64, 64, (0, 1)),)


def test_written_section_reads_back_equal():
    d = doc()
    assert d["llm"]["format"] == FORMAT
    for repeated in ("cache_len", "dtype", "prefill_input_len", "decode_input_len"):
        assert repeated not in d["llm"]
    assert LLMSpec.from_metadata(d) == SPEC
    spec = LLMSpec.from_metadata(d)
    assert (
        spec.multifunction
        and spec.context_limit == 128
        and spec.cache_shape(spec.groups[0]) == (1, 2, 128, 16)
    )


def test_sliding_groups_read_back_and_do_not_limit_the_context():
    groups = (CacheGroup("attn_mask", 128, None, (1,)), CacheGroup("attn_mask_sliding", 16, 16, (0,)))
    spec = dataclasses.replace(SPEC, n_layers=2, groups=groups, io=graph_io(2, groups))
    d = doc(spec)
    assert LLMSpec.from_metadata(d) == spec and spec.context_limit == 128
    assert spec.group_caches(groups[1]) == (("k_cache_0", "v_cache_0"), ("k_out_0", "v_out_0"))


ANE_IO = graph_io(1, SPEC.groups, rope=[([1.0, 0.1], 1.0), ([1.0, 0.5], 0.75)], head=("topk", 4, 3))
ANE_SPEC = dataclasses.replace(SPEC, io=ANE_IO, mask_value=-40000.0, dtype="fp16")


def test_neural_engine_keys_read_back_equal():
    """Format 4: a finite mask value, rotary inputs in place of input_pos, a top-k head."""
    d = doc(ANE_SPEC)
    d["methods"] = method_specs(ANE_SPEC, "fp16")
    llm = d["llm"]
    assert llm["mask_value"] == -40000.0 and "input_pos" not in llm["io"] and "logits" not in llm["io"]
    assert llm["io"]["rope"][1] == {
        "cos": "rope_cos_1",
        "sin": "rope_sin_1",
        "inv_freq": [1.0, 0.5],
        "scale": 0.75,
    }
    assert llm["head"] == {"mode": "topk", "outputs": ["topk_values", "topk_indices"], "k": 4}
    assert LLMSpec.from_metadata(d) == ANE_SPEC
    assert ANE_IO.inputs(False)[:5] == ["tokens", "rope_cos", "rope_sin", "rope_cos_1", "rope_sin_1"]
    assert ANE_IO.outputs()[:3] == ["topk_values", "topk_indices", "k_out_0"]
    chunks = graph_io(1, head=("logits", 0, 3))
    assert chunks.head_spec().outputs == ("logits_0", "logits_1", "logits_2") and chunks.logits is None
    assert (
        "mask_value" not in doc()["llm"] and "head" not in doc()["llm"]
    )  # the generic section is format 3's


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda llm: llm.update(mask_value=-1e9), r"llm.mask_value: expected a negative number an fp16 mask"),
        (lambda llm: llm["head"].update(mode="sample"), r"llm.head.mode: expected one of \['logits'"),
        (lambda llm: llm["head"].update(outputs=["v"]), r"llm.head.outputs: expected two output names"),
        (lambda llm: llm["head"].pop("k"), "missing key llm.head.k"),
        (
            lambda llm: llm["io"]["rope"][0].update(inv_freq=[]),
            r"llm.io.rope.0.inv_freq: expected a non-empty",
        ),
        (lambda llm: llm["io"].pop("rope"), "missing key llm.io.input_pos"),
        (lambda llm: llm.pop("head"), "missing key llm.io.logits"),
    ],
)
def test_neural_engine_key_errors_name_the_key(edit, message):
    d = doc(ANE_SPEC)
    edit(d["llm"])
    with pytest.raises(MetadataError, match=message):
        LLMSpec.from_metadata(d)


def test_dtype_comes_from_the_cache_inputs():
    d = doc()
    d["methods"] = method_specs(SPEC, "fp16")
    assert LLMSpec.from_metadata(d).dtype == "fp16"


def test_renamed_tensors_are_followed():
    io = GraphIO("ids", "pos", ("mask",), None, "out", ("kc", "vc"), ("ko", "vo"))
    spec = dataclasses.replace(
        SPEC,
        io=io,
        groups=(CacheGroup("mask", 128, None, (0,)),),
        methods={"decode": MethodInfo("decode", 1, "last")},
        prefill_method="decode",
    )
    assert LLMSpec.from_metadata(doc(spec)).io == io


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("llm"), "no 'llm' section"),
        (lambda d: d["llm"].pop("vocab_size"), "missing key llm.vocab_size"),
        (lambda d: d["llm"].pop("architecture"), "missing key llm.architecture"),
        (lambda d: d["llm"]["cache"].update(n_layers=0), "llm.cache.n_layers: expected a positive integer"),
        (
            lambda d: d["llm"]["cache"].update(inputs=["k_cache_0"]),
            "llm.cache.inputs: expected a list of 2 names",
        ),
        (lambda d: d["llm"]["cache"].pop("groups"), "missing key llm.cache.groups"),
        (
            lambda d: d["llm"]["cache"]["groups"][0].update(length=256),
            r"llm.cache.groups.0.length: expected a slot count in 1..128",
        ),
        (
            lambda d: d["llm"]["cache"]["groups"][0].update(window=64),
            r"llm.cache.groups.0.window: expected null or the group's length \(128\)",
        ),
        (
            lambda d: d["llm"]["cache"]["groups"][0].update(layers=[]),
            r"llm.cache.groups.0.layers: expected a non-empty list of layer indices below 1",
        ),
        (
            lambda d: d["llm"]["methods"]["decode"].update(logits="all"),
            "llm.methods.decode.logits: expected 'last' or 'full'",
        ),
        (lambda d: d["llm"].update(decode_method="step"), "llm.decode_method: expected one of the methods"),
        (
            lambda d: d["llm"]["special_tokens"].update(eos="x"),
            "llm.special_tokens.eos: expected a list of token ids",
        ),
        (lambda d: d["llm"].update(format=5), r"llm.format: expected one of \[1, 2, 3, 4\]"),
        (lambda d: d["methods"][1].update(inputs=[]), "method 'decode' has no input 'k_cache_0'"),
        (lambda d: d.pop("methods"), "methods has no method 'decode'"),
    ],
)
def test_errors_name_the_key(edit, message):
    d = doc()
    edit(d)
    with pytest.raises(MetadataError, match=message):
        LLMSpec.from_metadata(d)


def as_format2(llm: dict) -> dict:
    """The section as format 2 wrote it: one mask, io.attn_mask, no groups."""
    old = copy.deepcopy(llm)
    (group,) = old["cache"].pop("groups")
    old["io"]["attn_mask"] = group["mask"]
    old["format"] = 2
    return old


def test_format2_reads():
    d = doc()
    d["llm"] = as_format2(d["llm"])
    assert LLMSpec.from_metadata(d) == SPEC
    d["llm"]["io"].pop("attn_mask")
    with pytest.raises(MetadataError, match="missing key llm.io.attn_mask"):
        LLMSpec.from_metadata(d)


def as_format1(llm: dict, dtype: str) -> dict:
    """The section as format 1 wrote it: the repeated facts included."""
    old = as_format2(llm)
    methods = old["methods"]
    old.update(
        format=1,
        cache_len=old["max_context_len"],
        dtype=dtype,
        prefill_input_len=methods[old["prefill_method"]]["input_len"],
        decode_input_len=methods[old["decode_method"]]["input_len"],
    )
    return old


def test_format1_reads_and_checks_its_repeated_facts():
    d = doc()
    d["llm"] = as_format1(d["llm"], "fp32")
    assert LLMSpec.from_metadata(d) == SPEC
    d["llm"]["cache_len"] = 64  # format 1 allowed a shorter ring than the context
    assert LLMSpec.from_metadata(d).context_limit == 64
    for key, value, message in [
        ("dtype", "fp16", r"llm.dtype: expected 'fp32' \(the dtype of the cache inputs\), got 'fp16'"),
        ("prefill_input_len", 8, r"llm.prefill_input_len: expected 16 \(llm.methods.prefill.input_len\)"),
        ("decode_input_len", 2, r"llm.decode_input_len: expected 1 \(llm.methods.decode.input_len\)"),
    ]:
        bad = copy.deepcopy(d)
        bad["llm"][key] = value
        with pytest.raises(MetadataError, match=message):
            LLMSpec.from_metadata(bad)


def test_format1_bundle_generates_the_same_tokens(tmp_path):
    cfg = tiny_config()
    hf = make_hf_checkpoint(tmp_path / "hf", cfg)
    new = staticllm.export(
        tmp_path / "new",
        hf_dir=hf,
        input_len=8,
        max_context_len=64,
        multifunction=True,
        dtype="fp32",
        progress=False,
    )
    meta = json.loads(bundle_paths(new).metadata.read_text())
    assert [s["name"] for s in meta["methods"][0]["inputs"]] == graph_io(cfg.n_layers).inputs(True)
    assert [s["name"] for s in meta["methods"][1]["outputs"]] == graph_io(cfg.n_layers).outputs()
    old = tmp_path / "old"
    old.mkdir()
    for name in ("mlpackage", "program_json"):
        getattr(bundle_paths(old), name).symlink_to(getattr(bundle_paths(new), name))
    (old / "tokenizer.json").symlink_to(new / "tokenizer.json")
    meta["llm"] = as_format1(meta["llm"], "fp32")
    write_metadata(meta, bundle_paths(old).metadata)
    prompt = [5, 17, 42, 99, 3, 250, 7, 61, 8, 123, 44]
    want = staticllm.Generator(new, backend="mil").generate(prompt, max_new_tokens=12, ignore_eos=True)
    got = staticllm.Generator(old, backend="mil").generate(prompt, max_new_tokens=12, ignore_eos=True)
    assert got.token_ids == want.token_ids and len(got.token_ids) == 12
