"""conv and conv_transpose as coremltools emits them, built with the MIL
builder, run by the interpreter and compared with torch.nn.functional in
float64 on the inputs as fed (fp16-rounded for fp16 programs).

A grid of forms in one program per dtype (one conversion each, so the whole
file runs in seconds): 1D/2D/3D, odd sizes, strides 1-3, dilations 1-2,
groups 1, 2 and C (depthwise), every pad_type, with and without bias; the
1x1 (B, C, 1, S) projection of the Neural Engine export; a weight given at run
time; fp16 weights under fp32 activations; conv_transpose with output_shape;
compressed weights (int8 per channel, int4 per block, a 4-bit lookup table, int8 depthwise)
that the kernels must read as stored. Padding of same / same_lower is
coremltools' own (ops/defs/_utils.aggregated_pad, the odd element after /
before); conv_transpose crops like TensorFlow's conv2d_transpose, which
coremltools' TensorFlow frontend maps to it.

Tolerances: fp32 outputs within 1e-5 relative + 1e-5 absolute (fp32
accumulation of at most ~100 unit-scale products); fp16 outputs within 1e-3
relative + 4e-3 absolute (one fp16 rounding of values up to ~8, whose
half-ulp is 4e-3)."""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import staticllm
from mil_fixtures import convert_program

SPATIAL = {1: (13,), 2: (9, 7), 3: (5, 6, 7)}
KERNEL = {1: (4,), 2: (3, 2), 3: (2, 3, 3)}


