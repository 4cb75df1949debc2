"""Runs bundle methods over the KV cache the runner owns.

Every method gets its input arrays once (tokens, input_pos or the rotary
cos/sin pairs, one attention mask per cache group, last_index) and shares the cache arrays with the other
methods, so the prefill -> decode handover copies nothing. A call fills the
small arrays in place, runs, and `KVCache.commit` copies only the kept
k_out/v_out rows. Each cache group (llm_section.CacheGroup: full attention,
or a sliding window kept as a ring of window slots) has its own KVCache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from staticllm.errors import ContextOverflowError, MetadataError
from staticllm.generate.cache import KVCache
from staticllm.generate.head import HeadReader, Scores
from staticllm.generate.masks import causal_allowed, fill_mask
from staticllm.generate.rotary import RotaryFill
from staticllm.llm_section import CacheGroup, LLMSpec, MethodInfo


class MethodIO:
    """One method with its preallocated inputs."""

    def __init__(
        self, method: Any, info: MethodInfo, spec: LLMSpec, caches: Sequence[tuple[CacheGroup, KVCache]]
    ) -> None:
        self.method = method
        self.info = info
        self.n_rows = info.input_len
        self.full_logits = info.logits == "full"
        self.caches = caches
        self.max_pos = spec.max_context_len - 1
        specs = {s.name: s for s in method.input_specs}
        n = self.n_rows
        io = spec.io
        self.tokens = self._alloc(specs, io.tokens, (1, n))
        self.input_pos = (
            self._alloc(specs, io.input_pos, (n,)) if io.input_pos is not None else np.zeros(n, np.int64)
        )
        self.rope = [
            (
                RotaryFill(r),
                self._alloc(specs, r.cos, (1, n, len(r.inv_freq))),
                self._alloc(specs, r.sin, (1, n, len(r.inv_freq))),
            )
            for r in io.rope
        ]
        self.masks = [self._alloc(specs, g.mask, (1, n, g.length + n)) for g, _ in caches]
        self.mask_value = spec.mask_value
        self.last_index: np.ndarray | None = None
        li_name = io.last_index
        if not self.full_logits and n > 1:
            if li_name is None or li_name not in specs:
                raise MetadataError(
                    f"method {info.name!r} returns last-token logits over {n} rows but has no "
                    f"last_index input (llm.io.last_index = {li_name!r})"
                )
            self.last_index = self._alloc(specs, li_name, (1,))
        self.inputs: dict[str, np.ndarray] = {io.tokens: self.tokens}
        if io.input_pos is not None:
            self.inputs[io.input_pos] = self.input_pos
        for r, (_, cos, sin) in zip(io.rope, self.rope):
            self.inputs.update({r.cos: cos, r.sin: sin})
        self.inputs.update({g.mask: m for (g, _), m in zip(caches, self.masks)})
        if self.last_index is not None and li_name is not None:
            self.inputs[li_name] = self.last_index
        for _, cache in caches:
            for name in cache.inputs:
                self._check(specs, name, cache.shape, cache.arrays[name].dtype)
                self.inputs[name] = cache.arrays[name]  # shared, not copied
        unknown = sorted(set(specs) - set(self.inputs))
        if unknown:
            raise MetadataError(
                f"method {info.name!r} has inputs {unknown} the llm section does not describe"
            )
        self.head = HeadReader(io.head_spec(), method, spec.vocab_size, n, self.full_logits)
        outs = {s.name for s in method.output_specs}
        for name in io.cache_outputs:
            if name not in outs:
                raise MetadataError(f"method {info.name!r} has no output {name!r} (llm.cache.outputs)")

    def _alloc(self, specs: Mapping[str, Any], name: str, shape: tuple[int, ...]) -> np.ndarray:
        self._check(specs, name, shape, None)
        return np.zeros(shape, dtype=specs[name].dtype)

    def _check(self, specs: Mapping[str, Any], name: str, shape: tuple[int, ...], dtype: Any) -> None:
        where = f"method {self.info.name!r}"
        if name not in specs:
            raise MetadataError(
                f"{where} has no input {name!r}, which the llm section names (inputs: {sorted(specs)})"
            )
        got = tuple(specs[name].shape)
        if got != tuple(shape):
            raise MetadataError(
                f"{where}: input {name!r} has shape {list(got)}; the llm section implies "
                f"{list(shape)} (input_len {self.n_rows})"
            )
        if dtype is not None and np.dtype(specs[name].dtype) != np.dtype(dtype):
            raise MetadataError(
                f"{where}: input {name!r} has dtype {np.dtype(specs[name].dtype)}, "
                f"the cache is {np.dtype(dtype)}"
            )

    def run(
        self, tokens: Sequence[int] | np.ndarray, positions: np.ndarray, allowed: np.ndarray, logits_row: int
    ) -> dict[str, np.ndarray]:
        """One call: len(tokens) real rows, the rest padding. For "last"
        logits, `logits_row` selects the row returned."""
        n = len(tokens)
        if n > self.n_rows or n < 1:
            raise ValueError(f"{n} tokens for method {self.info.name!r} of {self.n_rows} rows")
        self.tokens[0, :n] = tokens
        self.tokens[0, n:] = 0
        self.input_pos[:n] = positions
        # Padding rows: any valid rotary row; they see only themselves.
        self.input_pos[n:] = min(int(positions[-1]), self.max_pos)
        for fill, cos, sin in self.rope:
            fill(cos, sin, self.input_pos)
        for (group, cache), mask in zip(self.caches, self.masks):
            fill_mask(mask, cache.slot_pos, self.input_pos, allowed, group.window, self.mask_value)
        if self.last_index is not None:
            self.last_index[0] = logits_row
        return self.method.execute(self.inputs)

    def scores(self, outputs: Mapping[str, np.ndarray], row: int) -> Scores:
        """What the sampler chooses from for one row: its logits, or a top-k head's candidates."""
        return self.head.row(outputs, row)


