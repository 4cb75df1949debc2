"""The `llm` section of metadata.json: the one module that writes it (export)
and reads it (the generation loop, inspect). docs/llm_section.md describes it.

The generation loop takes every name, length and layout from here; it never
guesses from tensor names. Facts the methods' own specs already state are
not repeated: the compute dtype is the cache inputs' dtype, and each method's
row count lives only in `methods.<name>.input_len`. Format 1 bundles, which
still carry `cache_len`, `dtype` and `prefill_input_len`/`decode_input_len`,
stay readable; those keys are checked against the facts they repeat.
Format 3 describes each layer's cache length and attention window (sliding
windows as ring buffers); formats 1 and 2 have one full-length group.
Format 4 adds what a Neural Engine bundle (export --target ane) needs: the
finite value masks are filled with (`mask_value`), rotary cos/sin inputs
computed from positions instead of `input_pos` (`io.rope`), and an LM head
in chunks or reduced to a top-k per chunk in the model (`head`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from staticllm.bundle_layout import METADATA
from staticllm.errors import MetadataError

FORMAT = 4  # what export writes
READABLE_FORMATS = (1, 2, 3, 4)
LOGITS_MODES = ("last", "full")
HEAD_MODES = ("logits", "argmax", "topk")
CACHE_LAYOUT = "batch_heads_seq_dim"


# ------------------------------------------------------------ graph contract


@dataclass(frozen=True)
class RopeInput:
    """A pair of rotary inputs the runner fills (`io.rope`): row j of `cos`
    and `sin` [1, L, len(inv_freq)] holds cos(p_j * inv_freq) * scale and
    sin(p_j * inv_freq) * scale for the row's position p_j."""

    cos: str
    sin: str
    inv_freq: tuple[float, ...]
    scale: float  # on cos and sin (longrope's attention factor; 1 otherwise)


@dataclass(frozen=True)
class Head:
    """What the LM head returns. "logits": the vocabulary's logits, as one
    output or in chunks the runner concatenates in order; "argmax" / "topk":
    per chunk of the vocabulary the k largest logits (argmax: k = 1), as two
    outputs [..., chunks * k]: their values and their vocabulary ids."""

    mode: str
    k: int  # candidates per chunk; 0 for logits
    outputs: tuple[str, ...]  # logits: the chunks in vocabulary order; else (values, indices)

    @property
    def full_logits(self) -> bool:
        return self.mode == "logits"


@dataclass(frozen=True)
class GraphIO:
    """The tensor names of the graph contract, by role. The role names are the
    field names, which are also the keys of `llm.io` (the cache names live in
    `llm.cache.inputs` / `llm.cache.outputs`, a chunked or top-k head's in
    `llm.head`)."""

    tokens: str
    input_pos: str | None  # None: the graph takes rotary inputs (rope) instead
    attn_masks: tuple[str, ...]  # one per cache group (CacheGroup.mask), in group order
    last_index: str | None  # None: no method takes one
    logits: str | None  # the one full-vocabulary output; None when `head` says otherwise
    cache_inputs: tuple[str, ...]  # k_cache_0, v_cache_0, k_cache_1, ...
    cache_outputs: tuple[str, ...]  # k_out_0, v_out_0, k_out_1, ...
    rope: tuple[RopeInput, ...] = ()  # the rotary inputs, one pair per table
    head: Head | None = None  # None: the single `logits` output

    def inputs(self, with_last_index: bool) -> list[str]:
        """A method's inputs in graph order (docs/llm_section.md)."""
        names = [self.tokens]
        names += (
            [self.input_pos] if self.input_pos is not None else [n for r in self.rope for n in (r.cos, r.sin)]
        )
        names += self.attn_masks
        if with_last_index:
            if self.last_index is None:
                raise ValueError("this graph has no last_index input")
            names.append(self.last_index)
        return names + list(self.cache_inputs)

    def head_spec(self) -> Head:
        """The head, the single `logits` output included."""
        if self.head is not None:
            return self.head
        assert self.logits is not None
        return Head("logits", 0, (self.logits,))

    def outputs(self) -> list[str]:
        """A method's outputs in graph order."""
        return [*self.head_spec().outputs, *self.cache_outputs]

    def roles(self) -> dict[str, Any]:
        """The `llm.io` object: role -> tensor name for the single tensors, and the rotary inputs."""
        io: dict[str, Any] = {r: getattr(self, r) for r in _SINGLE_ROLES if getattr(self, r) is not None}
        if self.rope:
            io["rope"] = [
                {"cos": r.cos, "sin": r.sin, "inv_freq": list(r.inv_freq), "scale": r.scale}
                for r in self.rope
            ]
        return io


