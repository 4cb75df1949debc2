"""Core ML packages converted by coremltools from torch definitions (random,
seeded weights), imported and run by the interpreter, matching torch within
the tolerances coremltools' own op tests use (compare_backend: fp32 atol 1e-4
rtol 1e-5; fp16 compute precision atol 0.5 rtol 0.05): a small CNN, a
transformer encoder block, and a stateful decoder writing its KV cache with
slice_update (the pattern of Apple's Llama recipe: a registered buffer
converted to a ct.StateType, written by in-place slice assignment, its
length read from a flexible attention mask)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import staticllm

TOLERANCES = {"fp32": (1e-4, 1e-5), "fp16": (5e-1, 5e-2)}  # (atol, rtol)
PRECISIONS = ["fp32", "fp16"]


def _load(model: Any, tmp: Path, name: str) -> staticllm.Method:
    model.save(str(tmp / f"{name}.mlpackage"))
    bundle = staticllm.import_mlpackage(tmp / f"{name}.mlpackage", tmp / name)
    return staticllm.Runtime.load(bundle, backend="mil").method()


def _convert(
    module: torch.nn.Module, examples: tuple[torch.Tensor, ...], precision: str, **kwargs: Any
) -> Any:
    import coremltools as ct

    traced = torch.jit.trace(module.eval(), examples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ct.convert(
            traced,
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
            skip_model_load=True,
            **kwargs,
        )


def _close(got: np.ndarray, want: torch.Tensor, precision: str) -> None:
    atol, rtol = TOLERANCES[precision]
    np.testing.assert_allclose(got.astype(np.float32), want.detach().numpy(), atol=atol, rtol=rtol)


class SmallCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, stride=2, groups=2)
        self.bn2 = torch.nn.BatchNorm2d(16)
        self.fc = torch.nn.Linear(16, 10)
        for bn in (self.bn1, self.bn2):  # running statistics as a trained model has them
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.2, 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = torch.nn.functional.avg_pool2d(torch.relu(self.bn2(self.conv2(x))), 3)
        return self.fc(torch.flatten(x, 1))


class EncoderBlock(torch.nn.Module):
    """Pre-norm self-attention and a GELU MLP, each with a residual."""

    def __init__(self, dim: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(dim)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)
        self.norm2 = torch.nn.LayerNorm(dim)
        self.up = torch.nn.Linear(dim, 4 * dim)
        self.down = torch.nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .reshape(b, t, 3, self.heads, d // self.heads)
            .permute(2, 0, 3, 1, 4)
            .unbind(0)
        )
        att = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.down(torch.nn.functional.gelu(self.up(self.norm2(x))))


class CachedDecoder(torch.nn.Module):
    """One attention layer over a KV cache kept in registered buffers. A call
    takes one token's embedding and a mask as long as the context so far; the
    token's key and value are written at position len(mask) - 1. The cache is
    fp16, as Core ML states are."""

    def __init__(self, dim: int = 16, heads: int = 2, max_len: int = 8) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.q, self.k, self.v, self.o = (torch.nn.Linear(dim, dim, bias=False) for _ in range(4))
        self.register_buffer("k_cache", torch.zeros(1, heads, max_len, self.head_dim, dtype=torch.float16))
        self.register_buffer("v_cache", torch.zeros(1, heads, max_len, self.head_dim, dtype=torch.float16))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        end = mask.shape[-1]
        split = (1, 1, self.heads, self.head_dim)
        q, k, v = (f(x).view(split).transpose(1, 2) for f in (self.q, self.k, self.v))
        self.k_cache[:, :, end - 1 : end] = k.half()
        self.v_cache[:, :, end - 1 : end] = v.half()
        keys, values = self.k_cache[:, :, :end].float(), self.v_cache[:, :, :end].float()
        att = torch.softmax(q @ keys.transpose(-1, -2) / self.head_dim**0.5 + mask, dim=-1)
        return self.o((att @ values).transpose(1, 2).reshape(1, 1, -1))


def _check_stateless(
    module: torch.nn.Module, x: torch.Tensor, precision: str, tmp_path: Path, name: str
) -> None:
    """Converts `module` traced on `x`, runs the package through the
    interpreter and compares its one output with torch's."""
    import coremltools as ct

    model = _convert(module, (x,), precision, inputs=[ct.TensorType(name="x", shape=x.shape)])
    method = _load(model, tmp_path, name)
    (out,) = method.execute({"x": x.numpy()}).values()
    _close(out, module(x), precision)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_small_cnn(tmp_path: Path, precision: str) -> None:
    torch.manual_seed(0)
    _check_stateless(SmallCNN().eval(), torch.randn(2, 3, 16, 16), precision, tmp_path, "cnn")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_transformer_encoder_block(tmp_path: Path, precision: str) -> None:
    torch.manual_seed(1)
    _check_stateless(EncoderBlock().eval(), torch.randn(2, 6, 32), precision, tmp_path, "encoder")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_stateful_decoder_with_slice_update(tmp_path: Path, precision: str) -> None:
    import coremltools as ct

    torch.manual_seed(2)
    max_len = 8
    module = CachedDecoder(max_len=max_len).eval()
    model = _convert(
        module,
        (torch.randn(1, 1, 16), torch.zeros(1, 1, 1, 3)),
        precision,
        inputs=[
            ct.TensorType(name="x", shape=(1, 1, 16)),
            ct.TensorType(name="mask", shape=(1, 1, 1, ct.RangeDim(1, max_len, default=1))),
        ],
        states=[
            ct.StateType(
                wrapped_type=ct.TensorType(shape=module.k_cache.shape, dtype=np.float16), name="k_cache"
            ),
            ct.StateType(
                wrapped_type=ct.TensorType(shape=module.v_cache.shape, dtype=np.float16), name="v_cache"
            ),
        ],
        minimum_deployment_target=ct.target.iOS18,
    )
    module.k_cache.zero_()  # tracing ran the module once
    module.v_cache.zero_()
    method = _load(model, tmp_path, "decoder")
    assert [s.name for s in method.state_specs] == ["k_cache", "v_cache"]
    assert method.input_specs[1].shape == (1, 1, 1, None)
    state = method.make_state()
    for step in range(max_len):
        x = torch.randn(1, 1, 16)
        mask = torch.zeros(1, 1, 1, step + 1)
        with torch.no_grad():
            want = module(x, mask)
        feed = {s.name: v.numpy().astype(s.dtype) for s, v in zip(method.input_specs, (x, mask))}
        (out,) = method.execute(feed, state=state).values()
        _close(out, want, precision)
    _close(state.read("k_cache"), module.k_cache.float(), precision)
