"""The Python face of the native runtime: `Runtime.load(path).method(name)`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from staticllm import _core
from staticllm.errors import InputError


@dataclass(frozen=True)
class TensorSpec:
    """A method's input, output or state. `shape` has None for a dimension
    fixed only when the method runs (and is None when not even the rank is
    declared). A flexible input also has the shape it is planned at first
    (`default_shape`) and what it accepts: per-dimension `shape_range`
    ((lower, upper), upper None when unbounded) or `enumerated_shapes`."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...] | None
    default_shape: tuple[int, ...] | None = None
    shape_range: tuple[tuple[int, int | None], ...] | None = None
    enumerated_shapes: tuple[tuple[int, ...], ...] | None = None

    def __repr__(self) -> str:
        flex = ("default_shape", "shape_range", "enumerated_shapes")
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in flex if getattr(self, k) is not None)
        return f"TensorSpec(name={self.name!r}, dtype={self.dtype!r}, shape={self.shape!r}{extra})"

    @property
    def is_flexible(self) -> bool:
        return self.shape is None or None in self.shape

    def zeros(self) -> np.ndarray:
        """Zeros of the spec's shape (its default shape when flexible)."""
        shape = self.default_shape if self.default_shape is not None else self.shape
        if shape is None or None in shape:
            raise InputError(f"'{self.name}' has no fixed or default shape to make zeros of")
        return np.zeros(shape, self.dtype)


def _specs(raw: list[tuple[Any, ...]]) -> list[TensorSpec]:
    return [
        TensorSpec(name, np.dtype(dtype), None if shape is None else tuple(shape), *flex)
        for name, dtype, shape, *flex in raw
    ]


class State:
    """States of a stateful method kept across calls (Core ML's MLState,
    coremltools' `make_state`). Made by `Method.make_state()`; passed as
    `execute(inputs, state=state)`, which reads and updates it in place. A State
    serves every method of the same Runtime whose states have the same names,
    dtypes and shapes (a prefill and a decode function sharing one cache).
    Calls sharing one State run one at a time."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self.specs = _specs(native.specs)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def read(self, name: str) -> np.ndarray:
        """A copy of the named state's current value."""
        return self._native.read(name)

    def write(self, name: str, value: Any) -> None:
        """Set the named state to `value` (its dtype and shape)."""
        self._native.write(name, value)

    def __repr__(self) -> str:
        return f"State({', '.join(f'{s.name}: {s.dtype}{list(s.shape)}' for s in self.specs)})"


class Method:
    """One callable function of a bundle (e.g. "prefill", "decode", "forward")."""

    def __init__(self, native: Any) -> None:
        self._native = native
        self.input_specs = _specs(native.input_specs)
        self.output_specs = _specs(native.output_specs)
        self.state_specs = _specs(native.state_specs)

    @property
    def name(self) -> str:
        return self._native.name

    def make_state(self) -> State:
        """Zero-filled states for `execute(..., state=)`; an empty State for a stateless method."""
        return State(self._native.make_state())

    def execute(
        self, inputs: Mapping[str, Any] | Sequence[Any], state: State | None = None
    ) -> dict[str, np.ndarray]:
        """Run on arrays given by name (dict) or position (list); returns outputs by name.

        Arrays may be numpy arrays, torch tensors or anything numpy can view.
        With `state` (from `make_state()`), the states are read and updated in
        it. Without, a stateful method takes its states as optional inputs
        (zeros when omitted) and returns the updated ones with the outputs,
        copying every state in and out on each call.
        """
        # Conversions only: the native module checks the inputs, once.
        if isinstance(inputs, Mapping) and not isinstance(inputs, dict):
            inputs = dict(inputs)
        elif isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes, list, tuple)):
            inputs = list(inputs)
        if state is not None and not isinstance(state, State):
            raise InputError(
                f"method '{self.name}': state must be a State from make_state(), got {type(state).__name__}"
            )
        return self._native.execute(inputs, None if state is None else state._native)

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        return self.execute(inputs)

    def __repr__(self) -> str:
        ins = ", ".join(
            f"{s.name}: {s.dtype}{'[?]' if s.shape is None else list(s.shape)}" for s in self.input_specs
        )
        return f"Method({self.name!r}, inputs=[{ins}])"


class Runtime:
    """An opened bundle. `backend`: "auto" (Core ML on Apple, the portable
    interpreter elsewhere), "mil" (the interpreter) or "coreml"."""

    def __init__(self, native: Any, path: Path) -> None:
        self._native = native
        self.path = path
        self._methods: dict[str, Method] = {}

    @classmethod
    def load(
        cls,
        path: str | Path,
        backend: str = "auto",
        *,
        compute_units: str = "all",
        cache_dir: str | Path | None = None,
        mmap: bool = True,
        verify: bool = False,
    ) -> Runtime:
        """Open the bundle at `path`. `compute_units` ("all", "cpu_only",
        "cpu_and_gpu", "cpu_and_ne") and `cache_dir` (where the compiled
        .mlmodelc is kept) apply to the Core ML backend only.

        `mmap` (interpreter): map weight.bin, sharing its pages and reading them
        on demand, or (False) read it into memory, so a weight file truncated or
        overwritten while the Runtime is open cannot crash the process or change
        its results. `verify`: check weight.bin against the SHA-256 recorded at
        export (BundleError if it differs, or if the bundle records none)."""
        if not isinstance(backend, str):
            raise InputError(f"backend must be a string (auto, mil or coreml), got {type(backend).__name__}")
        from staticllm.staging import ensure_present

        ensure_present(path)
        options = _core.CoreMLOptions()
        options.compute_units = compute_units
        options.cache_dir = "" if cache_dir is None else str(cache_dir)
        native = _core.Runtime.load(str(path), backend, options, mmap=bool(mmap), verify=bool(verify))
        return cls(native, Path(path))

    @property
    def method_names(self) -> list[str]:
        return list(self._native.method_names)

    @property
    def default_method(self) -> str:
        return self._native.default_method

    @property
    def backend(self) -> str:
        return self._native.backend

    @property
    def metadata(self) -> dict[str, Any]:
        return self._native.metadata

    def method(self, name: str | None = None) -> Method:
        """The method called `name` (the default method if None)."""
        name = self.default_method if name is None else name
        if not isinstance(name, str):
            raise InputError(f"method name must be a string, got {type(name).__name__}")
        if name not in self._methods:
            self._methods[name] = Method(self._native.method(name))
        return self._methods[name]

    def __repr__(self) -> str:
        return f"Runtime({str(self.path)!r}, backend={self.backend!r}, methods={self.method_names})"


def verify_weights(bundle: str | Path) -> None:
    """Check the bundle's weight.bin against the SHA-256 recorded in its
    metadata.json; BundleError if it differs or the bundle records none."""
    _core.verify_weights(str(bundle))