_SINGLE_ROLES = ("tokens", "input_pos", "last_index", "logits")
FULL_MASK = "attn_mask"  # the mask of the layers that see every earlier position


@dataclass(frozen=True)
class CacheGroup:
    """Layers whose caches have one length and one attention window, and the
    mask input they share. A windowed group's caches are rings of `length`
    slots; a row at position p sees positions p - window < q <= p."""

    mask: str
    length: int
    window: int | None  # None: every earlier position
    layers: tuple[int, ...]


def cache_groups(windows: Sequence[int | None], max_context_len: int) -> tuple[CacheGroup, ...]:
    """The groups of layers with `windows[i]` (None: full attention): full
    layers first, with max_context_len slots; a windowed layer holds exactly
    its window, the positions the next call's first row may still see."""
    distinct = sorted({w for w in windows if w is not None})
    groups = []
    if None in windows:
        groups.append(CacheGroup(FULL_MASK, max_context_len, None, _layers(windows, None)))
    for w in distinct:
        name = "attn_mask_sliding" if len(distinct) == 1 else f"attn_mask_sliding_{w}"
        groups.append(CacheGroup(name, w, w, _layers(windows, w)))
    return tuple(groups)


def _layers(windows: Sequence[int | None], w: int | None) -> tuple[int, ...]:
    return tuple(i for i, x in enumerate(windows) if x == w)


def graph_io(
    n_layers: int,
    groups: Sequence[CacheGroup] = (),
    rope: Sequence[tuple[Sequence[float], float]] = (),
    head: tuple[str, int, int] = ("logits", 0, 1),
) -> GraphIO:
    """The names every exported graph uses; conversion, the bundle writer and
    (through the llm section) the runner all take them from here. Without
    groups, every layer attends to its whole cache through `attn_mask`.

    `rope`: (inverse frequencies, scale) of each rotary table the graph takes
    as inputs (none: it takes `input_pos`). `head`: (mode, k, chunks)."""
    mode, k, chunks = head
    plain = mode == "logits" and chunks == 1
    if mode == "logits":
        outputs = ("logits",) if plain else tuple(f"logits_{c}" for c in range(chunks))
    else:
        outputs = ("topk_values", "topk_indices")
    return GraphIO(
        tokens="tokens",
        input_pos=None if rope else "input_pos",
        attn_masks=tuple(g.mask for g in groups) or (FULL_MASK,),
        last_index="last_index",
        logits="logits" if plain else None,
        cache_inputs=tuple(f"{kv}_cache_{i}" for i in range(n_layers) for kv in ("k", "v")),
        cache_outputs=tuple(f"{kv}_out_{i}" for i in range(n_layers) for kv in ("k", "v")),
        rope=tuple(
            RopeInput(f"rope_cos{suffix}", f"rope_sin{suffix}", tuple(inv), scale)
            for suffix, (inv, scale) in zip(["", *(f"_{t}" for t in range(1, len(rope)))], rope)
        ),
        head=None if plain else Head(mode, k, outputs),
    )


# ----------------------------------------------------------------- the section


@dataclass(frozen=True)
class MethodInfo:
    """One method of the bundle as the runner uses it."""

    name: str
    input_len: int
    logits: str  # "last": [1, vocab]; "full": [1, input_len, vocab]


