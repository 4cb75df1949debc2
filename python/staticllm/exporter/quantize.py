"""Weight quantization of converted functions, in the forms Apple recommends.

Every mode is one coremltools 9 compression op that both Core ML and the
interpreter run:

- ``int8``: linear symmetric int8, one scale per output channel
  (constexpr_blockwise_shift_scale).
- ``int4``: linear symmetric int4, one scale per block of ``block_size`` input
  channels (Apple's macOS preset: blocks of 32).
- ``palettize4`` / ``palettize6``: a 16- or 64-entry lookup table found by
  k-means for each group of ``group_size`` output channels
  (constexpr_lut_to_dense; Apple's iOS preset groups channels).

A `QuantPlan` says which mode each weight gets: a default for the body, the
embeddings and the LM head chosen separately, then rules from a config file
(`quantize_config`). Only the 2-D weights of the linear layers and of the
embedding are ever quantized; norm weights, biases and rotary tables stay as
they are.

Quantization runs on each converted function before the merge (coremltools
refuses to quantize multifunction packages). K-means results are cached by
weight content, so the second function of a pair costs nothing and gets
bit-identical tables, which the merge then stores once.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from staticllm.errors import ExportError

MODES = ("none", "int8", "int4", "palettize4", "palettize6")
PALETTE_BITS = {"palettize4": 4, "palettize6": 6}
DEFAULT_BLOCK_SIZE = 32  # int4: input channels per scale (Apple's macOS preset)
DEFAULT_GROUP_SIZE = 16  # palettize: output channels per lookup table


def check_mode(mode: str, where: str = "quantize mode") -> None:
    if mode not in MODES:
        raise ExportError(f"unknown {where} {mode!r}; choose one of {', '.join(MODES)}")


@dataclass(frozen=True)
class QuantSpec:
    """One weight's quantization: a mode and the option that mode takes."""

    mode: str
    block_size: int | None = None  # int4 only
    group_size: int | None = None  # palettize only

    def __post_init__(self) -> None:
        check_mode(self.mode)
        for name in ("block_size", "group_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ExportError(f"{name} must be a positive integer, got {value!r}")

    def resolved(self) -> QuantSpec:
        """The same spec with the mode's default option filled in and the
        other mode's option dropped."""
        if self.mode == "int4":
            return QuantSpec("int4", block_size=self.block_size or DEFAULT_BLOCK_SIZE)
        if self.mode in PALETTE_BITS:
            return QuantSpec(self.mode, group_size=self.group_size or DEFAULT_GROUP_SIZE)
        return QuantSpec(self.mode)

    def to_dict(self) -> dict[str, Any]:
        r = self.resolved()
        d: dict[str, Any] = {"mode": r.mode}
        if r.block_size is not None:
            d["block_size"] = r.block_size
        if r.group_size is not None:
            d["group_size"] = r.group_size
        return d

    def describe(self) -> str:
        r = self.resolved()
        if r.block_size is not None:
            return f"{r.mode} (blocks of {r.block_size})"
        if r.group_size is not None:
            return f"{r.mode} (groups of {r.group_size} channels)"
        return r.mode


@dataclass(frozen=True)
class Weight:
    """A quantizable weight of the model, named as in the torch model."""

    name: str  # e.g. "model.layers.3.self_attn.q_proj.weight", "model.embed_tokens.weight"
    shape: tuple[int, ...]
    layer: int | None  # None for the embeddings and the LM head
    roles: frozenset[str]  # {"body"}, {"embeddings"}, {"lm_head"} or both when tied


@dataclass(frozen=True)
class Rule:
    """A config-file rule: weights matching any pattern and within the layers."""

    spec: QuantSpec
    patterns: tuple[str, ...] = ()
    layers: frozenset[int] | None = None
    where: str = "rule"  # for messages: "rules[2] (line 7)"

    def matches(self, w: Weight, program_name: str) -> bool:
        if self.layers is not None and w.layer not in self.layers:
            return False
        if not self.patterns:
            return True
        return any(
            fnmatch.fnmatchcase(w.name, p) or fnmatch.fnmatchcase(program_name, p) for p in self.patterns
        )


@dataclass(frozen=True)
class QuantPlan:
    """Which QuantSpec each weight gets; later, more specific settings win:
    default, then embeddings / lm_head, then the rules in order."""

    default: QuantSpec = QuantSpec("none")
    embeddings: QuantSpec | None = None
    lm_head: QuantSpec | None = None
    rules: tuple[Rule, ...] = field(default_factory=tuple)
    source: str | None = None  # the config file, if any

    def spec_for(self, w: Weight, program_name: str = "") -> QuantSpec:
        spec = self.default
        if "embeddings" in w.roles and "lm_head" in w.roles:
            if self.embeddings and self.lm_head and self.embeddings.resolved() != self.lm_head.resolved():
                raise ExportError(
                    f"the model ties its LM head to its embeddings ({w.name} is one tensor), so they "
                    f"cannot be quantized differently (embeddings: {self.embeddings.describe()}, "
                    f"lm_head: {self.lm_head.describe()}); set only one of them"
                )
            spec = self.embeddings or self.lm_head or spec
        elif "embeddings" in w.roles and self.embeddings:
            spec = self.embeddings
        elif "lm_head" in w.roles and self.lm_head:
            spec = self.lm_head
        for rule in self.rules:
            if rule.matches(w, program_name):
                spec = rule.spec
        return spec.resolved()

    @property
    def is_none(self) -> bool:
        specs = [self.default, self.embeddings, self.lm_head, *(r.spec for r in self.rules)]
        return all(s is None or s.mode == "none" for s in specs)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"default": self.default.to_dict()}
        if self.embeddings:
            d["embeddings"] = self.embeddings.to_dict()
        if self.lm_head:
            d["lm_head"] = self.lm_head.to_dict()
        if self.rules:
            d["rules"] = [
                {
                    **({"patterns": list(r.patterns)} if r.patterns else {}),
                    **({"layers": sorted(r.layers)} if r.layers is not None else {}),
                    **r.spec.to_dict(),
                }
                for r in self.rules
            ]
        if self.source:
            d["config_file"] = self.source
        return d


