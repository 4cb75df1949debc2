"""cond and while_loop programs built with coremltools' MIL builder, run by
the portable interpreter and compared with numpy."""

from __future__ import annotations

from typing import Any

import numpy as np

from mil_fixtures import program_method


def test_while_loop_power(tmp_path) -> None:
    """res = x ** k by a loop over (res, i) that reads x and k from outside."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    @mb.program(
        input_specs=[mb.TensorSpec(shape=(2, 3)), mb.TensorSpec(shape=(1,))],
        opset_version=ct.target.iOS18,
    )
    def prog(x: Any, k: Any) -> Any:
        def cond(res: Any, i: Any) -> Any:
            return mb.less(x=i, y=k)

        def body(res: Any, i: Any) -> Any:
            return mb.mul(x=res, y=x), mb.add(x=i, y=np.float32([1.0]))

        res, count = mb.while_loop(
            _cond=cond, _body=body, loop_vars=(np.ones((2, 3), np.float32), np.zeros(1, np.float32))
        )
        return mb.identity(x=res, name="res"), mb.identity(x=count, name="count")

    m = program_method(prog, tmp_path, "power")
    x = np.random.default_rng(0).uniform(0.5, 1.5, (2, 3)).astype(np.float32)
    for k in (0, 1, 5):
        out = m.execute({"x": x, "k": np.array([k], np.float32)})
        np.testing.assert_allclose(out["res"], x**k, rtol=1e-5)
        assert out["count"].tolist() == [float(k)]


def test_cond_on_input(tmp_path) -> None:
    """y = relu(x) * w if sum(x) > 0 else x - 1, with w a constant outside the cond."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    w = np.arange(6, dtype=np.float32).reshape(2, 3)

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))], opset_version=ct.target.iOS18)
    def prog(x: Any) -> Any:
        weight = mb.const(val=w)
        pred = mb.greater(x=mb.reduce_sum(x=x), y=np.float32(0))
        y = mb.cond(
            pred=pred,
            _true_fn=lambda: mb.mul(x=mb.relu(x=x), y=weight),
            _false_fn=lambda: mb.sub(x=x, y=np.float32(1)),
        )
        return mb.identity(x=y, name="y")

    m = program_method(prog, tmp_path, "cond")
    rng = np.random.default_rng(1)
    for sign in (1.0, -1.0):
        x = (sign * rng.uniform(0.1, 1.0, (2, 3))).astype(np.float32)
        want = np.maximum(x, 0) * w if x.sum() > 0 else x - 1
        np.testing.assert_allclose(m.execute({"x": x})["y"], want, rtol=1e-6)