@dataclass(frozen=True)
class LLMSpec:
    """What the generation loop needs to drive a bundle's methods."""

    architecture: str
    vocab_size: int
    max_context_len: int
    groups: tuple[CacheGroup, ...]  # the layers by cache length and window; their masks
    dtype: str  # the cache inputs' dtype ("fp16" / "fp32")
    n_layers: int
    n_kv_heads: int
    head_dim: int
    io: GraphIO
    methods: dict[str, MethodInfo]
    prefill_method: str
    decode_method: str
    bos: int | None
    eos: tuple[int, ...]
    pad: int | None
    tokenizer: str | None
    tokenizer_config: str | None
    mask_value: float = -math.inf  # what masked entries of the attention masks hold

    @property
    def multifunction(self) -> bool:
        """True when prompt and generation run through different methods."""
        return self.prefill_method != self.decode_method

    @property
    def context_limit(self) -> int:
        """Most tokens (prompt + generated) one generation may hold.

        A call starting at position q needs positions 0..q-1 in the caches of
        full-attention layers, so nothing may wrap their ring (a windowed
        layer's ring wraps by design); and rotary tables end at max_context_len.
        """
        return min([self.max_context_len, *(g.length for g in self.groups if g.window is None)])

    def cache_shape(self, group: CacheGroup) -> tuple[int, int, int, int]:
        return (1, self.n_kv_heads, group.length, self.head_dim)

    def group_caches(self, group: CacheGroup) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(cache inputs, cache outputs) of a group's layers, k and v per layer."""
        ins, outs = self.io.cache_inputs, self.io.cache_outputs
        picks = [2 * i + kv for i in group.layers for kv in (0, 1)]
        return tuple(ins[j] for j in picks), tuple(outs[j] for j in picks)

    def to_section(self, model: Mapping[str, Any], export_options: Mapping[str, Any]) -> dict[str, Any]:
        """The `llm` object to store in metadata.json (format FORMAT).

        `model` (the architecture's hyper-parameters) and `export_options` are
        a record for people; nothing reads them back."""
        io = self.io
        section: dict[str, Any] = {
            "format": FORMAT,
            "architecture": self.architecture,
            "vocab_size": self.vocab_size,
            "max_context_len": self.max_context_len,
            "cache": {
                "layout": CACHE_LAYOUT,
                "n_layers": self.n_layers,
                "n_kv_heads": self.n_kv_heads,
                "head_dim": self.head_dim,
                "inputs": list(io.cache_inputs),
                "outputs": list(io.cache_outputs),
                "groups": [
                    {"mask": g.mask, "length": g.length, "window": g.window, "layers": list(g.layers)}
                    for g in self.groups
                ],
            },
            "io": io.roles(),
            "methods": {
                m.name: {"input_len": m.input_len, "logits": m.logits} for m in self.methods.values()
            },
            "prefill_method": self.prefill_method,
            "decode_method": self.decode_method,
            "special_tokens": {"bos": self.bos, "eos": list(self.eos), "pad": self.pad},
            "model": dict(model),
            "export_options": dict(export_options),
        }
        if math.isfinite(self.mask_value):
            section["mask_value"] = self.mask_value
        if io.head is not None:
            head: dict[str, Any] = {"mode": io.head.mode, "outputs": list(io.head.outputs)}
            if io.head.mode == "topk":
                head["k"] = io.head.k
            section["head"] = head
        if self.tokenizer:
            section["tokenizer"] = self.tokenizer
        if self.tokenizer_config:
            section["tokenizer_config"] = self.tokenizer_config
        return section

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], where: str = METADATA) -> LLMSpec:
        """Parses `metadata["llm"]`; the methods' specs in `metadata["methods"]`
        supply the dtype. Every error names the key."""
        llm = metadata.get("llm")
        if llm is None:
            raise MetadataError(
                f"{where}: the bundle has no 'llm' section, so it cannot be used for text generation; "
                "export it with `staticllm export` (which writes one) or use staticllm.Runtime directly"
            )
        if not isinstance(llm, dict):
            raise MetadataError(f"{where}: 'llm' must be an object, got {type(llm).__name__}")
        return _parse(_Reader(llm, where), metadata.get("methods"))


# --------------------------------------------------------------------- reading


