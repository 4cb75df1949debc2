"""Programs coremltools emits, run by the portable interpreter and compared
with numpy / torch: fp32 within 1e-5 relative, fp16 within 2e-2 absolute on
unit-scale data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import staticllm
from mil_fixtures import bundle_from_program


def _run_torch_module(
    module: torch.nn.Module, inputs: list[torch.Tensor], tmp, fp16: bool
) -> list[np.ndarray]:
    import coremltools as ct

    module.eval()
    traced = torch.jit.trace(module, tuple(inputs))
    ftype = np.float16 if fp16 else np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ct.convert(
            traced,
            inputs=[
                ct.TensorType(
                    name=f"in{i}", shape=tuple(x.shape), dtype=np.int32 if x.dtype == torch.int32 else ftype
                )
                for i, x in enumerate(inputs)
            ],
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS18,
            compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
            skip_model_load=True,
        )
    pkg = tmp / "m.mlpackage"
    model.save(str(pkg))
    bundle = staticllm.import_mlpackage(pkg, tmp / "b")
    m = staticllm.Runtime.load(bundle, backend="mil").method()
    feed = {s.name: x.numpy().astype(s.dtype) for s, x in zip(m.input_specs, inputs)}
    out = m.execute(feed)
    return [out[s.name].astype(np.float64) for s in m.output_specs]


def _check(got: np.ndarray, want: np.ndarray, fp16: bool) -> None:
    if fp16:
        np.testing.assert_allclose(got, want, atol=2e-2, rtol=0)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_elementwise_and_reduction_chain(tmp_path, fp16):
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    dt = ct.converters.mil.mil.types.fp16 if fp16 else ct.converters.mil.mil.types.fp32
    npdt = np.float16 if fp16 else np.float32

    @mb.program(
        input_specs=[mb.TensorSpec(shape=(2, 3, 4), dtype=dt), mb.TensorSpec(shape=(4,), dtype=dt)],
        opset_version=ct.target.iOS18,
    )
    def prog(x, y):  # noqa: ANN001, ANN202
        a = mb.add(x=x, y=y)
        b = mb.mul(x=a, y=mb.sigmoid(x=x))
        c = mb.transpose(x=b, perm=[0, 2, 1])
        d = mb.reshape(x=c, shape=[8, 3])
        e = mb.softmax(x=d, axis=-1)
        f = mb.reduce_sum(x=e, axes=[0], keep_dims=False)
        g = mb.real_div(x=mb.sub(x=d, y=mb.reduce_mean(x=d, axes=[-1], keep_dims=True)), y=npdt(2.0))
        return mb.concat(
            values=[mb.expand_dims(x=f, axes=[0]), mb.slice_by_index(x=g, begin=[0, 0], end=[1, 3])],
            axis=0,
            name="out",
        )

    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4)).astype(npdt)
    y = rng.standard_normal(4).astype(npdt)
    m = staticllm.Runtime.load(bundle_from_program(prog, tmp_path, "p", fp16), backend="mil").method()
    got = m.execute({"x": x, "y": y})["out"].astype(np.float64)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    d = ((x64 + y64) * (1 / (1 + np.exp(-x64)))).transpose(0, 2, 1).reshape(8, 3)
    e = np.exp(d - d.max(-1, keepdims=True))
    e /= e.sum(-1, keepdims=True)
    g = (d - d.mean(-1, keepdims=True)) / 2
    want = np.concatenate([e.sum(0)[None], g[:1]], 0)
    _check(got, want, fp16)


class Mlp(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(16, 32)
        self.b = torch.nn.Linear(32, 8, bias=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.silu(self.a(x)) * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
        return torch.matmul(self.b(h), y.transpose(-1, -2)).squeeze(0)


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_torch_mlp(tmp_path, fp16):
    torch.manual_seed(0)
    module = Mlp()
    x, y = torch.randn(1, 5, 16) * 0.5, torch.randn(1, 3, 8) * 0.5
    with torch.no_grad():
        want = module(x, y).double().numpy()
    (got,) = _run_torch_module(module, [x, y], tmp_path, fp16)
    _check(got, want, fp16)


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_two_layer_static_cache_llama(tmp_path, fp16):
    """Our export's own graph shape: 2 layers, GQA, explicit KV cache inputs."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from llama_fixtures import random_state_dict, reference_model, tiny_config

    cfg = tiny_config(dim=32, n_heads=4, n_kv_heads=2, vocab_size=64, hidden_dim=48)
    model = reference_model(cfg, random_state_dict(cfg, 3), 16)
    seq, cache = 4, 16
    rng = np.random.default_rng(2)
    tokens = torch.tensor(rng.integers(0, 64, (1, seq)), dtype=torch.int32)
    pos = torch.arange(5, 5 + seq, dtype=torch.int32)
    mask = torch.full((1, seq, cache + seq), float("-inf"))
    mask[:, :, :5] = 0
    mask[0, :, cache:] = torch.full((seq, seq), float("-inf")).triu(1)
    caches = [torch.randn(1, 2, cache, 8) * 0.5 for _ in range(4)]
    with torch.no_grad():
        want = [t.double().numpy() for t in model(tokens, pos, mask, *caches)]
    got = _run_torch_module(model, [tokens, pos, mask, *caches], tmp_path, fp16)
    for g, w in zip(got, want):
        if fp16:
            np.testing.assert_allclose(g, w, atol=2e-2 * max(1.0, np.abs(w).max()))
        else:
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
