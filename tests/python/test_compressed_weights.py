"""Compressed weights executed as stored: every decompression op the exporter
writes (blockwise shift/scale with int8/uint8/int4/uint4 codes, per channel
and per block, with and without offsets; lookup tables of 1/2/3/4/6/8 bits
per tensor and per grouped channel; affine dequantize) feeding linear,
matmul and gather, run at every SIMD level this CPU has, against
coremltools' own decompress_weights of the same package. Shapes are odd on
purpose: 13 output rows (not a multiple of any register tile), 40 inputs
(2.5 AVX2 vectors, blocks of 20 straddling vectors), 37 inputs (3-bit rows
that do not start on a byte), 1 and 5 activation rows (the fused and the
tiled kernels)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import staticllm
from mil_fixtures import bundle_from_program, two_function_package

RUN_SCRIPT = textwrap.dedent(
    """
    import sys, json
    import numpy as np
    import staticllm
    from staticllm import _core
    method = staticllm.Runtime.load(sys.argv[1], backend="mil").method(sys.argv[2])
    feed = dict(np.load(sys.argv[3]))
    out = method.execute(feed)
    np.savez(sys.argv[4], **out)
    print(json.dumps({"simd": _core.simd_level()}))
    """
)


def simd_levels() -> list[str]:
    from staticllm import _core

    have = _core.simd_level()
    order = ["portable", "avx2", "avx512"]
    return order[: order.index(have) + 1] if have in order else ["portable"]


def run_at_level(
    bundle: Path, method: str, feed: dict[str, np.ndarray], level: str, tmp: Path
) -> tuple[dict[str, np.ndarray], str]:
    """Runs `method` in a child process with STATICLLM_SIMD=level (the level
    is chosen once per process); returns its outputs and its stderr, where
    STATICLLM_PROFILE=1 reports every compressed weight expanded to dense."""
    np.savez(tmp / "feed.npz", **feed)
    env = dict(os.environ, STATICLLM_SIMD=level, STATICLLM_PROFILE="1")
    res = subprocess.run(
        [sys.executable, "-c", RUN_SCRIPT, str(bundle), method, str(tmp / "feed.npz"), str(tmp / "out.npz")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["simd"] == level
    return dict(np.load(tmp / "out.npz")), res.stderr


def op_types(bundle: Path) -> set[str]:
    doc = json.loads((bundle / "program.json").read_text())
    return {
        op["type"]
        for fn in doc["functions"].values()
        for block in fn["blockSpecializations"].values()
        for op in block["operations"]
    }


def _codes(rng: np.random.Generator, shape: tuple[int, ...], bits: int, signed: bool, np_dtype: Any) -> Any:
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    return rng.integers(lo, hi, shape).astype(np_dtype)


def build_weights(mb: Any, types: Any, rng: np.random.Generator) -> dict[str, tuple[str, Any]]:
    """name -> (consumer, weight var); consumers: 'nt' ([N, K], linear or
    matmul transpose_y), 'nn' ([K, N] matmul), 'gather' (rows), 'k37'."""

    def scale(shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
        return (rng.random(shape) * 0.1 + 0.02).astype(dtype)

    def bss(data: Any, s: Any, offset: Any = None) -> Any:
        if offset is None:
            return mb.constexpr_blockwise_shift_scale(data=data, scale=s)
        return mb.constexpr_blockwise_shift_scale(data=data, scale=s, offset=offset)

    i4, u4 = types.np_int4_dtype, types.np_uint4_dtype
    w: dict[str, tuple[str, Any]] = {
        "int8_channel": ("nt", bss(_codes(rng, (13, 40), 8, True, np.int8), scale((13, 1)))),
        "uint8_block20_offset": (
            "nt",
            bss(
                _codes(rng, (13, 40), 8, False, np.uint8),
                scale((13, 2)),
                _codes(rng, (13, 2), 8, False, np.uint8),
            ),
        ),
        "int4_block8_offset": (
            "nt",
            bss(_codes(rng, (13, 40), 4, True, i4), scale((13, 5)), _codes(rng, (13, 5), 4, True, i4)),
        ),
        "uint4_block20_float_offset": (
            "nt",
            bss(
                _codes(rng, (13, 40), 4, False, u4),
                scale((13, 2)),
                (rng.random((13, 2)) * 15).astype(np.float32),
            ),
        ),
        "int8_row_blocks": ("nt", bss(_codes(rng, (12, 40), 8, True, np.int8), scale((3, 5)))),
        "int4_nn": ("nn", bss(_codes(rng, (40, 13), 4, True, i4), scale((40, 1)))),
        "int4_embeddings": ("gather", bss(_codes(rng, (37, 40), 4, True, i4), scale((37, 5)))),
        "int4_k37": ("k37", bss(_codes(rng, (13, 37), 4, True, i4), scale((13, 1)))),
        "affine_int8_axis0": (
            "nt",
            mb.constexpr_affine_dequantize(
                quantized_data=_codes(rng, (13, 40), 8, True, np.int8),
                zero_point=_codes(rng, (13,), 8, True, np.int8),
                scale=scale((13,)),
                axis=0,
            ),
        ),
        "affine_uint8_axis1": (  # a scale per input column
            "nt",
            mb.constexpr_affine_dequantize(
                quantized_data=_codes(rng, (13, 40), 8, False, np.uint8),
                zero_point=_codes(rng, (40,), 8, False, np.uint8),
                scale=scale((40,)),
                axis=1,
            ),
        ),
    }
    lut_dtypes = {
        1: types.np_uint1_dtype,
        2: types.np_uint2_dtype,
        3: types.np_uint3_dtype,
        4: types.np_uint4_dtype,
        6: types.np_uint6_dtype,
        8: np.uint8,
    }
    for bits, dt in lut_dtypes.items():
        entries = 1 << bits
        for groups, rows in ((1, 13), (3, 24)):  # per tensor; channel groups of 8
            lut = rng.standard_normal((groups, 1, entries, 1)).astype(np.float32)
            idx = _codes(rng, (rows, 40), bits, False, dt)
            name = f"lut{bits}_{'tensor' if groups == 1 else 'group8'}"
            w[name] = ("nt", mb.constexpr_lut_to_dense(indices=idx, lut=lut))
    lut = rng.standard_normal((37, 1, 8, 1)).astype(np.float32)  # a table per embedding row
    w["lut3_embeddings"] = (
        "gather",
        mb.constexpr_lut_to_dense(indices=_codes(rng, (37, 40), 3, False, lut_dtypes[3]), lut=lut),
    )
    lut = rng.standard_normal((1, 1, 8, 1)).astype(np.float32)
    w["lut3_k37"] = (
        "k37",
        mb.constexpr_lut_to_dense(indices=_codes(rng, (13, 37), 3, False, lut_dtypes[3]), lut=lut),
    )
    return w


def compressed_program() -> Any:
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    rng = np.random.default_rng(5)
    specs = [
        mb.TensorSpec(shape=(1, 40)),
        mb.TensorSpec(shape=(5, 40)),
        mb.TensorSpec(shape=(2, 37)),
        mb.TensorSpec(shape=(6,), dtype=types.int32),
    ]

    @mb.program(input_specs=specs, opset_version=ct.target.iOS18)
    def prog(x1: Any, x5: Any, x37: Any, ids: Any) -> Any:
        outs = []
        for name, (use, w) in build_weights(mb, types, rng).items():
            if use == "nt":
                outs.append(mb.linear(x=x1, weight=w, name=f"{name}_m1"))
                outs.append(mb.matmul(x=x5, y=w, transpose_y=True, name=f"{name}_m5"))
            elif use == "nn":
                outs.append(mb.matmul(x=x5, y=w, name=f"{name}_m5"))
            elif use == "k37":
                outs.append(mb.linear(x=x37, weight=w, name=f"{name}_m2"))
            else:
                outs.append(mb.gather(x=w, indices=ids, axis=0, name=f"{name}_rows"))
        # Another consumer than the kernels: the weight made dense (once).
        w = mb.constexpr_blockwise_shift_scale(
            data=_codes(rng, (13, 40), 4, True, types.np_int4_dtype),
            scale=(rng.random((13, 5)) * 0.1).astype(np.float32),
        )
        outs.append(mb.add(x=w, y=np.float32(1.0), name="dense_consumer"))
        outs.append(mb.linear(x=x1, weight=w, name="dense_consumer_linear"))
        return tuple(outs)

    return prog


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: Any) -> tuple[Path, Path]:
    import coremltools as ct

    tmp = tmp_path_factory.mktemp("compressed")
    bundle = bundle_from_program(compressed_program(), tmp, "compressed")
    dense = ct.optimize.coreml.decompress_weights(
        ct.models.MLModel(str(tmp / "compressed.mlpackage"), skip_model_load=True)
    )
    dense.save(str(tmp / "dense.mlpackage"))
    reference = staticllm.import_mlpackage(tmp / "dense.mlpackage", tmp / "dense")
    assert not any(t.startswith("constexpr_") for t in op_types(reference))
    return bundle, reference


def _feed() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(9)
    return {
        "x1": rng.standard_normal((1, 40)).astype(np.float32),
        "x5": rng.standard_normal((5, 40)).astype(np.float32),
        "x37": rng.standard_normal((2, 37)).astype(np.float32),
        "ids": np.array([0, 36, 5, 17, 36, 2], dtype=np.int32),
    }


@pytest.mark.parametrize("level", simd_levels())
def test_every_kernel_path_matches_decompress_weights(bundles, tmp_path, level):
    bundle, reference = bundles
    assert {
        "constexpr_blockwise_shift_scale",
        "constexpr_lut_to_dense",
        "constexpr_affine_dequantize",
    } <= op_types(bundle)
    feed = _feed()
    want = staticllm.Runtime.load(reference, backend="mil").method("main").execute(feed)
    got, log = run_at_level(bundle, "main", feed, level, tmp_path)
    assert sorted(got) == sorted(want)
    # Only the weight an add reads is expanded; every kernel read the rest as stored.
    expanded = [line for line in log.splitlines() if "expanded for" in line]
    assert len(expanded) == 1 and "op 'dense_consumer' (type 'add')" in expanded[0], log
    for name in want:
        # fp32 weights: the kernels compute (code - offset) * scale as
        # code * scale - offset * scale and sum in another order: a few fp32
        # roundings of the largest terms (outputs reach 1e2).
        atol = 2e-6 * (1 + float(np.abs(want[name]).max()))
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=atol, err_msg=f"{name} at {level}")


@pytest.mark.parametrize("kind", ["int4_block8", "lut4_group8"])
def test_a_weight_shared_by_two_functions_gives_identical_results(tmp_path, kind):
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    rng = np.random.default_rng(3)
    if kind == "int4_block8":
        data = _codes(rng, (16, 40), 4, True, types.np_int4_dtype)
        scale = (rng.random((16, 5)) * 0.1).astype(np.float32)

        def make() -> Any:
            return mb.constexpr_blockwise_shift_scale(data=data, scale=scale)
    else:
        idx = _codes(rng, (16, 40), 4, False, types.np_uint4_dtype)
        lut = rng.standard_normal((2, 1, 16, 1)).astype(np.float32)

        def make() -> Any:
            return mb.constexpr_lut_to_dense(indices=idx, lut=lut)

    pair = staticllm.import_mlpackage(
        two_function_package(tmp_path, np.zeros((16, 40), np.float32), make_weight=make), tmp_path / "pair"
    )
    single = staticllm.import_mlpackage(tmp_path / "double_only.mlpackage", tmp_path / "single")
    weights = "model.mlpackage/Data/com.apple.CoreML/weights/weight.bin"
    assert (pair / weights).stat().st_size == (single / weights).stat().st_size  # stored once
    x = {"x": rng.standard_normal((1, 40)).astype(np.float32)}
    shared = staticllm.Runtime.load(pair, backend="mil")
    alone = staticllm.Runtime.load(single, backend="mil").method("main").execute(x)["out"]
    assert np.array_equal(shared.method("double").execute(x)["out"], alone)
    np.testing.assert_array_equal(shared.method("negate").execute(x)["out"], -0.5 * alone)


RSS_SCRIPT = textwrap.dedent(
    """
    import sys, json
    import numpy as np
    import staticllm

    def rss_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    before = rss_kib()
    method = staticllm.Runtime.load(sys.argv[1], backend="mil").method("main")
    x = np.ones((1, int(sys.argv[2])), dtype=np.float16)
    for _ in range(2):
        method.execute({"x": x})
    print(json.dumps({"grown_kib": rss_kib() - before}))
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_compressed_bundle_memory_stays_below_its_dense_size(tmp_path):
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    rows, cols = 8192, 2048  # fp16: 32 MiB dense; int4 in blocks of 32: 8 MiB + 1 MiB of scales
    rng = np.random.default_rng(4)
    data = _codes(rng, (rows, cols), 4, True, types.np_int4_dtype)
    scale = (rng.random((rows, cols // 32)) * 0.01).astype(np.float16)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, cols), dtype=types.fp16)], opset_version=ct.target.iOS18)
    def prog(x: Any) -> Any:
        w = mb.constexpr_blockwise_shift_scale(data=data, scale=scale)
        return mb.linear(x=x, weight=w, name="y")

    bundle = bundle_from_program(prog, tmp_path, "big", fp16=True)
    res = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(bundle), str(cols)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    grown = json.loads(res.stdout.strip().splitlines()[-1])["grown_kib"] * 1024
    dense = rows * cols * 2
    # Loading and running maps the 9 MiB it reads (plus a few MiB of runtime);
    # expanding would add 32 MiB.
    assert grown < dense / 2, f"RSS grew {grown / 2**20:.1f} MiB; the dense weight is {dense / 2**20:.0f} MiB"