class _Reader:
    """Typed access to the section; every error names the key."""

    def __init__(self, root: dict[str, Any], where: str) -> None:
        self.root = root
        self.where = where

    def fail(self, key: str, expected: str, got: Any) -> MetadataError:
        return MetadataError(f"{self.where}: llm.{key}: expected {expected}, got {got!r}")

    def has(self, key: str) -> bool:
        return self.get(key, optional=True) is not None

    def get(self, key: str, optional: bool = False) -> Any:
        node: Any = self.root
        for part in key.split("."):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]  # a list item: io.rope.0.cos
                continue
            if not isinstance(node, dict) or part not in node:
                if optional:
                    return None
                raise MetadataError(f"{self.where}: missing key llm.{key}")
            node = node[part]
        return node

    def pos_int(self, key: str) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(key, "a positive integer", value)
        return value

    def opt_int(self, key: str) -> int | None:
        value = self.get(key, optional=True)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(key, "a token id (integer >= 0) or null", value)
        return value

    def string(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str) or not value:
            raise self.fail(key, "a non-empty string", value)
        return value

    def opt_string(self, key: str) -> str | None:
        return self.string(key) if self.has(key) else None

    def names(self, key: str, count: int) -> tuple[str, ...]:
        value = self.get(key)
        if not isinstance(value, list) or len(value) != count or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"a list of {count} names (k and v for each layer)", value)
        return tuple(value)


def _parse(r: _Reader, method_specs: Any) -> LLMSpec:
    fmt = r.get("format")
    if fmt not in READABLE_FORMATS:
        raise r.fail("format", f"one of {list(READABLE_FORMATS)} (the formats this version reads)", fmt)
    layout = r.get("cache.layout")
    if layout != CACHE_LAYOUT:
        raise r.fail("cache.layout", repr(CACHE_LAYOUT), layout)
    n_layers = r.pos_int("cache.n_layers")
    io = _graph_io(r, n_layers)
    methods = _methods(r)
    prefill, decode = r.string("prefill_method"), r.string("decode_method")
    for key, name in (("prefill_method", prefill), ("decode_method", decode)):
        if name not in methods:
            raise r.fail(key, f"one of the methods in llm.methods ({sorted(methods)})", name)
    max_context_len = r.pos_int("max_context_len")
    dtype = _cache_dtype(r, method_specs, decode, io.cache_inputs[0])
    if fmt >= 3:
        groups = _groups(r, n_layers, max_context_len)
    else:  # one full-length group; format 1 may have a ring shorter than the context
        cache_len = r.pos_int("cache_len") if fmt == 1 else max_context_len
        groups = (CacheGroup(r.string("io.attn_mask"), cache_len, None, tuple(range(n_layers))),)
        if fmt == 1:
            _check_format1_repeats(r, methods, prefill, decode, dtype)
    io = replace(io, attn_masks=tuple(g.mask for g in groups))
    return LLMSpec(
        architecture=r.string("architecture"),
        vocab_size=r.pos_int("vocab_size"),
        max_context_len=max_context_len,
        groups=groups,
        dtype=dtype,
        n_layers=n_layers,
        n_kv_heads=r.pos_int("cache.n_kv_heads"),
        head_dim=r.pos_int("cache.head_dim"),
        io=io,
        methods=methods,
        prefill_method=prefill,
        decode_method=decode,
        bos=r.opt_int("special_tokens.bos"),
        eos=_eos(r),
        pad=r.opt_int("special_tokens.pad"),
        tokenizer=r.opt_string("tokenizer"),
        tokenizer_config=r.opt_string("tokenizer_config"),
        mask_value=_mask_value(r),
    )


def _mask_value(r: _Reader) -> float:
    value = r.get("mask_value", optional=True)
    if value is None:
        return -math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -65504 <= value < 0:
        raise r.fail("mask_value", "a negative number an fp16 mask holds (-65504 or above)", value)
    return float(value)