def describe_plan(plan: dict[str, Any]) -> str:
    """'palettize4 (group_size 16), embeddings int8' from the recorded plan."""

    def one(spec: dict[str, Any]) -> str:
        opts = ", ".join(f"{k} {v}" for k, v in spec.items() if k != "mode")
        return f"{spec['mode']} ({opts})" if opts else spec["mode"]

    if not plan:
        return "none"
    parts = [one(plan["default"])]
    parts += [f"{key} {one(plan[key])}" for key in ("embeddings", "lm_head") if key in plan]
    if "rules" in plan:
        parts.append(f"{len(plan['rules'])} rule(s) from {plan.get('config_file')}")
    return ", ".join(parts)


def make_plan(
    quantize: str | QuantPlan = "none",
    *,
    group_size: int | None = None,
    block_size: int | None = None,
    embeddings: str | None = None,
    lm_head: str | None = None,
    config: Any = None,
) -> QuantPlan:
    """The plan from export()'s options; a config file (path) refines it."""
    if isinstance(quantize, QuantPlan):
        plan = quantize
    else:
        check_mode(quantize)

        def spec(mode: str | None, what: str) -> QuantSpec | None:
            if mode is None:
                return None
            check_mode(mode, f"{what} mode")
            return QuantSpec(mode, block_size=block_size, group_size=group_size)

        plan = QuantPlan(
            default=QuantSpec(quantize, block_size=block_size, group_size=group_size),
            embeddings=spec(embeddings, "embeddings"),
            lm_head=spec(lm_head, "lm_head"),
        )
    if config is not None:
        from staticllm.exporter.quantize_config import load_plan

        plan = load_plan(config, base=plan)
    return plan


_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def quantizable_weights(model: Any) -> list[Weight]:
    """The 2-D weights of the embedding and of every linear layer, in model order."""
    tied = bool(model.cfg.tied_embeddings)
    out = []
    for name, p in model.named_parameters():
        if p.ndim != 2:
            continue  # norms and biases stay unquantized
        if name == model.embedding_name:
            roles = {"embeddings", "lm_head"} if tied else {"embeddings"}
        elif name == model.lm_head_name:
            roles = {"lm_head"}
        else:
            roles = {"body"}
        m = _LAYER.search(name)
        out.append(Weight(name, tuple(p.shape), int(m.group(1)) if m else None, frozenset(roles)))
    return out