@dataclass
class Form:
    """One conv (or conv_transpose) of the grid: its shapes and MIL arguments."""

    dims: int
    c_in: int
    c_out: int
    groups: int = 1
    stride: int = 1
    dilation: int = 1
    pad_type: str = "valid"
    pad: tuple[int, ...] = ()
    bias: bool = False
    spatial: tuple[int, ...] = ()
    kernel: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    weight_input: bool = False  # the weight is a run-time input (iOS17)
    fp16_weight: bool = False  # fp16 weight and bias under fp32 x (iOS17)
    seed: int = 0
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        self.spatial = self.spatial or SPATIAL[self.dims]
        self.kernel = self.kernel or KERNEL[self.dims]

    def x_shape(self) -> tuple[int, ...]:
        return (1, self.c_in, *self.spatial)

    def weight_shape(self, transpose: bool) -> tuple[int, ...]:
        if transpose:
            return (self.c_in, self.c_out // self.groups, *self.kernel)
        return (self.c_out, self.c_in // self.groups, *self.kernel)

    def mil_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "strides": [self.stride] * self.dims,
            "dilations": [self.dilation] * self.dims,
            "pad_type": self.pad_type,
            "groups": self.groups,
        }
        if self.pad_type == "custom":
            args["pad"] = list(self.pad)
        if self.output_shape:
            args["output_shape"] = list(self.output_shape)
        return args


def conv_grid() -> list[Form]:
    """Every pad_type x dimensionality x groups (1, 2, C) once, with strides,
    dilations and bias cycling through their values, plus special layouts."""
    forms = []
    combos = itertools.product(["valid", "same", "same_lower", "custom"], [1, 2, 3], [1, 2, 6])
    for i, (pad_type, dims, groups) in enumerate(combos):
        c_out = {1: 5, 2: 4, 6: 12}[groups]  # odd; even; depthwise with 2 outputs per channel
        forms.append(
            Form(
                dims,
                6,
                c_out,
                groups=groups,
                stride=1 + i % 3,
                dilation=1 + (i // 3) % 2,
                pad_type=pad_type,
                pad=(1, 2, 2, 0, 0, 1)[: 2 * dims],
                bias=i % 2 == 0,
                seed=i,
                name=f"conv{dims}d_{pad_type}_g{groups}",
            )
        )
    forms += [
        Form(2, 24, 20, spatial=(1, 7), kernel=(1, 1), bias=True, seed=90, name="pointwise_B_C_1_S"),
        Form(2, 24, 20, spatial=(1, 1), kernel=(1, 1), seed=91, name="pointwise_decode_S1"),
        Form(
            2,
            4,
            6,
            stride=2,
            pad_type="custom",
            pad=(1, 0, 0, 1),
            weight_input=True,
            seed=92,
            name="weight_input",
        ),
        Form(
            1,
            5,
            7,
            stride=2,
            pad_type="same",
            bias=True,
            fp16_weight=True,
            seed=93,
            name="fp16_weight_fp32_x",
        ),
    ]
    return forms


def transpose_grid() -> list[Form]:
    """valid / same / custom x dimensionality x groups (1, 2, C), and output_shape."""
    forms = []
    combos = itertools.product(["valid", "same", "custom"], [1, 2, 3], [1, 2, 6])
    for i, (pad_type, dims, groups) in enumerate(combos):
        spatial = {1: (6,), 2: (5, 4), 3: (3, 4, 3)}[dims]
        forms.append(
            Form(
                dims,
                6,
                {1: 5, 2: 4, 6: 6}[groups],
                groups=groups,
                stride=1 + i % 3,
                dilation=1 + (i // 3) % 2,
                pad_type=pad_type,
                pad=(1, 0, 2, 1, 0, 1)[: 2 * dims],
                bias=i % 2 == 1,
                spatial=spatial,
                seed=100 + i,
                name=f"conv_transpose{dims}d_{pad_type}_g{groups}",
            )
        )
    # output_shape as the torch (output_padding) and TensorFlow frontends write it
    custom = Form(2, 3, 4, stride=2, pad_type="custom", pad=(1, 0, 1, 1), spatial=(4, 5), bias=True, seed=140)
    same = Form(2, 3, 4, stride=3, pad_type="same", spatial=(4, 5), seed=141)
    longer = Form(1, 3, 2, stride=2, pad_type="valid", spatial=(5,), seed=142)
    custom.output_shape, custom.name = (1, 4, 8, 9), "transpose_custom_output_shape"
    same.output_shape, same.name = (1, 4, 11, 14), "transpose_same_output_shape"
    longer.output_shape, longer.name = (1, 2, 12), "transpose_valid_output_shape_longer"
    forms += [custom, same, longer]
    return forms


def pads(form: Form) -> list[tuple[int, int]]:
    """(before, after) per spatial axis of a conv, as coremltools defines them."""
    from coremltools.converters.mil.mil.ops.defs._utils import aggregated_pad

    if form.pad_type == "custom":
        return [(form.pad[2 * i], form.pad[2 * i + 1]) for i in range(form.dims)]
    if form.pad_type == "valid":
        return [(0, 0)] * form.dims
    totals = aggregated_pad(
        form.pad_type,
        list(form.kernel),
        list(form.spatial),
        [form.stride] * form.dims,
        [form.dilation] * form.dims,
    )
    lower = form.pad_type == "same_lower"
    return [(t - t // 2, t // 2) if lower else (t // 2, t - t // 2) for t in totals]


def torch_conv(form: Form, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    xt = torch.from_numpy(x.astype(np.float64))
    flat = [p for pair in reversed(pads(form)) for p in pair]  # F.pad takes the last axis first
    conv = getattr(F, f"conv{form.dims}d")
    bias = None if b is None else torch.from_numpy(b.astype(np.float64))
    y = conv(
        F.pad(xt, flat),
        torch.from_numpy(w.astype(np.float64)),
        bias,
        stride=form.stride,
        dilation=form.dilation,
        groups=form.groups,
    )
    return y.numpy()


def torch_conv_transpose(form: Form, x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """The full transposed convolution, cropped (or zero-extended) to the output."""
    conv_t = getattr(F, f"conv_transpose{form.dims}d")
    y = conv_t(
        torch.from_numpy(x.astype(np.float64)),
        torch.from_numpy(w.astype(np.float64)),
        None,
        stride=form.stride,
        dilation=form.dilation,
        groups=form.groups,
    )
    flat: list[int] = []
    for i in range(form.dims):
        full = y.shape[2 + i]
        if form.pad_type == "custom":
            before, out = form.pad[2 * i], full - form.pad[2 * i] - form.pad[2 * i + 1]
        else:
            before, out = 0, full if form.pad_type == "valid" else form.spatial[i] * form.stride
        if form.output_shape:
            out = form.output_shape[2 + i]
        if form.pad_type == "same":
            before = max(0, full - out) // 2
        flat = [-before, out - (full - before), *flat]  # negative pads crop
    y = F.pad(y, flat)
    if b is not None:
        y = y + torch.from_numpy(b.astype(np.float64)).reshape(1, -1, *([1] * form.dims))
    return y.numpy()


def unit(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return rng.uniform(-1, 1, shape).astype(dtype)


def build_and_run(
    forms: list[tuple[str, Form]], fp16: bool, tmp: Path, name: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One program holding every form (op 'conv' or 'conv_transpose'); returns
    the interpreter's outputs and torch's, by form name."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import Function, Program, types

    dtype = np.float16 if fp16 else np.float32
    inputs, feed, want, consts = {}, {}, {}, {}
    for op_type, form in forms:
        rng = np.random.default_rng(form.seed)
        x_dtype = np.float32 if form.fp16_weight else dtype
        w_dtype = np.float16 if form.fp16_weight else dtype
        x = unit(rng, form.x_shape(), x_dtype)
        w = unit(rng, form.weight_shape(op_type == "conv_transpose"), w_dtype)
        b = unit(rng, (form.c_out,), w_dtype) if form.bias else None
        inputs[f"x_{form.name}"] = mb.placeholder(
            shape=x.shape, dtype=types.numpy_type_to_builtin_type(x_dtype)
        )
        feed[f"x_{form.name}"] = x
        if form.weight_input:
            inputs[f"w_{form.name}"] = mb.placeholder(
                shape=w.shape, dtype=types.numpy_type_to_builtin_type(w_dtype)
            )
            feed[f"w_{form.name}"] = w
        consts[form.name] = (w, b)
        ref = torch_conv if op_type == "conv" else torch_conv_transpose
        want[form.name] = ref(form, x, w, b)

    with Function(inputs, opset_version=ct.target.iOS18) as func:
        outs = []
        for op_type, form in forms:
            w, b = consts[form.name]
            args = form.mil_args()
            if b is not None:
                args["bias"] = b
            weight = func.inputs[f"w_{form.name}"] if form.weight_input else w
            op = getattr(mb, op_type)
            outs.append(op(x=func.inputs[f"x_{form.name}"], weight=weight, name=form.name, **args))
        func.set_outputs(outs)
    prog = Program()
    prog.add_function("main", func)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pkg = convert_program(prog, tmp / f"{name}.mlpackage", fp16=fp16, optimize=False)
    bundle = staticllm.import_mlpackage(pkg, tmp / name)
    got = staticllm.Runtime.load(bundle, backend="mil").method().execute(feed)
    return got, want


def check(got: np.ndarray, want: np.ndarray, fp16: bool, what: str) -> None:
    assert got.shape == want.shape, what
    assert got.dtype == (np.float16 if fp16 else np.float32), what
    rtol, atol = (1e-3, 4e-3) if fp16 else (1e-5, 1e-5)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=rtol, atol=atol, err_msg=what)


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_conv_and_conv_transpose_match_torch(tmp_path, fp16):
    forms = [("conv", f) for f in conv_grid()] + [("conv_transpose", f) for f in transpose_grid()]
    if fp16:  # the mixed-dtype form is fp32 x by definition
        forms = [(t, f) for t, f in forms if not f.fp16_weight]
    got, want = build_and_run(forms, fp16, tmp_path, "grid")
    assert sorted(got) == sorted(want)
    for op_type, form in forms:
        out_fp16 = fp16 and not form.fp16_weight
        check(got[form.name], want[form.name], out_fp16, f"{op_type} {form}")


def _compressed_program(rng: np.random.Generator) -> tuple[Any, dict[str, np.ndarray], dict[str, Form]]:
    """Convs on constexpr-compressed weights: the program, the dense weights
    and the forms (the 3x3 has more positions than one tile of rows)."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    c_in, c_out = 64, 24
    int8 = rng.integers(-128, 128, (c_out, c_in, 3, 3)).astype(np.int8)
    s8 = (rng.random((c_out, 1, 1, 1)) * 0.01).astype(np.float32)
    int4 = rng.integers(-8, 8, (c_out, c_in, 1, 1)).astype(types.np_int4_dtype)
    s4 = (rng.random((c_out, c_in // 16, 1, 1)) * 0.05).astype(np.float32)
    idx = rng.integers(0, 16, (c_out, c_in // 2, 1, 3)).astype(types.np_uint4_dtype)
    lut = rng.uniform(-0.3, 0.3, (c_out // 8, 1, 1, 1, 16, 1)).astype(np.float32)
    dw = rng.integers(-128, 128, (c_in, 1, 3, 3)).astype(np.int8)
    sdw = (rng.random((c_in, 1, 1, 1)) * 0.01).astype(np.float32)
    dense = {
        "int8_channel_3x3": int8.astype(np.float32) * s8,
        "int4_block16_1x1": int4.astype(np.float32) * np.repeat(s4, 16, axis=1),
        "lut4_grouped_1x3_groups2": lut[
            np.arange(c_out)[:, None, None, None] // 8, 0, 0, 0, idx.astype(np.int64), 0
        ],
        "int8_depthwise_3x3": dw.astype(np.float32) * sdw,
    }
    img = (12, 13)
    forms = {
        "int8_channel_3x3": Form(2, c_in, c_out, pad_type="same", spatial=img, kernel=(3, 3)),
        "int4_block16_1x1": Form(2, c_in, c_out, spatial=(1, 9), kernel=(1, 1)),
        "lut4_grouped_1x3_groups2": Form(2, c_in, c_out, groups=2, stride=2, spatial=img, kernel=(1, 3)),
        "int8_depthwise_3x3": Form(2, c_in, c_in, groups=c_in, pad_type="same", spatial=img, kernel=(3, 3)),
    }

    @mb.program(
        input_specs=[mb.TensorSpec(shape=(2, c_in, *img)), mb.TensorSpec(shape=(1, c_in, 1, 9))],
        opset_version=ct.target.iOS18,
    )
    def prog(img: Any, seq: Any) -> Any:
        w8 = mb.constexpr_blockwise_shift_scale(data=int8, scale=s8)
        w4 = mb.constexpr_blockwise_shift_scale(data=int4, scale=s4)
        wl = mb.constexpr_lut_to_dense(indices=idx, lut=lut)
        wdw = mb.constexpr_blockwise_shift_scale(data=dw, scale=sdw)
        return (
            mb.conv(x=img, weight=w8, pad_type="same", name="int8_channel_3x3"),
            mb.conv(x=seq, weight=w4, name="int4_block16_1x1"),
            mb.conv(x=img, weight=wl, strides=[2, 2], groups=2, name="lut4_grouped_1x3_groups2"),
            mb.conv(x=img, weight=wdw, pad_type="same", groups=c_in, name="int8_depthwise_3x3"),
        )

    return prog, dense, forms


def test_compressed_weights_are_read_as_stored(tmp_path, monkeypatch, capfd):
    rng = np.random.default_rng(5)
    prog, dense, forms = _compressed_program(rng)
    bundle = staticllm.import_mlpackage(convert_program(prog, tmp_path / "c.mlpackage"), tmp_path / "c")
    ops = (bundle / "program.json").read_text()
    assert "constexpr_blockwise_shift_scale" in ops and "constexpr_lut_to_dense" in ops
    monkeypatch.setenv("STATICLLM_PROFILE", "1")  # the planner reports every compressed weight it expands
    method = staticllm.Runtime.load(bundle, backend="mil").method()
    feed = {"img": unit(rng, (2, 64, 12, 13), np.float32), "seq": unit(rng, (1, 64, 1, 9), np.float32)}
    got = method.execute(feed)
    assert "expanded for" not in capfd.readouterr().err
    for name, form in forms.items():
        want = torch_conv(form, feed["seq" if form.spatial == (1, 9) else "img"], dense[name], None)
        check(got[name], want, False, name)


def test_unsupported_forms_are_refused_at_load(tmp_path):
    """conv_transpose with same_lower has no definition in coremltools; a pad
    of the wrong length names the attribute and its value."""
    import json

    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    w = np.ones((2, 3, 3), np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, 8))], opset_version=ct.target.iOS18)
    def prog(x: Any) -> Any:
        return mb.conv(x=x, weight=w, pad_type="custom", pad=[1, 1], name="y")

    bundle = staticllm.import_mlpackage(
        convert_program(prog, tmp_path / "p.mlpackage", optimize=False), tmp_path / "p"
    )
    doc = json.loads((bundle / "program.json").read_text())
    text = json.dumps(doc).replace('"custom"', '"reflect"')
    (bundle / "program.json").write_text(text)
    with pytest.raises(
        staticllm.BundleError, match=r"op 'y' \(type 'conv'\): pad_type 'reflect' is not supported"
    ):
        staticllm.Runtime.load(bundle, backend="mil")
