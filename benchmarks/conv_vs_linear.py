"""A 1x1 conv against linear on the same [N, K] weight, in one run.

    python benchmarks/conv_vs_linear.py
    python benchmarks/conv_vs_linear.py --shape 1536x576 --shape 2048x2048 --weights fp16 int4

The Neural Engine export (issue 12) writes its projections as a 1x1 `conv`
on (1, K, 1, S) activations instead of `linear` on (S, K): the interpreter
runs that conv as linear's product (im2col of a 1x1 conv is a transpose) and
should be as fast. For each weight shape [N, K], weight storage (fp16;
int4 in blocks of 32 with fp16 scales, read as stored; fp32 with --weights) and S in {1, 32, 128},
two one-op bundles with the same weight are timed call by call, interleaved
(linear, conv, linear, ...), fp16 activations in and out (fp32 with fp32 weights); the table prints
the median milliseconds per call and conv / linear (1.00 = same speed, lower
is better for conv). Both include the same Python call overhead.

Then general convs (`--general`, fp32, random weights) against
torch.nn.functional.conv* in the same run on as many threads: a 3x3 conv,
a strided 3x3 stem, a depthwise 3x3, a grouped 1D conv and a 4x4 stride-2
conv_transpose; ratio = interpreter / torch (lower is better).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLOCK = time.perf_counter  # --cpu-time: time.thread_time
sys.path.insert(0, str(ROOT / "tests" / "python"))  # mil_fixtures: program -> bundle


def weight_var(mb: Any, types: Any, weight: np.ndarray, storage: str, rank4: bool) -> Any:
    """The weight as a const (fp16, fp32) or a blockwise int4 decompression, [N, K] or [N, K, 1, 1]."""
    shape = (*weight.shape, 1, 1) if rank4 else weight.shape
    if storage in ("fp16", "fp32"):
        return weight.astype(np.float16 if storage == "fp16" else np.float32).reshape(shape)
    n, k = weight.shape
    scale = (np.abs(weight).reshape(n, k // 32, 32).max(axis=2) / 7 + 1e-8).astype(np.float16)
    codes = np.clip(np.round(weight / np.repeat(scale, 32, axis=1)), -8, 7).astype(types.np_int4_dtype)
    scale = scale.reshape((n, k // 32, 1, 1) if rank4 else (n, k // 32))
    return mb.constexpr_blockwise_shift_scale(data=codes.reshape(shape), scale=scale)


def make_bundles(tmp: Path, weight: np.ndarray, storage: str, s: int) -> tuple[Path, Path]:
    """(linear bundle, conv bundle): y = x W^T for x (s, K), and its 1x1 conv on (1, K, 1, s)."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    from mil_fixtures import bundle_from_program

    n, k = weight.shape
    fp16 = storage != "fp32"  # fp32 weights run in an fp32 program (activations too)
    dt = types.fp16 if fp16 else types.fp32

    @mb.program(input_specs=[mb.TensorSpec(shape=(s, k), dtype=dt)], opset_version=ct.target.iOS18)
    def linear(x: Any) -> Any:
        return mb.linear(x=x, weight=weight_var(mb, types, weight, storage, False), name="y")

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, k, 1, s), dtype=dt)], opset_version=ct.target.iOS18)
    def conv(x: Any) -> Any:
        return mb.conv(x=x, weight=weight_var(mb, types, weight, storage, True), name="y")

    tag = f"{n}x{k}_{storage}_s{s}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (
            bundle_from_program(linear, tmp, f"linear_{tag}", fp16=fp16),
            bundle_from_program(conv, tmp, f"conv_{tag}", fp16=fp16),
        )


