"""Generate the fuzzer's base bundles and seed corpus (tests/fuzz/bundles, tests/fuzz/corpus).

Two kinds of small valid bundles:
- llama_*: a tiny random Llama checkpoint (1 layer, dim 16, vocab 32, context 8)
  exported the way users export, single-method and multifunction: every op
  and blob a real export uses.
- ops_*: about 10 ops of one family each (shape, indexing, math), 12 KB of
  JSON: the cheapest to run, and the mutator's op-type swaps hand their
  arguments to every op builder.
- mini_*: a 70-op attention block written with the coremltools MIL builder,
  single and multifunction: a KV state (read_state, coreml_update_state),
  int4, int8 and palettized weights (constexpr ops, sub-byte weight.bin
  blobs), scaled_dot_product_attention. Five times smaller than an export, so
  the fuzzer runs them five times as often.
Only the three files the interpreter reads are kept; JSON is written compactly
(the same documents).

    PYTHONPATH=python python3 tests/fuzz/make_seeds.py
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))

FILES = ("metadata.json", "program.json", "model.mlpackage/Data/com.apple.CoreML/weights/weight.bin")


def export_llama(tmp: Path) -> dict[str, Path]:
    import llama_fixtures
    import staticllm

    cfg = llama_fixtures.tiny_config(
        dim=16, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=32, hidden_dim=32
    )
    ckpt = llama_fixtures.make_hf_checkpoint(tmp / "ckpt", cfg)
    out = {}
    for name, multifunction in (("llama_forward", False), ("llama_prefill_decode", True)):
        out[name] = staticllm.export(
            tmp / name,
            hf_dir=ckpt,
            input_len=4,
            max_context_len=8,
            multifunction=multifunction,
            progress=False,
        )
    return out


def mini_block(seq: int) -> Any:
    """tokens [1, seq] -> probs [1, seq, 16]; state kv [1, 2, 8, 4] keeps the last 8 keys."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    types = ct.converters.mil.mil.types
    rng = np.random.default_rng(0)  # the same weights in every function: stored once

    def f16(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.3).astype(np.float16)

    emb, lut, bias, out_w = f16(16, 8), f16(1, 1, 16, 1), f16(8), f16(16, 8)
    q4 = rng.integers(-8, 8, (8, 8)).astype(types.np_int4_dtype)
    idx4 = rng.integers(0, 16, (8, 8)).astype(types.np_uint4_dtype)
    q8 = rng.integers(-100, 100, (8, 8)).astype(np.int8)

    @mb.program(
        input_specs=[
            mb.TensorSpec(shape=(1, seq), dtype=types.int32),
            mb.StateTensorSpec(shape=(1, 2, 8, 4), dtype=types.fp16),
        ],
        opset_version=ct.target.iOS18,
    )
    def prog(tokens: Any, kv: Any) -> Any:
        h = mb.gather(x=emb, indices=tokens, axis=0)
        ms = mb.reduce_mean(x=mb.mul(x=h, y=h), axes=[-1], keep_dims=True)
        hn = mb.mul(x=h, y=mb.rsqrt(x=mb.add(x=ms, y=np.float16(1e-5))))
        w_q = mb.constexpr_blockwise_shift_scale(data=q4, scale=np.full((8, 2), 0.1, np.float16))
        w_k = mb.constexpr_lut_to_dense(indices=idx4, lut=lut)
        w_v = mb.constexpr_blockwise_shift_scale(
            data=q8, scale=np.full((8, 1), 0.01, np.float16), offset=np.ones((8, 1), np.int8)
        )

        def heads(t: Any) -> Any:
            return mb.transpose(x=mb.reshape(x=t, shape=[1, seq, 2, 4]), perm=[0, 2, 1, 3])

        q, k = heads(mb.linear(x=hn, weight=w_q)), heads(mb.linear(x=hn, weight=w_k))
        v = heads(mb.linear(x=hn, weight=w_v, bias=bias))
        cache = mb.read_state(input=kv)
        keys = mb.concat(
            values=[mb.slice_by_index(x=cache, begin=[0, 0, seq, 0], end=[1, 2, 8, 4]), k], axis=2
        )
        mb.coreml_update_state(state=kv, value=keys)
        mask = mb.band_part(x=np.zeros((seq, 8), np.float16), lower=-1, upper=8 - seq)
        values = mb.concat(
            values=[mb.slice_by_index(x=keys, begin=[0, 0, seq, 0], end=[1, 2, 8, 4]), v], axis=2
        )
        att = mb.scaled_dot_product_attention(query=q, key=keys, value=values, attn_mask=mask)
        o = mb.reshape(x=mb.transpose(x=att, perm=[0, 2, 1, 3]), shape=[1, seq, 8])
        logits = mb.linear(x=mb.silu(x=o), weight=out_w)
        return mb.softmax(x=mb.cast(x=logits, dtype="fp32"), axis=-1, name="probs")

    return prog


def build_mini(tmp: Path) -> dict[str, Path]:
    import coremltools as ct

    import staticllm

    packages = {}
    for name, seq in (("prefill", 4), ("decode", 1)):
        model = ct.convert(
            mini_block(seq),
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS18,
            compute_precision=ct.precision.FLOAT16,
            skip_model_load=True,
        )
        packages[name] = tmp / f"mini_{name}.mlpackage"
        model.save(str(packages[name]))
    desc = ct.utils.MultiFunctionDescriptor()
    for name, path in packages.items():
        desc.add_function(str(path), src_function_name="main", target_function_name=name)
    desc.default_function_name = "decode"
    ct.utils.save_multifunction(desc, str(tmp / "mini_pair.mlpackage"))
    return {
        "mini_block": staticllm.import_mlpackage(packages["prefill"], tmp / "mini_block"),
        "mini_prefill_decode": staticllm.import_mlpackage(
            tmp / "mini_pair.mlpackage", tmp / "mini_prefill_decode"
        ),
    }