def _graph_io(r: _Reader, n_layers: int) -> GraphIO:
    io = r.get("io")
    if not isinstance(io, dict):
        raise r.fail("io", "an object mapping roles to tensor names", io)
    rope = _rope(r) if r.has("io.rope") else ()
    head = _head(r) if r.has("head") else None
    return GraphIO(
        tokens=r.string("io.tokens"),
        input_pos=r.opt_string("io.input_pos") if rope else r.string("io.input_pos"),
        attn_masks=(),  # filled from the cache groups
        last_index=r.opt_string("io.last_index"),
        logits=r.opt_string("io.logits") if head else r.string("io.logits"),
        cache_inputs=r.names("cache.inputs", 2 * n_layers),
        cache_outputs=r.names("cache.outputs", 2 * n_layers),
        rope=rope,
        head=head,
    )


def _rope(r: _Reader) -> tuple[RopeInput, ...]:
    raw = r.get("io.rope")
    if not isinstance(raw, list) or not raw:
        raise r.fail("io.rope", "a non-empty list of rotary inputs", raw)
    out = []
    for i, item in enumerate(raw):
        key = f"io.rope.{i}"
        inv = item.get("inv_freq") if isinstance(item, dict) else None
        scale = item.get("scale") if isinstance(item, dict) else None
        if not isinstance(inv, list) or not inv or not all(_is_number(v) for v in inv):
            raise r.fail(f"{key}.inv_freq", "a non-empty list of numbers", inv)
        if not _is_number(scale):
            raise r.fail(f"{key}.scale", "a number", scale)
        out.append(
            RopeInput(r.string(f"{key}.cos"), r.string(f"{key}.sin"), tuple(map(float, inv)), float(scale))
        )
    return tuple(out)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _head(r: _Reader) -> Head:
    mode = r.get("head.mode")
    if mode not in HEAD_MODES:
        raise r.fail("head.mode", f"one of {list(HEAD_MODES)}", mode)
    outputs = r.get("head.outputs")
    want = "a non-empty list of output names" if mode == "logits" else "two output names (values, indices)"
    if (
        not isinstance(outputs, list)
        or not outputs
        or (mode != "logits" and len(outputs) != 2)
        or not all(isinstance(o, str) and o for o in outputs)
    ):
        raise r.fail("head.outputs", want, outputs)
    k = r.pos_int("head.k") if mode == "topk" else {"logits": 0, "argmax": 1}[mode]
    return Head(mode, k, tuple(outputs))


def _groups(r: _Reader, n_layers: int, max_context_len: int) -> tuple[CacheGroup, ...]:
    raw = r.get("cache.groups")
    if not isinstance(raw, list) or not raw:
        raise r.fail("cache.groups", "a non-empty list of cache groups", raw)
    groups, seen = [], []
    for i, g in enumerate(raw):
        key = f"cache.groups.{i}"
        if not isinstance(g, dict):
            raise r.fail(key, "an object with mask, length, window and layers", g)
        mask, window, layers = g.get("mask"), g.get("window"), g.get("layers")
        length = g.get("length")
        if not isinstance(mask, str) or not mask:
            raise r.fail(f"{key}.mask", "a non-empty string", mask)
        if isinstance(length, bool) or not isinstance(length, int) or not 0 < length <= max_context_len:
            raise r.fail(f"{key}.length", f"a slot count in 1..{max_context_len} (max_context_len)", length)
        if window is not None and window != length:
            raise r.fail(f"{key}.window", f"null or the group's length ({length})", window)
        if (
            not isinstance(layers, list)
            or not layers
            or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < n_layers for x in layers)
        ):
            raise r.fail(f"{key}.layers", f"a non-empty list of layer indices below {n_layers}", layers)
        groups.append(CacheGroup(mask, length, window, tuple(layers)))
        seen += layers
    if sorted(seen) != list(range(n_layers)):
        raise r.fail("cache.groups", f"groups holding each of the {n_layers} layers exactly once", raw)
    if len({g.mask for g in groups}) != len(groups):
        raise r.fail("cache.groups", "one mask name per group", raw)
    return tuple(groups)


