"""Weight quantization of converted functions, in the forms Apple recommends.

Every mode is one coremltools 9 compression op that both Core ML and the
interpreter run:

- ``int8``: linear symmetric int8, one scale per output channel
  (constexpr_blockwise_shift_scale).
- ``int4``: linear symmetric int4, one scale per block of ``block_size`` input
  channels (Apple's macOS preset: blocks of 32).
- ``palettize4`` / ``palettize6``: a 16- or 64-entry lookup table found by
  k-means for each group of ``group_size`` output channels (default 1: a
  table per channel; constexpr_lut_to_dense, Apple's per_grouped_channel).
  The k-means weighs each value's squared error by its input channel's mean
  square activation on the calibration text (`quantize_importance`).

A `QuantPlan` says which mode each weight gets: a default for the body, the
embeddings and the LM head chosen separately (int8 under a 4-bit body unless
chosen), then rules from a config file (`quantize_config`). Only the 2-D
weights of the linear layers and of the embedding are ever quantized; norm
weights, biases and rotary tables stay as they are.

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from staticllm.errors import ExportError

MODES = ("none", "int8", "int4", "palettize4", "palettize6")
PALETTE_BITS = {"palettize4": 4, "palettize6": 6}
FOUR_BIT = ("int4", "palettize4")
# With a 4-bit body, the embeddings and LM head are int8 unless chosen: one
# tensor that every logit is a dot product with (tied in small models) is where
# 4 bits cost most; on SmolLM2-135M it is a fifth of the weights.
ENDS_WITH_4BIT_BODY = "int8"
DEFAULT_BLOCK_SIZE = 32  # int4: input channels per scale (Apple's macOS preset)
DEFAULT_GROUP_SIZE = 1  # palettize: output channels per lookup table (one table per channel)


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

    @property
    def ends(self) -> QuantSpec:
        """The spec of the embeddings and LM head when not chosen: int8 with a
        4-bit body, else the body's."""
        return QuantSpec(ENDS_WITH_4BIT_BODY) if self.default.mode in FOUR_BIT else self.default

    def spec_for(self, w: Weight, program_name: str = "") -> QuantSpec:
        spec = self.default
        if "embeddings" in w.roles and "lm_head" in w.roles:
            if self.embeddings and self.lm_head and self.embeddings.resolved() != self.lm_head.resolved():
                raise ExportError(
                    f"the model ties its LM head to its embeddings ({w.name} is one tensor), so they "
                    f"cannot be quantized differently (embeddings: {self.embeddings.describe()}, "
                    f"lm_head: {self.lm_head.describe()}); set only one of them"
                )
            spec = self.embeddings or self.lm_head or self.ends
        elif "embeddings" in w.roles:
            spec = self.embeddings or self.ends
        elif "lm_head" in w.roles:
            spec = self.lm_head or self.ends
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
        for key, spec in (("embeddings", self.embeddings), ("lm_head", self.lm_head)):
            if spec or self.ends != self.default:
                d[key] = (spec or self.ends).to_dict()
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


def quantize_all(
    models: list[Any],
    resolved: Resolved,
    progress: bool = False,
    importance: dict[str, np.ndarray] | None = None,
) -> list[Any]:
    """Each MLModel with its weights quantized as resolved. The k-means
    tables are computed once for all of them, a weight at a time (a progress
    bar counts them), each value's error weighed by its input channel's
    `importance` (by parameter name; see quantize_importance) where given."""
    todo = {n: ws for n, ws in resolved.items() if ws[1].mode != "none"}
    if not todo:
        return models
    from tqdm.auto import tqdm

    consts = [
        {
            op.name: op
            for f in m._mil_program.functions.values()
            for op in f.operations
            if op.op_type == "const"
        }
        for m in models
    ]
    for found in consts:
        missing = sorted(set(todo) - set(found))
        if missing:
            raise ExportError(f"weights not found in the converted program: {missing[:5]}")
    palette = {n: ws for n, ws in todo.items() if ws[1].mode in PALETTE_BITS}
    bar = tqdm(
        total=len(palette), desc="palettize", unit="weight", disable=not progress or not palette, leave=False
    )
    try:
        with kmeans_cache() as cache:
            for name, (w, spec) in palette.items():
                cache.fill(
                    consts[0][name].outputs[0].val,
                    spec.group_size or 1,
                    PALETTE_BITS[spec.mode],
                    (importance or {}).get(w.name),
                )
                bar.update()
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
    """(table of k centers, index of each value's center): `kmeans_groups`
    on one group."""
    tables, indices = kmeans_groups(values.reshape(1, -1), k)
    return tables[0], indices[0]


