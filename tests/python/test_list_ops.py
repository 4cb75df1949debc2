"""MIL lists (make_list, list_read/write/gather/scatter/length) in programs
built with coremltools' MIL builder, converted to a package, imported and run
by the portable interpreter, compared with numpy: fixed-length lists at
run-time indices, dynamic-length lists grown by constant writes, and a list
grown in a while_loop (the eager path)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import staticllm
from mil_fixtures import program_method


def _int_spec() -> Any:
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    return mb.TensorSpec(shape=(1,), dtype=ct.converters.mil.mil.types.int32)


@pytest.fixture(scope="module")
def fixed_list(tmp_path_factory) -> Any:
    """A fixed-length list of 4 rows [3]: rows written at run-time indices i
    and j (j's write later), rows scattered at run-time indices k, then read
    at i and gathered at k."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    @mb.program(
        input_specs=[
            mb.TensorSpec(shape=(3,)),
            mb.TensorSpec(shape=(3,)),
            _int_spec(),
            _int_spec(),
            mb.TensorSpec(shape=(2, 3)),
            mb.TensorSpec(shape=(2,), dtype=ct.converters.mil.mil.types.int32),
        ],
        opset_version=ct.target.iOS18,
    )
    def prog(a: Any, b: Any, i: Any, j: Any, rows: Any, k: Any) -> Any:
        ls = mb.make_list(init_length=4, dynamic_length=False, elem_shape=(3,))
        ls = mb.list_write(ls=ls, index=mb.squeeze(x=i), value=a)
        ls = mb.list_write(ls=ls, index=mb.squeeze(x=j), value=b)
        read = mb.list_read(ls=ls, index=mb.squeeze(x=i))
        ls = mb.list_scatter(ls=ls, indices=k, value=rows)
        every = mb.list_gather(ls=ls, indices=np.arange(4, dtype=np.int32))
        return (
            mb.identity(x=read, name="read"),
            mb.identity(x=every, name="every"),
            mb.identity(x=mb.list_length(ls=ls), name="length"),
        )

    return program_method(prog, tmp_path_factory.mktemp("fixed_list"), "fixed_list")


@pytest.mark.parametrize("seed", range(4))
def test_fixed_length_list_at_run_time_indices(fixed_list: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((2, 3)).astype(np.float32)
    rows = rng.standard_normal((2, 3)).astype(np.float32)
    i, j = rng.integers(0, 4, 2)
    k = rng.choice(4, 2, replace=False).astype(np.int32)
    want = np.zeros((4, 3), np.float32)
    want[i] = a
    want[j] = b
    read = want[i].copy()
    want[k] = rows
    out = fixed_list.execute(
        {"a": a, "b": b, "i": np.array([i], np.int32), "j": np.array([j], np.int32), "rows": rows, "k": k}
    )
    np.testing.assert_array_equal(out["read"], read)
    np.testing.assert_array_equal(out["every"], want)
    assert int(out["length"]) == 4


def test_fixed_length_list_index_out_of_range(fixed_list: Any) -> None:
    inputs = {
        "a": np.ones(3, np.float32),
        "b": np.ones(3, np.float32),
        "i": np.array([4], np.int32),
        "j": np.array([0], np.int32),
        "rows": np.ones((2, 3), np.float32),
        "k": np.array([0, 1], np.int32),
    }
    out_of_range = r"\(list_write\): list index 4 out of range for a list of length 4"
    with pytest.raises(staticllm.InputError, match=out_of_range):
        fixed_list.execute(inputs)
    inputs["i"] = np.array([0], np.int32)
    inputs["k"] = np.array([1, -1], np.int32)
    with pytest.raises(staticllm.InputError, match=r"\(list_scatter\): list index -1 out of range"):
        fixed_list.execute(inputs)


def test_dynamic_list_grows_on_constant_writes(tmp_path) -> None:
    """Writes past the end of a dynamic-length list grow it; the new elements are zero."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    specs = [mb.TensorSpec(shape=(2, 2)), mb.TensorSpec(shape=(2, 2))]

    @mb.program(input_specs=specs, opset_version=ct.target.iOS18)
    def prog(a: Any, b: Any) -> Any:
        ls = mb.make_list(init_length=1, elem_shape=(2, 2))
        ls = mb.list_write(ls=ls, index=2, value=a)
        ls = mb.list_scatter(ls=ls, indices=[4, 0], value=mb.stack(values=[b, a], axis=0))
        return (
            mb.identity(x=mb.list_gather(ls=ls, indices=[0, 1, 2, 3, 4]), name="every"),
            mb.identity(x=mb.list_length(ls=ls), name="length"),
        )

    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((2, 2, 2)).astype(np.float32)
    out = program_method(prog, tmp_path, "grow").execute({"a": a, "b": b})
    want = np.zeros((5, 2, 2), np.float32)
    want[[2, 4, 0]] = [a, b, a]
    np.testing.assert_array_equal(out["every"], want)
    assert int(out["length"]) == 5


def test_list_grown_in_while_loop(tmp_path) -> None:
    """for i in range(n): ls[i] = row * i, on a list made with one element;
    the loop runs on the eager path, the length following n."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[_int_spec(), mb.TensorSpec(shape=(3,))], opset_version=ct.target.iOS18)
    def prog(n: Any, row: Any) -> Any:
        def cond(i: Any, ls: Any) -> Any:
            return mb.less(x=i, y=mb.squeeze(x=n))

        def body(i: Any, ls: Any) -> Any:
            value = mb.mul(x=row, y=mb.cast(x=i, dtype="fp32"))
            return mb.add(x=i, y=1), mb.list_write(ls=ls, index=i, value=value)

        ls = mb.make_list(init_length=1, elem_shape=(3,))
        _, ls = mb.while_loop(_cond=cond, _body=body, loop_vars=(np.int32(0), ls))
        length = mb.list_length(ls=ls)
        every = mb.list_gather(ls=ls, indices=mb.range_1d(start=0, end=length, step=1))
        return mb.identity(x=every, name="every"), mb.identity(x=length, name="length")

    m = program_method(prog, tmp_path, "loop")
    row = np.array([1.0, -2.0, 0.5], np.float32)
    for n in (0, 1, 4):
        out = m.execute({"n": np.array([n], np.int32), "row": row})
        want = np.arange(max(n, 1), dtype=np.float32)[:, None] * row
        if n == 0:
            want[:] = 0
        np.testing.assert_array_equal(out["every"], want)
        assert int(out["length"]) == max(n, 1)
