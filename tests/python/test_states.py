"""States kept across calls: Method.make_state() and execute(inputs, state=),
mirroring Core ML's MLModel.newState and coremltools' make_state. On every
backend the platform has."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import staticllm
from mil_fixtures import affine_program, bundle_from_program, stateful_pair_bundle


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return stateful_pair_bundle(tmp_path_factory.mktemp("pair"))


X = np.arange(6, dtype=np.float16).reshape(2, 3)


def test_a_state_is_kept_and_updated_in_place(pair, backend):
    rt = staticllm.Runtime.load(pair, backend=backend)
    acc = rt.method("accumulate")
    state = acc.make_state()
    assert isinstance(state, staticllm.State)
    assert [(s.name, s.dtype, s.shape) for s in state.specs] == [("acc", np.dtype(np.float16), (2, 3))]
    np.testing.assert_array_equal(state.read("acc"), np.zeros((2, 3), np.float16))
    first = acc.execute({"x": X}, state=state)
    assert sorted(first) == ["doubled"]  # the states stay in the State
    np.testing.assert_array_equal(first["doubled"], 2 * X)
    second = acc.execute([X], state=state)  # by position: the inputs only
    np.testing.assert_array_equal(second["doubled"], 4 * X)
    np.testing.assert_array_equal(state.read("acc"), 2 * X)
    state.write("acc", np.full((2, 3), 10, np.float16))
    np.testing.assert_array_equal(acc.execute({"x": X}, state=state)["doubled"], 2 * (10 + X))


def test_one_state_serves_both_functions(pair, backend):
    """Like a prefill and a decode function sharing one KV cache."""
    rt = staticllm.Runtime.load(pair, backend=backend)
    state = rt.method("peek").make_state()
    rt.method("accumulate").execute({"x": X}, state=state)
    rt.method("accumulate").execute({"x": X}, state=state)
    np.testing.assert_array_equal(rt.method("peek").execute({}, state=state)["value"], 2 * X)
    # without a State the call starts from the given (or zero) states, as before
    np.testing.assert_array_equal(rt.method("peek").execute({})["value"], np.zeros((2, 3), np.float16))


def test_a_state_outlives_its_runtime(pair, backend):
    rt = staticllm.Runtime.load(pair, backend=backend)
    state = rt.method("accumulate").make_state()
    rt.method("accumulate").execute({"x": X}, state=state)
    del rt
    gc.collect()
    np.testing.assert_array_equal(state.read("acc"), X)


def test_state_misuse_is_an_input_error(pair, tmp_path, rng):
    rt = staticllm.Runtime.load(pair, backend="mil")
    acc = rt.method("accumulate")
    state = acc.make_state()
    with pytest.raises(staticllm.InputError, match="'acc' is a state, which the given State holds"):
        acc.execute({"x": X, "acc": X}, state=state)
    with pytest.raises(staticllm.InputError, match=r"expected 1 inputs \(x\), got 2"):
        acc.execute([X, X], state=state)
    with pytest.raises(staticllm.InputError, match="made by a method of another Runtime"):
        staticllm.Runtime.load(pair, backend="mil").method("accumulate").execute({"x": X}, state=state)
    with pytest.raises(staticllm.InputError, match="state must be a State from make_state"):
        acc.execute({"x": X}, state={"acc": X})
    with pytest.raises(staticllm.InputError, match=r"state 'acc' expects fp16 \[2, 3\], got fp32 \[2, 3\]"):
        state.write("acc", X.astype(np.float32))
    with pytest.raises(staticllm.InputError, match="the State has no state 'kv'; it holds: acc"):
        state.read("kv")
    # a stateless method makes an empty State
    w = rng.standard_normal((4, 8)).astype(np.float32)
    plain = staticllm.Runtime.load(
        bundle_from_program(affine_program(w, np.zeros(4, np.float32)), tmp_path, "a")
    )
    empty = plain.method().make_state()
    assert empty.specs == []
    x = np.ones((2, 8), np.float32)
    np.testing.assert_array_equal(
        plain.method().execute({"x": x}, state=empty)["y"], plain.method()(x=x)["y"]
    )