def _op_config(spec: QuantSpec) -> Any:
    import coremltools.optimize.coreml as cto

    # weight_threshold=0: the plan, not a size cut-off, decides what is quantized.
    if spec.mode == "int8":
        return cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=0
        )
    if spec.mode == "int4":
        return cto.OpLinearQuantizerConfig(
            mode="linear_symmetric",
            dtype="int4",
            granularity="per_block",
            block_size=spec.block_size,
            weight_threshold=0,
        )
    return cto.OpPalettizerConfig(
        mode="kmeans",
        nbits=PALETTE_BITS[spec.mode],
        granularity="per_grouped_channel",
        group_size=spec.group_size,
        weight_threshold=0,
    )


def _check_fits(w: Weight, spec: QuantSpec) -> None:
    """coremltools skips a weight whose shape the blocks do not tile, with
    only a log line; here that is an error that says what to change."""
    if spec.block_size is not None and w.shape[1] % spec.block_size:
        raise ExportError(
            f"int4 block size {spec.block_size} does not divide the {w.shape[1]} input channels of "
            f"{w.name} {list(w.shape)}; choose a block size that divides every weight's input size"
        )
    if spec.group_size is not None and w.shape[0] % spec.group_size:
        raise ExportError(
            f"palettization group size {spec.group_size} does not divide the {w.shape[0]} output channels "
            f"of {w.name} {list(w.shape)}; choose a group size that divides every weight's output size"
        )


Resolved = dict[str, tuple[Weight, QuantSpec]]  # const op name in the program -> weight, spec


def program_name(w: Weight, dtype: str) -> str:
    """The const op that holds `w` in the converted program (coremltools
    names it after the torch parameter, plus the fp16 cast it folded)."""
    flat = w.name.replace(".", "_")
    return f"{flat}_to_fp16" if dtype == "fp16" else flat


def resolve(plan: QuantPlan, weights: list[Weight], dtype: str) -> Resolved:
    """Every quantizable weight's spec, checked before any conversion runs."""
    out = {}
    for w in weights:
        name = program_name(w, dtype)
        spec = plan.spec_for(w, name)
        _check_fits(w, spec)
        out[name] = (w, spec)
    return out


