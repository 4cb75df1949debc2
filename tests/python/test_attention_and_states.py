"""iOS18 ops beyond the exported graphs: scaled_dot_product_attention and
Core ML states (read_state / coreml_update_state), run by the interpreter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import staticllm
from mil_fixtures import accumulator_program, bundle_from_program


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_sdpa_matches_numpy(tmp_path, fp16):
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    types = ct.converters.mil.mil.types
    dt = types.fp16 if fp16 else types.fp32
    npdt = np.float16 if fp16 else np.float32
    B, H, L, S, E = 1, 3, 4, 6, 8

    @mb.program(
        input_specs=[
            mb.TensorSpec(shape=(B, H, L, E), dtype=dt),
            mb.TensorSpec(shape=(B, H, S, E), dtype=dt),
            mb.TensorSpec(shape=(B, H, S, E), dtype=dt),
            mb.TensorSpec(shape=(1, 1, L, S), dtype=dt),
        ],
        opset_version=ct.target.iOS18,
    )
    def prog(q: Any, k: Any, v: Any, mask: Any) -> Any:
        return mb.scaled_dot_product_attention(query=q, key=k, value=v, attn_mask=mask, name="out")

    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal(s).astype(npdt) for s in [(B, H, L, E), (B, H, S, E), (B, H, S, E)])
    mask = np.where(rng.random((1, 1, L, S)) < 0.3, -1e4, 0).astype(npdt)
    mask[..., 0] = 0  # every row attends somewhere
    m = staticllm.Runtime.load(bundle_from_program(prog, tmp_path, "sdpa", fp16), backend="mil").method()
    got = m.execute({"q": q, "k": k, "v": v, "mask": mask})["out"].astype(np.float64)
    s = q.astype(np.float64) @ k.astype(np.float64).transpose(0, 1, 3, 2) / np.sqrt(E) + mask
    p = np.exp(s - s.max(-1, keepdims=True))
    want = (p / p.sum(-1, keepdims=True)) @ v.astype(np.float64)
    if fp16:
        np.testing.assert_allclose(got, want, atol=2e-2)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_state_is_read_updated_and_returned(tmp_path):
    prog = accumulator_program()
    bundle = bundle_from_program(prog, tmp_path, "state", fp16=True)
    m = staticllm.Runtime.load(bundle, backend="mil").method()
    assert [s.name for s in m.state_specs] == ["acc"]
    x = np.arange(6, dtype=np.float16).reshape(2, 3)
    first = m.execute({"x": x})  # state omitted: starts at zeros
    np.testing.assert_array_equal(first["acc"], x)
    np.testing.assert_array_equal(first["doubled"], 2 * x)
    second = m.execute({"x": x, "acc": first["acc"]})
    np.testing.assert_array_equal(second["acc"], 2 * x)
    np.testing.assert_array_equal(second["doubled"], 4 * x)
