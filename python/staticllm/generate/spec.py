"""The `llm` section of metadata.json, parsed and checked against the methods.

The generation loop takes every name, length and layout from here
(docs/llm_section.md); it never guesses from tensor names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from staticllm.errors import MetadataError

LOGITS_MODES = ("last", "full")


@dataclass(frozen=True)
class MethodInfo:
    """One method of the bundle as the runner uses it."""

    name: str
    input_len: int
    logits: str  # "last": [1, vocab]; "full": [1, input_len, vocab]


@dataclass(frozen=True)
class LLMSpec:
    vocab_size: int
    max_context_len: int
    cache_len: int
    dtype: str
    n_layers: int
    n_kv_heads: int
    head_dim: int
    cache_inputs: tuple[str, ...]
    cache_outputs: tuple[str, ...]
    io: dict[str, str]
    methods: dict[str, MethodInfo]
    prefill_method: str
    decode_method: str
    bos: int | None
    eos: tuple[int, ...]
    pad: int | None
    tokenizer: str | None
    tokenizer_config: str | None

    @property
    def multifunction(self) -> bool:
        """True when prompt and generation run through different methods."""
        return self.prefill_method != self.decode_method

    @property
    def context_limit(self) -> int:
        """Most tokens (prompt + generated) one generation may hold.

        A call starting at position q needs positions 0..q-1 in the cache, so
        nothing may wrap the ring; and rotary tables end at max_context_len.
        """
        return min(self.max_context_len, self.cache_len)

    @property
    def cache_shape(self) -> tuple[int, int, int, int]:
        return (1, self.n_kv_heads, self.cache_len, self.head_dim)

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], where: str = "metadata.json") -> LLMSpec:
        llm = metadata.get("llm")
        if llm is None:
            raise MetadataError(
                f"{where}: the bundle has no 'llm' section, so it cannot be used for text generation; "
                "export it with `staticllm export` (which writes one) or use staticllm.Runtime directly"
            )
        if not isinstance(llm, dict):
            raise MetadataError(f"{where}: 'llm' must be an object, got {type(llm).__name__}")
        return _parse(_Reader(llm, where))


class _Reader:
    """Typed access to the section; every error names the key."""

    def __init__(self, root: dict[str, Any], where: str) -> None:
        self.root = root
        self.where = where

    def fail(self, key: str, expected: str, got: Any) -> MetadataError:
        return MetadataError(f"{self.where}: llm.{key}: expected {expected}, got {got!r}")

    def get(self, key: str, optional: bool = False) -> Any:
        node: Any = self.root
        for part in key.split("."):
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

    def string(self, key: str, optional: bool = False) -> str | None:
        value = self.get(key, optional)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(key, "a non-empty string", value)
        return value

    def names(self, key: str, count: int) -> tuple[str, ...]:
        value = self.get(key)
        if not isinstance(value, list) or len(value) != count or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"a list of {count} names (k and v for each layer)", value)
        return tuple(value)


def _parse(r: _Reader) -> LLMSpec:
    fmt = r.get("format")
    if fmt != 1:
        raise r.fail("format", "1 (the only format this version reads)", fmt)
    layout = r.get("cache.layout")
    if layout != "batch_heads_seq_dim":
        raise r.fail("cache.layout", "'batch_heads_seq_dim'", layout)
    n_layers = r.pos_int("cache.n_layers")
    methods = _methods(r)
    prefill, decode = r.string("prefill_method"), r.string("decode_method")
    for key, name in (("prefill_method", prefill), ("decode_method", decode)):
        if name not in methods:
            raise r.fail(key, f"one of the methods in llm.methods ({sorted(methods)})", name)
    io = r.get("io")
    if not isinstance(io, dict):
        raise r.fail("io", "an object mapping roles to tensor names", io)
    for role in ("tokens", "input_pos", "attn_mask", "logits"):
        r.string(f"io.{role}")
    return LLMSpec(
        vocab_size=r.pos_int("vocab_size"),
        max_context_len=r.pos_int("max_context_len"),
        cache_len=r.pos_int("cache_len"),
        dtype=str(r.string("dtype")),
        n_layers=n_layers,
        n_kv_heads=r.pos_int("cache.n_kv_heads"),
        head_dim=r.pos_int("cache.head_dim"),
        cache_inputs=r.names("cache.inputs", 2 * n_layers),
        cache_outputs=r.names("cache.outputs", 2 * n_layers),
        io={k: v for k, v in io.items() if isinstance(v, str)},
        methods=methods,
        prefill_method=str(prefill),
        decode_method=str(decode),
        bos=r.opt_int("special_tokens.bos"),
        eos=_eos(r),
        pad=r.opt_int("special_tokens.pad"),
        tokenizer=r.string("tokenizer", optional=True),
        tokenizer_config=r.string("tokenizer_config", optional=True),
    )


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
