"""MLModel.predict and MLModel.make_state through the staticllm interpreter.

coremltools predicts through Core ML, which exists only on macOS. Here a
converted ML Program is saved, imported into a bundle (staticllm.import_mlpackage)
and run by the portable interpreter (Runtime.load(backend="mil")); the result
is shaped as coremltools' Core ML binding returns it: a dict by output name,
fp16 arrays widened to fp32 (Core ML hands Python fp32 for fp16 multiarrays),
other dtypes as the program declares them.

Every call is recorded in `suite_outcomes.current()` so the summary can say
whether a test reached prediction and how it ended.
"""

from __future__ import annotations

import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np

import suite_outcomes
from staticllm.errors import UnsupportedOpError
from staticllm.importer import import_mlpackage
from staticllm.runtime import Method, Runtime, State

# Self-check: every output is moved far outside any tolerance the suite uses
# (set by the conftest from --ct-perturb), so a test that still passes does
# not look at the values it predicts.
PERTURB = False


class NotAnMLProgram(Exception):
    """predict() on a neuralnetwork model: the interpreter runs ML Programs only."""


class _Loaded:
    """The bundle and method made from one MLModel, kept for its later calls."""

    def __init__(self, mlmodel: Any) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="ct_suite_")
        root = Path(self._dir.name)
        package = root / "model.mlpackage"
        mlmodel.save(str(package))
        record = suite_outcomes.current()
        try:
            bundle = import_mlpackage(package, root / "bundle")
            self.runtime = Runtime.load(bundle, backend="mil")
            self.method: Method = self.runtime.method()
            # fp16 tensors anywhere in the program (see suite_outcomes.fp16_rounding)
            self.has_fp16 = '"FLOAT16"' in (Path(bundle) / "program.json").read_text()
        except UnsupportedOpError as e:
            record.note("unsupported", e)
            raise
        except Exception as e:  # any other refusal: a form of an op, a flexible shape, a type
            record.note("refused", e)
            raise
        # the directory goes when the model does (weight.bin stays mapped until then)
        weakref.finalize(self, self._dir.cleanup)


def _loaded(mlmodel: Any) -> _Loaded:
    suite_outcomes.current().reached = True
    if not mlmodel.is_package:
        suite_outcomes.current().note("not_mlprogram", None)
        raise NotAnMLProgram("a neuralnetwork model: the staticllm interpreter runs ML Programs only")
    cached = getattr(mlmodel, "_staticllm_loaded", None)
    if cached is None:
        cached = _Loaded(mlmodel)
        mlmodel._staticllm_loaded = cached
    suite_outcomes.current().has_fp16 = cached.has_fp16
    return cached


def _as_input(name: str, value: Any, dtype: np.dtype, shape: tuple[int | None, ...]) -> np.ndarray:
    """What Core ML does with a given array: converts it to the input's
    dtype; a scalar (given as shape (1,)) fills a one-element input of any
    rank. A flexible input (None dimensions) takes the array as given."""
    arr = np.asarray(value)
    fixed = None not in shape
    if fixed and arr.shape != shape and arr.size == 1 and int(np.prod(shape)) == 1:
        arr = arr.reshape(shape)
    return arr.astype(dtype, copy=False)


def _as_output(value: np.ndarray) -> np.ndarray:
    out = value.astype(np.float32) if value.dtype == np.float16 else value
    return _perturbed(out) if PERTURB else out


def _perturbed(value: np.ndarray) -> np.ndarray:
    if np.issubdtype(value.dtype, np.floating):
        # |shift| >= 1e3 * (1 + |value|): beyond atol + rtol * |value| for any tolerance below 1e3
        return (value + np.float32(1e3) * (1 + np.abs(value))).astype(value.dtype)
    if value.dtype == np.bool_:
        return ~value
    return value + 1


def predict(mlmodel: Any, data: Any, state: Any = None) -> Any:
    """Replaces MLModel.predict: one dict of inputs (or a list for a batch)."""
    if isinstance(data, list):
        return [predict(mlmodel, d) for d in data]
    method = _loaded(mlmodel).method
    record = suite_outcomes.current()
    specs = {s.name: s for s in method.input_specs}
    inputs = {}
    for name, value in data.items():
        spec = specs.get(name)
        if spec is None:
            raise KeyError(f"Provided key '{name}' does not match any model input: {sorted(specs)}")
        inputs[name] = _as_input(name, value, spec.dtype, spec.shape)
    native_state = state._staticllm_state if state is not None else None
    try:
        outputs = method.execute(inputs, state=native_state)
    except Exception as e:
        record.note("run_error", e)
        # what coremltools raises when Core ML fails a prediction (some tests expect it)
        message = f"Unable to compute the prediction using ML Program (staticllm interpreter): {e}"
        raise RuntimeError(message) from e
    record.predictions += 1
    return {name: _as_output(value) for name, value in outputs.items()}


class SuiteState:
    """What make_state() returns: the interpreter's State for the model."""

    def __init__(self, state: State) -> None:
        self._staticllm_state = state


def make_state(mlmodel: Any) -> SuiteState:
    """Replaces MLModel.make_state."""
    return SuiteState(_loaded(mlmodel).method.make_state())