def time_pair(lin: Any, conv: Any, s: int, k: int, calls: int, dtype: Any) -> tuple[float, float, float]:
    """Median ms of linear and conv, interleaved, and the largest output difference."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((s, k)).astype(dtype)
    xl, xc = {"x": x}, {"x": np.ascontiguousarray(x.T).reshape(1, k, 1, s)}
    yl, yc = lin.execute(xl)["y"], conv.execute(xc)["y"]  # warm up, and the same product
    diff = float(np.abs(yl.astype(np.float32) - yc.reshape(-1, s).T.astype(np.float32)).max())
    tl, tc = [], []
    for _ in range(calls):
        t = CLOCK()
        lin.execute(xl)
        tl.append(CLOCK() - t)
        t = CLOCK()
        conv.execute(xc)
        tc.append(CLOCK() - t)
    return statistics.median(tl) * 1e3, statistics.median(tc) * 1e3, diff


# (name, op, x shape, weight shape, MIL arguments, torch arguments)
GENERAL = [
    ("3x3 64->64 on 56x56", "conv", (1, 64, 56, 56), (64, 64, 3, 3), {"pad_type": "same"}, {"padding": 1}),
    ("3x3 s2 3->32 on 224x224", "conv", (1, 3, 224, 224), (32, 3, 3, 3),
     {"pad_type": "custom", "pad": [1, 1, 1, 1], "strides": [2, 2]}, {"padding": 1, "stride": 2}),
    ("depthwise 3x3 on 96x112x112", "conv", (1, 96, 112, 112), (96, 1, 3, 3),
     {"pad_type": "same", "groups": 96}, {"padding": 1, "groups": 96}),
    ("1D k5 groups 4, 256 ch x 1000", "conv", (1, 256, 1000), (256, 64, 5),
     {"pad_type": "same", "groups": 4}, {"padding": 2, "groups": 4}),
    ("transpose 4x4 s2 64->32 on 32x32", "conv_transpose", (1, 64, 32, 32), (64, 32, 4, 4),
     {"pad_type": "custom", "pad": [1, 1, 1, 1], "strides": [2, 2]}, {"padding": 1, "stride": 2}),
]  # fmt: skip


def bench_general(tmp: Path, calls: int) -> None:
    import coremltools as ct
    import torch
    import torch.nn.functional as F
    from coremltools.converters.mil import Builder as mb

    import staticllm
    from mil_fixtures import bundle_from_program

    torch.set_num_threads(staticllm._core.bench.threads())
    print(f"{'conv (fp32)':>34} {'torch ms':>9} {'ours ms':>8} {'ours/torch':>10}")
    for i, (name, op, xs, ws, mil_args, torch_args) in enumerate(GENERAL):
        rng = np.random.default_rng(i)
        w = (rng.standard_normal(ws) * 0.1).astype(np.float32)
        x = rng.standard_normal(xs).astype(np.float32)

        @mb.program(input_specs=[mb.TensorSpec(shape=xs)], opset_version=ct.target.iOS18)
        def prog(x: Any) -> Any:
            return getattr(mb, op)(x=x, weight=w, name="y", **mil_args)  # noqa: B023

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            method = staticllm.Runtime.load(
                bundle_from_program(prog, tmp, f"general{i}"), backend="mil"
            ).method()
        fn = getattr(F, f"{op}{len(xs) - 2}d")
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        ours, ref = method.execute({"x": x})["y"], fn(xt, wt, **torch_args).numpy()
        if not np.allclose(ours, ref, rtol=1e-3, atol=1e-3):
            raise SystemExit(f"{name}: the interpreter and torch differ by {np.abs(ours - ref).max()}")
        tt, to = [], []
        with torch.inference_mode():
            for _ in range(calls):
                t = CLOCK()
                fn(xt, wt, **torch_args)
                tt.append(CLOCK() - t)
                t = CLOCK()
                method.execute({"x": x})
                to.append(CLOCK() - t)
        mt, mo = statistics.median(tt) * 1e3, statistics.median(to) * 1e3
        print(f"{name:>34} {mt:>9.3f} {mo:>8.3f} {mo / mt:>10.2f}")


def main() -> int:
    from staticllm import _core

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--shape", action="append", help="NxK of the weight (repeatable; default 1536x576, 2048x2048)"
    )
    ap.add_argument("--weights", nargs="+", default=["fp16", "int4"], choices=["fp16", "int4", "fp32"])
    ap.add_argument("--seq", nargs="+", type=int, default=[1, 32, 128])
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--general", action="store_true", help="also time general convs against torch")
    ap.add_argument("--no-linear", action="store_true", help="skip the 1x1 conv / linear table")
    ap.add_argument(
        "--cpu-time",
        action="store_true",
        help="time the calling thread's CPU time instead of wall time (needs STATICLLM_NUM_THREADS=1; "
        "steadier on a busy machine)",
    )
    args = ap.parse_args()
    if args.cpu_time:
        if _core.bench.threads() != 1:
            raise SystemExit(
                "--cpu-time needs STATICLLM_NUM_THREADS=1 (the work must run on the calling thread)"
            )
        global CLOCK
        CLOCK = time.thread_time
    shapes = [tuple(int(v) for v in s.split("x")) for s in (args.shape or ["1536x576", "2048x2048"])]
    clock = "thread CPU time" if args.cpu_time else "wall time"
    threads = _core.bench.threads()
    print(f"SIMD {_core.simd_level()}, {threads} threads, {clock}, median of {args.calls} interleaved calls")
    with tempfile.TemporaryDirectory() as d:
        if not args.no_linear:
            bench_linear(Path(d), shapes, args)
        if args.general:
            bench_general(Path(d), args.calls)
    return 0


def bench_linear(tmp: Path, shapes: list[tuple[int, ...]], args: argparse.Namespace) -> None:
    import staticllm

    print(
        f"{'weight [N, K]':>14} {'storage':>7} {'S':>4} {'linear ms':>10} {'conv ms':>9} {'conv/linear':>11}"
    )
    for n, k in shapes:
        weight = np.random.default_rng(1).standard_normal((n, k)).astype(np.float32) * 0.05
        for storage in args.weights:
            for s in args.seq:
                lb, cb = make_bundles(tmp, weight, storage, s)
                lin = staticllm.Runtime.load(lb, backend="mil").method()
                conv = staticllm.Runtime.load(cb, backend="mil").method()
                dtype = np.float32 if storage == "fp32" else np.float16
                ml, mc, diff = time_pair(lin, conv, s, k, args.calls, dtype)
                if diff > 1e-2:
                    raise SystemExit(f"conv and linear differ by {diff} for {n}x{k} {storage} S={s}")
                print(f"{f'{n}x{k}':>14} {storage:>7} {s:>4} {ml:>10.3f} {mc:>9.3f} {mc / ml:>11.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