def quantize_all(models: list[Any], resolved: Resolved, progress: bool = False) -> list[Any]:
    """Each MLModel with its weights quantized as resolved. The k-means
    tables are computed once for all of them (a progress bar counts them)."""
    todo = {n: ws for n, ws in resolved.items() if ws[1].mode != "none"}
    if not todo:
        return models
    from tqdm.auto import tqdm

    for m in models:
        consts = {
            op.name for f in m._mil_program.functions.values() for op in f.operations if op.op_type == "const"
        }
        missing = sorted(set(todo) - consts)
        if missing:
            raise ExportError(f"weights not found in the converted program: {missing[:5]}")
    groups = len(models) * sum(w.shape[0] // s.group_size for w, s in todo.values() if s.group_size)
    bar = tqdm(total=groups, desc="palettize", unit="table", disable=not progress or groups == 0, leave=False)
    try:
        with kmeans_cache(bar.update):
            return [_quantize_one(m, todo) for m in models]
    finally:
        bar.close()


def _quantize_one(mlmodel: Any, specs: Resolved) -> Any:
    import coremltools.optimize.coreml as cto

    linear = {n: _op_config(s) for n, (_, s) in specs.items() if s.mode in ("int8", "int4")}
    palette = {n: _op_config(s) for n, (_, s) in specs.items() if s.mode in PALETTE_BITS}
    # Every other const is named with None, so nothing outside the plan changes.
    everything = {op.name: None for f in mlmodel._mil_program.functions.values() for op in f.operations}
    if linear:
        mlmodel = cto.linear_quantize_weights(
            mlmodel, cto.OptimizationConfig(op_name_configs={**everything, **linear})
        )
    if palette:
        mlmodel = cto.palettize_weights(
            mlmodel, cto.OptimizationConfig(op_name_configs={**everything, **palette})
        )
    return mlmodel


def kmeans_1d(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(table of k centers, index of each value's center) by Lloyd's k-means.

    In one dimension every cluster is an interval of the sorted values, so
    after one sort a step costs O(k log n): boundaries are searchsorted
    midpoints, cluster means and squared errors come from prefix sums.
    Lloyd's finds a local optimum, so it runs from three starts and keeps the
    best: the high-resolution optimum (center density proportional to the
    cube root of the values' density) estimated from equal-width and from
    equal-count bins, and equal-count intervals.
    """
    flat = values.reshape(-1).astype(np.float64)
    x = np.sort(flat)
    n = len(x)
    distinct = x[np.concatenate([[True], x[1:] != x[:-1]])]
    if len(distinct) <= k:
        table = np.zeros(k)
        table[: len(distinct)] = distinct
        return table, np.searchsorted(distinct, flat)
    sums = (np.concatenate([[0.0], np.cumsum(x)]), np.concatenate([[0.0], np.cumsum(x * x)]))
    targets = (np.arange(k) + 0.5) / k
    hist, width_edges = np.histogram(x, bins=min(8 * k, n))
    width_cdf = np.concatenate([[0.0], np.cumsum(np.cbrt(hist))])
    # equal-count bins: a bin's density is 1 / its width, so its share of
    # density^(1/3) is width^(2/3): heavy tails get centers, empty space none
    count_edges = x[np.linspace(0, n - 1, min(8 * k, n) + 1).round().astype(int)]
    count_cdf = np.concatenate([[0.0], np.cumsum(np.diff(count_edges) ** (2 / 3))])
    starts = [
        np.interp(targets, width_cdf / width_cdf[-1], width_edges),
        np.interp(targets, count_cdf / count_cdf[-1], count_edges),
        x[(targets * (n - 1)).astype(int)],
    ]
    centers, _ = min((_lloyd(x, sums, c) for c in starts), key=lambda r: r[1])
    return centers, np.searchsorted((centers[1:] + centers[:-1]) / 2, flat, side="left")


def _lloyd(
    x: np.ndarray, sums: tuple[np.ndarray, np.ndarray], centers: np.ndarray, max_iters: int = 300
) -> tuple[np.ndarray, float]:
    """Lloyd's iterations on sorted x from `centers`: (centers, squared error)."""
    s1, s2 = sums
    n = len(x)
    bounds = np.searchsorted(x, (centers[1:] + centers[:-1]) / 2, side="right")
    for _ in range(max_iters + 1):
        lo, hi = np.concatenate([[0], bounds]), np.concatenate([bounds, [n]])
        count = hi - lo
        total = s1[hi] - s1[lo]
        centers = np.where(count > 0, total / np.maximum(count, 1), centers)
        centers = np.maximum.accumulate(centers)  # an emptied cluster keeps the order
        moved = np.searchsorted(x, (centers[1:] + centers[:-1]) / 2, side="right")
        if np.array_equal(moved, bounds):
            break
        bounds = moved
    error = float(np.sum(s2[hi] - s2[lo] - 2 * centers * total + count * centers * centers))
    return centers, error


@contextlib.contextmanager
def kmeans_cache(on_group: Callable[[], Any] | None = None) -> Iterator[None]:
    """Routes coremltools' per-group k-means through kmeans_1d, cached by the
    group's bytes while the context lasts, so the functions of a
    multifunction export get bit-identical tables that the merge stores once.

    coremltools' own per-group k-means is scikit-learn's KMeans (not a
    dependency here) or, for fp16 groups above 10,000 values, a vendored
    exact 1-D solver that takes about 40 ms a group: ten minutes for the
    12,800 groups of a 135M model, against seconds for this one.
    """
    from coremltools.optimize.coreml._quantization_passes import palettize_weights

    original = palettize_weights.__dict__["_get_lut_and_indices"]
    cache: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}

    def lut_and_indices(
        val: np.ndarray,
        mode: str,
        nbits: int | None,
        lut_function: Any,
        cluster_dim: int = 1,
        vector_axis: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        if mode != "KMEANS" or cluster_dim != 1 or nbits is None:
            return original.__func__(val, mode, nbits, lut_function, cluster_dim, vector_axis)
        key = (hashlib.blake2b(val.tobytes(), digest_size=16).digest(), val.shape, str(val.dtype), nbits)
        hit = cache.get(key)
        if hit is None:
            lut, indices = kmeans_1d(val, 1 << nbits)
            hit = (lut.astype(val.dtype), indices.astype(np.uint8))
            cache[key] = hit
        if on_group is not None:
            on_group()
        return hit

    palettize_weights._get_lut_and_indices = staticmethod(lut_and_indices)
    try:
        yield
    finally:
        palettize_weights._get_lut_and_indices = original