# Values per batch of rows in kmeans_groups: its float64 working arrays (a
# dozen of this size) stay near 400 MB even for a 262,144-row embedding table.
KMEANS_BATCH_VALUES = 1 << 22


def kmeans_groups(
    groups: np.ndarray, k: int, importance: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`_kmeans_rows` over batches of rows. Every row's iterations are its
    own (a row whose boundaries stopped moving stays put), so batching
    changes no table, only the peak memory."""
    flat = np.asarray(groups).reshape(len(groups), -1)
    imp = None
    if importance is not None:
        imp = np.broadcast_to(np.asarray(importance, dtype=np.float64), np.shape(groups)).reshape(flat.shape)
    step = max(1, KMEANS_BATCH_VALUES // max(1, flat.shape[1]))
    parts = [
        _kmeans_rows(flat[i : i + step], k, None if imp is None else imp[i : i + step])
        for i in range(0, len(flat), step)
    ]
    return np.concatenate([t for t, _ in parts]), np.concatenate([i for _, i in parts])


def _kmeans_rows(
    groups: np.ndarray, k: int, importance: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means of each row of `groups` [G, n] at once:
    (tables [G, k] float64 ascending, indices [G, n] of each value's center).
    `importance` [G, n] (or broadcastable) weighs each value's squared error.

    In one dimension every cluster is an interval of the sorted values, so
    after one sort a step costs O(k log n) per row: boundaries are
    searchsorted midpoints, cluster means and squared errors come from prefix
    sums. Lloyd's finds a local optimum, so it runs from two starts and each
    row keeps its best: the high-resolution optimum (center density
    proportional to the cube root of the values' density) estimated from
    equal-width and from equal-count bins. From there 40 steps come within
    0.2 % of the converged squared error on weight-like data, and all rows
    step together, so a 135M model's tables take seconds. Rows with at most
    k distinct values get exactly those values.
    """
    import torch

    x = torch.from_numpy(np.asarray(groups, dtype=np.float64).reshape(len(groups), -1))
    xs, order = torch.sort(x, dim=1)
    if importance is None:
        ws = torch.ones_like(xs)
    else:
        imp = np.ascontiguousarray(importance, dtype=np.float64)
        ws = torch.from_numpy(imp).gather(1, order).clamp_min(1e-12)
    zero = torch.zeros(len(xs), 1, dtype=torch.float64)
    sums = tuple(torch.cat([zero, v.cumsum(1)], 1) for v in (ws, ws * xs, ws * xs * xs))
    best_c, best_err = None, None
    for start in _kmeans_starts(xs, sums[0], k):
        c, err = _lloyd(xs, sums, start)
        if best_c is None or best_err is None:
            best_c, best_err = c, err
        else:
            best_c = torch.where((err < best_err)[:, None], c, best_c)
            best_err = torch.minimum(err, best_err)
    assert best_c is not None
    indices = torch.searchsorted((best_c[:, 1:] + best_c[:, :-1]) / 2, x.contiguous(), side="left")
    tables, idx = best_c.numpy(), indices.numpy()
    distinct = (np.diff(xs.numpy(), axis=1) != 0).sum(1) + 1
    for row in np.flatnonzero(distinct <= k):  # exact: a table of the distinct values
        values = np.unique(xs[row].numpy())
        tables[row] = np.concatenate([values, np.full(k - len(values), values[-1])])
        idx[row] = np.searchsorted(values, x[row].numpy())
    return tables, idx


def _kmeans_starts(xs: Any, mass: Any, k: int) -> list[Any]:
    """The starting tables [G, k] for sorted rows xs [G, n] whose values
    weigh mass[:, i + 1] - mass[:, i] (prefix sums of the importance)."""
    import torch

    g, n = xs.shape
    bins = min(8 * k, n)
    targets = ((torch.arange(k, dtype=torch.float64) + 0.5) / k).expand(g, k).contiguous()

    def interp(cdf: Any, edges: Any) -> Any:  # edges at the targets of a cdf [G, bins + 1]
        cdf = cdf / cdf[:, -1:].clamp_min(1e-300)
        i = torch.searchsorted(cdf, targets).clamp(1, cdf.shape[1] - 1)
        c0, c1 = cdf.gather(1, i - 1), cdf.gather(1, i)
        e0, e1 = edges.gather(1, i - 1), edges.gather(1, i)
        return e0 + (e1 - e0) * ((targets - c0) / (c1 - c0).clamp_min(1e-300)).clamp(0, 1)

    zero = torch.zeros(g, 1, dtype=torch.float64)
    lo, hi = xs[:, :1], xs[:, -1:]
    width_edges = lo + (hi - lo) * torch.arange(bins + 1, dtype=torch.float64) / bins
    at = torch.searchsorted(xs, width_edges.contiguous(), side="right")
    width_mass = mass.gather(1, at).diff(dim=1).clamp_min(0)
    width_cdf = torch.cat([zero, width_mass.pow(1 / 3).cumsum(1)], 1)
    # equal-mass bins: a bin's density is 1 / its width, so its share of
    # density^(1/3) is width^(2/3): heavy tails get centers, empty space none
    levels = mass[:, -1:] * torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    count_edges = xs.gather(
        1, torch.searchsorted(mass[:, 1:].contiguous(), levels.contiguous()).clamp(0, n - 1)
    )
    count_cdf = torch.cat([zero, count_edges.diff(dim=1).pow(2 / 3).cumsum(1)], 1)
    return [interp(width_cdf, width_edges), interp(count_cdf, count_edges)]


def _lloyd(xs: Any, sums: tuple[Any, ...], centers: Any, max_iters: int = 40) -> tuple[Any, Any]:
    """Weighted Lloyd's iterations on sorted rows xs from `centers`, with
    prefix sums of (weight, weight * x, weight * x^2): (centers, weighted
    squared error per row)."""
    import torch

    s0, s1, s2 = sums
    g, n = xs.shape
    zero, end = torch.zeros(g, 1, dtype=torch.long), torch.full((g, 1), n, dtype=torch.long)

    def bounds_of(c: Any) -> Any:
        return torch.searchsorted(xs, ((c[:, 1:] + c[:, :-1]) / 2).contiguous(), side="right")

    bounds = bounds_of(centers)
    for _ in range(max_iters + 1):
        lo, hi = torch.cat([zero, bounds], 1), torch.cat([bounds, end], 1)
        mass = s0.gather(1, hi) - s0.gather(1, lo)
        total = s1.gather(1, hi) - s1.gather(1, lo)
        centers = torch.where(hi > lo, total / mass.clamp_min(1e-300), centers)
        centers = torch.cummax(centers, dim=1).values  # an emptied cluster keeps the order
        moved = bounds_of(centers)
        if torch.equal(moved, bounds):
            break
        bounds = moved
    error = (s2.gather(1, hi) - s2.gather(1, lo) - 2 * centers * total + mass * centers * centers).sum(1)
    return centers, error


class KMeansCache:
    """Palette tables by the bytes of the group of channels they encode."""

    def __init__(self) -> None:
        self.tables: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}

    @staticmethod
    def key(group: np.ndarray, nbits: int) -> tuple[Any, ...]:
        digest = hashlib.blake2b(np.ascontiguousarray(group).tobytes(), digest_size=16).digest()
        return (digest, group.shape, str(group.dtype), nbits)

    def fill(
        self, weight: np.ndarray, group_size: int, nbits: int, importance: np.ndarray | None = None
    ) -> None:
        """The tables of every group of `group_size` output channels of
        `weight` [out, in] in one batched k-means, as coremltools will ask for
        them; `importance` [in] weighs each input channel's errors."""
        groups = np.split(weight, weight.shape[0] // group_size, axis=0)
        weights = None if importance is None else np.tile(importance, group_size)[None, :]
        tables, indices = kmeans_groups(weight.reshape(len(groups), -1), 1 << nbits, weights)
        for group, table, idx in zip(groups, tables, indices):
            self.tables[self.key(group, nbits)] = (table.astype(weight.dtype), idx.astype(np.uint8))

    def get(self, group: np.ndarray, nbits: int) -> tuple[np.ndarray, np.ndarray]:
        key = self.key(group, nbits)
        hit = self.tables.get(key)
        if hit is None:  # a group fill() did not foresee: computed on its own
            table, idx = kmeans_1d(group, 1 << nbits)
            hit = self.tables[key] = (table.astype(group.dtype), idx.astype(np.uint8))
        return hit


@contextlib.contextmanager
def kmeans_cache() -> Iterator[KMeansCache]:
    """Routes coremltools' per-group k-means through a KMeansCache while the
    context lasts: tables filled a weight at a time by `kmeans_groups`, and
    the functions of a multifunction export get bit-identical tables that
    the merge stores once.

    coremltools' own per-group k-means is scikit-learn's KMeans (not a
    dependency here) or, for fp16 groups above 10,000 values, a vendored
    exact 1-D solver that takes about 40 ms a group: ten minutes for the
    12,800 groups of a 135M model in groups of 16 channels, hours for the
    200,000 of one table per channel.
    """
    from coremltools.optimize.coreml._quantization_passes import palettize_weights

    original = palettize_weights.__dict__["_get_lut_and_indices"]
    cache = KMeansCache()

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
        return cache.get(val, nbits)

    palettize_weights._get_lut_and_indices = staticmethod(lut_and_indices)
    try:
        yield cache
    finally:
        palettize_weights._get_lut_and_indices = original