def op_programs() -> dict[str, Any]:
    """Small programs of one op family each (about 10 ops, 12 KB of JSON): the
    fuzzer runs them ten times as fast as an export, and its op-type swaps
    give every builder their arguments."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    types = ct.converters.mil.mil.types
    ios18 = ct.target.iOS18

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3, 4))], opset_version=ios18)
    def shape_ops(x: Any) -> Any:
        t = mb.transpose(x=mb.reshape(x=x, shape=[4, -1]), perm=[1, 0])
        s = mb.squeeze(x=mb.expand_dims(x=mb.tile(x=t, reps=[1, 2]), axes=[0]), axes=[0])
        sl = mb.slice_by_index(x=s, begin=[0, 1], end=[6, 8], stride=[1, 3])
        a, b = mb.split(x=s, num_splits=2, axis=1)
        return mb.identity(x=mb.concat(values=[a, b, sl], axis=1), name="c")

    @mb.program(
        input_specs=[mb.TensorSpec(shape=(4, 6)), mb.TensorSpec(shape=(3,), dtype=types.int32)],
        opset_version=ios18,
    )
    def index_ops(x: Any, idx: Any) -> Any:
        g = mb.gather(x=x, indices=idx, axis=0)
        ga = mb.gather_along_axis(x=x, indices=np.array([[0, 1, 2, 3, 0, 1]] * 2, np.int32), axis=0)
        ss = mb.slice_by_size(x=x, begin=[1, 2], size=[2, -1])
        bp = mb.band_part(x=x, lower=1, upper=2)
        as_int = mb.cast(x=mb.cast(x=x, dtype="int32"), dtype="fp32")
        sel = mb.select(cond=mb.greater(x=bp, y=0.0), a=bp, b=as_int)
        return (
            mb.mul(x=g, y=np.float32(2), name="g"),
            mb.identity(x=ga, name="ga"),
            mb.identity(x=ss, name="ss"),
            mb.identity(x=sel, name="sel"),
        )

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 2, 3, 4), dtype=types.fp16)], opset_version=ios18)
    def math_ops(x: Any) -> Any:
        rs = mb.reduce_sum(x=mb.softmax(x=x, axis=-1), axes=[1], keep_dims=True)
        mm = mb.matmul(x=x, y=x, transpose_y=True)
        lin = mb.linear(x=x, weight=np.ones((5, 4), np.float16), bias=np.zeros(5, np.float16))
        att = mb.scaled_dot_product_attention(query=x, key=x, value=x)
        return (
            mb.identity(x=rs, name="rs"),
            mb.reduce_max(x=x, axes=[-1], keep_dims=False, name="rm"),
            mb.reduce_argmax(x=x, axis=2, name="am"),
            mb.clip(x=mb.gelu(x=mb.exp(x=mm)), alpha=np.float16(-1), beta=np.float16(1), name="u"),
            mb.identity(x=lin, name="lin"),
            mb.identity(x=att, name="att"),
        )

    return {"ops_shape": shape_ops, "ops_index": index_ops, "ops_math": math_ops}


def build_op_bundles(tmp: Path) -> dict[str, Path]:
    import coremltools as ct

    import staticllm

    out = {}
    for name, prog in op_programs().items():
        model = ct.convert(
            prog,
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS18,
            compute_precision=ct.precision.FLOAT32,
            skip_model_load=True,
        )
        model.save(str(tmp / f"{name}.mlpackage"))
        out[name] = staticllm.import_mlpackage(tmp / f"{name}.mlpackage", tmp / name)
    return out


def keep_interpreter_files(bundle: Path, dest: Path) -> None:
    for rel in FILES:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".json"):
            doc = json.loads((bundle / rel).read_text())
            target.write_text(json.dumps(doc, separators=(",", ":"), sort_keys=True))
        elif (bundle / rel).exists():
            shutil.copyfile(bundle / rel, target)
        else:  # no constant large enough for a blob: a weight.bin holding none
            target.write_bytes(struct.pack("<II", 0, 2).ljust(64, b"\0"))


def write_corpus(bundles: Path, corpus: Path) -> None:
    """One seed per (bundle, file): [bundle index][file index][the unchanged file],
    bundles indexed in name order as the fuzz target does."""
    shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir()
    for b, name in enumerate(sorted(p.name for p in bundles.iterdir())):
        for f, rel in enumerate(FILES):
            data = bytes([b, f]) + (bundles / name / rel).read_bytes()
            (corpus / f"{name}-{Path(rel).stem}").write_bytes(data)


def main() -> None:
    from staticllm.exporter.convert import quiet_coremltools

    bundles = HERE / "bundles"
    shutil.rmtree(bundles, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp, quiet_coremltools(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        made = {**export_llama(Path(tmp)), **build_mini(Path(tmp)), **build_op_bundles(Path(tmp))}
        for name, path in made.items():
            keep_interpreter_files(path, bundles / name)
    write_corpus(bundles, HERE / "corpus")
    total = sum(p.stat().st_size for d in ("bundles", "corpus") for p in (HERE / d).rglob("*") if p.is_file())
    print(f"wrote {len(made)} bundles and {len(made) * len(FILES)} seeds, {total / 1024:.0f} KiB in all")


if __name__ == "__main__":
    main()