class Runner:
    """Owns the caches and the position; prompt chunks, decode steps, tree calls."""

    def __init__(self, runtime: Any, spec: LLMSpec) -> None:
        self.spec = spec
        methods = {spec.prefill_method, spec.decode_method}
        io = spec.io
        first = {s.name: s for s in runtime.method(spec.decode_method).input_specs}
        if io.cache_inputs[0] not in first:
            raise MetadataError(
                f"method {spec.decode_method!r} has no input {io.cache_inputs[0]!r} "
                f"(llm.cache.inputs); its inputs: {sorted(first)}"
            )
        cache_dtype = np.dtype(first[io.cache_inputs[0]].dtype)
        self.caches = [
            (g, KVCache(*spec.group_caches(g), spec.cache_shape(g), cache_dtype)) for g in spec.groups
        ]
        self.io = {
            name: MethodIO(runtime.method(name), spec.methods[name], spec, self.caches)
            for name in sorted(methods)
        }
        self.prefill_io = self.io[spec.prefill_method]
        self.decode_io = self.io[spec.decode_method]
        self.history: list[int] = []  # the tokens whose KV is in the cache, by position
        self.calls = 0
        self._chunk_masks: dict[tuple[int, int], np.ndarray] = {}

    @property
    def position(self) -> int:
        """Tokens whose KV is in the cache: the next token's position."""
        return len(self.history)

    def reset(self) -> None:
        for _, cache in self.caches:
            cache.reset()
        self.history = []
        self.calls = 0

    def _commit(
        self, outputs: Mapping[str, np.ndarray], rows: np.ndarray | slice, positions: np.ndarray
    ) -> None:
        for _, cache in self.caches:
            cache.commit(outputs, rows, positions)

    def reuse_prefix(self, tokens: Sequence[int]) -> int:
        """Keeps the cached KV of the longest common prefix of `tokens` and the
        cache's history (never all of `tokens`: the last one must run to give
        logits), forgets the rest; returns the number of tokens kept. A
        sliding-window ring that has wrapped past the kept prefix no longer
        holds the window before it: then nothing is kept."""
        limit = min(len(tokens) - 1, len(self.history))
        keep = 0
        while keep < limit and self.history[keep] == tokens[keep]:
            keep += 1
        for _, cache in self.caches:
            cache.truncate(keep)
        if not all(cache.holds_window_before(keep, g.window) for g, cache in self.caches):
            keep = 0
            for _, cache in self.caches:
                cache.truncate(0)
        del self.history[keep:]
        self.calls = 0
        return keep

    def check_room(self, n: int) -> None:
        """A call of n tokens at the current position must see its whole history."""
        limit = self.spec.context_limit
        if self.position + n > limit:
            raise ContextOverflowError(
                f"{self.position} tokens in context + {n} more exceed the context limit of {limit} "
                f"(max_context_len {self.spec.max_context_len})"
            )

    def _causal(self, n_rows: int, n_valid: int) -> np.ndarray:
        key = (n_rows, n_valid)
        if key not in self._chunk_masks:
            self._chunk_masks[key] = causal_allowed(n_rows, n_valid)
        return self._chunk_masks[key]

    def feed(
        self, tokens: Sequence[int], io: MethodIO | None = None, rows: list[np.ndarray] | None = None
    ) -> Scores:
        """Runs tokens in chunks through `io` (default: prefill), commits all of
        them and returns the logits after the last one. With `rows`, a
        full-logits method also appends each call's [n, vocab] logits to it."""
        io = io or self.prefill_io
        if rows is not None and not io.full_logits:
            raise ValueError(f"method {io.info.name!r} returns only last-token logits")
        self.check_room(len(tokens))
        logits: Scores | None = None
        for start in range(0, len(tokens), io.n_rows):
            chunk = tokens[start : start + io.n_rows]
            n = len(chunk)
            positions = np.arange(self.position, self.position + n, dtype=np.int64)
            out = io.run(chunk, positions, self._causal(io.n_rows, n), n - 1)
            self.calls += 1
            self._commit(out, slice(0, n), positions)
            self.history.extend(int(t) for t in chunk)
            logits = io.scores(out, n - 1)
            if rows is not None:
                rows.append(io.head.rows(out, n))
        if logits is None:
            raise ValueError("feed() needs at least one token")
        return logits

    def prefill(self, tokens: Sequence[int]) -> Scores:
        """The prompt: chunks through the prefill method, returns the last logits.

        With a separate decode method, a short last chunk (at most 1/8 of the
        prefill rows) goes through decode one token at a time: a padded
        prefill call computes every row, a decode call only one. The rule is
        fixed, so the same prompt always takes the same path.
        """
        io = self.prefill_io
        tail = len(tokens) % io.n_rows
        if self.decode_io is io or tail == 0 or tail > io.n_rows // 8:
            return self.feed(tokens)
        self.check_room(len(tokens))
        head = len(tokens) - tail
        logits = self.feed(tokens[:head]) if head else None
        for token in tokens[head:]:
            logits = self.step(token)
        assert logits is not None
        return logits

    def step(self, token: int) -> Scores:
        """One generated token through the decode method."""
        return self.feed([token], self.decode_io)

    def run_tree(self, tokens: np.ndarray, depth: np.ndarray, allowed: np.ndarray) -> dict[str, np.ndarray]:
        """A lookahead call through the decode method (single-method: forward).
        Row j sits at position `position + depth[j]`; nothing is committed."""
        io = self.decode_io
        self.check_room(1)
        out = io.run(tokens, self.position + depth, allowed, 0)
        self.calls += 1
        return out

    def commit_rows(
        self, outputs: Mapping[str, np.ndarray], rows: Sequence[int], tokens: Sequence[int]
    ) -> None:
        """Commits `rows` of a tree call, which hold `tokens`, as the next len(rows) positions."""
        n = len(rows)
        self.check_room(n)
        positions = np.arange(self.position, self.position + n, dtype=np.int64)
        if list(rows) == list(range(rows[0], rows[0] + n)):
            self._commit(outputs, slice(rows[0], rows[0] + n), positions)
        else:
            self._commit(outputs, np.asarray(rows, dtype=np.int64), positions)
        self.history.extend(int(t) for t in tokens)