def _methods(r: _Reader) -> dict[str, MethodInfo]:
    raw = r.get("methods")
    if not isinstance(raw, dict) or not raw:
        raise r.fail("methods", "an object with one entry per method", raw)
    out = {}
    for name in raw:
        mode = r.get(f"methods.{name}.logits")
        if mode not in LOGITS_MODES:
            raise r.fail(f"methods.{name}.logits", "'last' or 'full'", mode)
        out[name] = MethodInfo(name, r.pos_int(f"methods.{name}.input_len"), mode)
    return out


def _cache_dtype(r: _Reader, method_specs: Any, method: str, cache_input: str) -> str:
    """The dtype of the decode method's first cache input, from metadata.json's
    `methods` list (validated by the C++ loader before it gets here)."""
    for m in method_specs if isinstance(method_specs, list) else []:
        if isinstance(m, dict) and m.get("name") == method:
            for spec in m.get("inputs", []):
                if spec.get("name") == cache_input:
                    return str(spec["dtype"])
            raise MetadataError(
                f"{r.where}: method {method!r} has no input {cache_input!r}, the first of llm.cache.inputs"
            )
    raise MetadataError(f"{r.where}: methods has no method {method!r} (llm.decode_method)")


def _check_format1_repeats(
    r: _Reader, methods: dict[str, MethodInfo], prefill: str, decode: str, dtype: str
) -> None:
    """Format 1 states some facts twice; the copies must agree."""
    for key, name in (("prefill_input_len", prefill), ("decode_input_len", decode)):
        if r.has(key) and r.pos_int(key) != methods[name].input_len:
            raise r.fail(key, f"{methods[name].input_len} (llm.methods.{name}.input_len)", r.get(key))
    if r.has("dtype") and r.get("dtype") != dtype:
        raise r.fail("dtype", f"{dtype!r} (the dtype of the cache inputs)", r.get("dtype"))


def _eos(r: _Reader) -> tuple[int, ...]:
    value = r.get("special_tokens.eos", optional=True)
    if value is None:
        return ()
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise r.fail("special_tokens.eos", "a list of token ids", value)
    return tuple(value)


# ------------------------------------------------------------ export records
#
# `llm.export_options` and `llm.quality` are records for people and for the
# export's summary line; the generation loop never reads them. They are
# written and read here too, so their keys are spelled once.


def export_options_record(
    quantize: str,
    quantization: Mapping[str, Any],
    source: str,
    fp16_residual_scale: float = 1.0,
    target: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`llm.export_options`: how the bundle was made (docs/llm_section.md);
    `target` is a target_record (none for the generic target)."""
    record: dict[str, Any] = {"quantize": quantize, "quantization": dict(quantization), "source": source}
    if fp16_residual_scale != 1.0:
        record["fp16_residual_scale"] = fp16_residual_scale
    record.update(target or {})
    return record


def target_record(name: str, max_dim: int, head: str, k: int, check: str) -> dict[str, Any]:
    """The export_options keys of a Neural Engine export: its target, chunk
    rows, head (with topk's k) and the `staticllm check` target it passed."""
    record: dict[str, Any] = {"target": name, "ane_max_dim": max_dim, "head": head, "check": check}
    if head == "topk":
        record["topk"] = k
    return record


def describe_target(metadata: Mapping[str, Any]) -> str:
    """The recorded export target in words: "generic" or "ane (head ..., ...)"."""
    options = metadata.get("llm", {}).get("export_options", {})
    name = options.get("target", "generic")
    if "head" not in options:
        return name
    head = f"{options['head']} {options.get('topk', '')}".strip()
    return f"{name} (head {head}, chunks of {options['ane_max_dim']} rows, passes check {options['check']})"


def quantization_record(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The quantization plan recorded at export (`llm.export_options.quantization`), or {}."""
    options = metadata.get("llm", {}).get("export_options", {})
    return dict(options.get("quantization", {}))


def quality_record(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """The quality gate's figures (`llm.quality`), or None if no gate ran."""
    quality = metadata.get("llm", {}).get("quality")
    return dict(quality) if quality else None


def with_quality(metadata: Mapping[str, Any], quality: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `metadata` whose llm section records the quality gate's figures."""
    out = dict(metadata)
    out["llm"] = {**metadata["llm"], "quality": dict(quality)}
    return out
