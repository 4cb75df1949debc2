"""`staticllm.Generator`: text in, text out, over a bundle's `llm` section.

    gen = staticllm.Generator("bundle")
    result = gen.generate("Once upon a time", max_new_tokens=32, temperature=0.8, seed=1)
    for piece in gen.stream("Hello", chat=True):
        print(piece, end="", flush=True)

A Generator owns one KV cache: use one per thread.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from staticllm import _core
from staticllm.bundle_layout import bundle_paths
from staticllm.errors import ContextOverflowError, InputError
from staticllm.generate import stopping
from staticllm.generate.head import Scores, check_sampling
from staticllm.generate.lookahead import (
    LayoutBuilder,
    LookaheadGrid,
    LookaheadOptions,
    NGramPool,
    resolve_options,
    verify,
)
from staticllm.generate.runner import Runner
from staticllm.generate.sampling import Sampler, SamplingOptions
from staticllm.generate.stopping import StopOptions
from staticllm.generate.streaming import TextStream
from staticllm.llm_section import LLMSpec

if TYPE_CHECKING:
    from staticllm.generate.chat import ChatSession


@dataclass
class Timings:
    ttft_s: float = 0.0  # start of the call to the first generated token
    prefill_s: float = 0.0
    prefill_tokens: int = 0  # prompt tokens run (the reused ones not counted)
    reused_tokens: int = 0  # prompt tokens whose KV was already in the cache (reuse_prefix)
    prefill_tokens_per_s: float = 0.0
    decode_s: float = 0.0  # first generated token to the last
    decode_tokens: int = 0  # tokens generated after the first
    decode_tokens_per_s: float = 0.0
    decode_calls: int = 0  # method calls after the prefill
    accepted_per_call: float | None = None  # lookahead: tokens produced per decode call
    total_s: float = 0.0


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]  # generated ids (a final stop token included)
    prompt_token_ids: list[int]
    stop_reason: str  # see staticllm.generate.stopping
    timings: Timings = field(default_factory=Timings)
    lookahead: LookaheadOptions | None = None


@dataclass(frozen=True)
class GenerateOptions:
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] | list[str] | str | None = None
    stop_token_ids: tuple[int, ...] | list[int] | None = None
    lookahead: bool = False
    ngram: int | None = None
    window: int | None = None
    branches: int | None = None
    strict: bool = False
    chat: bool = False
    ignore_eos: bool = False  # do not stop at the bundle's/tokenizer's eos ids (benchmarks)
    # Keep the cached KV of the longest common prefix of this prompt and the
    # tokens already in the cache (the last generation's prompt and output),
    # and prefill only the rest: what makes a chat's next turn cheap.
    reuse_prefix: bool = False

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> GenerateOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise InputError(f"unknown generation option(s) {unknown}; known: {sorted(known)}")
        return cls(**kwargs)


class Generator:
    def __init__(self, bundle_path: str | Path, backend: str = "auto", mmap: bool = True) -> None:
        from staticllm.runtime import Runtime

        self.path = Path(bundle_path)
        self.runtime = Runtime.load(str(self.path), backend=backend, mmap=mmap)
        self.spec = LLMSpec.from_metadata(self.runtime.metadata, str(bundle_paths(self.path).metadata))
        self.tokenizer = self._load_tokenizer()
        self.runner = Runner(self.runtime, self.spec)
        self.last_result: GenerationResult | None = None
        # Parsing tokenizer.json leaves tens of MB of freed heap (39 MiB for
        # SmolLM2's) that would otherwise stay in the process's RSS.
        _core.release_free_heap()

    def _load_tokenizer(self) -> Any:
        if self.spec.tokenizer is None:
            return None
        from staticllm.tokenizers import load_tokenizer

        cfg = self.spec.tokenizer_config
        return load_tokenizer(self.path / self.spec.tokenizer, None if cfg is None else self.path / cfg)

    def encode(self, prompt: str | Sequence[int], chat: bool = False) -> list[int]:
        """Prompt token ids, checked against the model's vocabulary."""
        if isinstance(prompt, str):
            if not prompt:
                raise InputError("the prompt is empty; give some text or token ids")
            if self.tokenizer is None:
                raise InputError(
                    f"bundle {self.path} has no tokenizer (llm.tokenizer); pass token ids instead"
                )
            if chat:
                return self.encode_messages([{"role": "user", "content": prompt}])
            else:
                ids = self.tokenizer.encode(prompt)
        else:
            if chat:
                raise InputError("chat needs a text prompt, not token ids")
            ids = list(prompt)
        return self._check_ids(ids)

    def encode_messages(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of a conversation rendered with the bundle's chat template,
        ending with the assistant's turn opened."""
        if self.tokenizer is None:
            raise InputError(f"bundle {self.path} has no tokenizer (llm.tokenizer), so it cannot chat")
        text = self.tokenizer.apply_chat_template(list(messages))
        return self._check_ids(self.tokenizer.encode(text, add_bos=False))

    def chat(self, system: str | None = None, **options: Any) -> ChatSession:
        """A multi-turn conversation over this generator's cache (see ChatSession)."""
        from staticllm.generate.chat import ChatSession

        return ChatSession(self, system=system, **options)

    def _check_ids(self, ids: list[Any]) -> list[int]:
        if not ids:
            raise InputError("the prompt is empty (no tokens); give some text or token ids")
        vocab = self.spec.vocab_size
        for i, t in enumerate(ids):
            if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= int(t) < vocab:
                raise InputError(
                    f"prompt token {t!r} at index {i} is outside the model's vocabulary [0, {vocab}); "
                    f"was it made by a different tokenizer?"
                )
        return [int(t) for t in ids]

    def generate(self, prompt: str | Sequence[int], **options: Any) -> GenerationResult:
        session = self._session(prompt, options)
        for _ in session.pieces():
            pass
        return session.result

    def stream(self, prompt: str | Sequence[int], **options: Any) -> Iterator[str]:
        """Text pieces as they are generated; `last_result` holds the result after."""
        return self._session(prompt, options).pieces()

    def _session(self, prompt: str | Sequence[int], options: dict[str, Any]) -> _Session:
        start = time.perf_counter()
        opts = GenerateOptions.from_kwargs(options)
        sampling = SamplingOptions(
            opts.temperature, opts.top_k, opts.top_p, opts.repetition_penalty, opts.seed
        )
        default_stops: set[int] = set()
        if not opts.ignore_eos:
            default_stops = set(self.spec.eos) | set(self.tokenizer.eos_ids if self.tokenizer else [])
        stops = StopOptions.build(opts.max_new_tokens, opts.stop_token_ids, opts.stop, default_stops)
        if stops.stop_strings and self.tokenizer is None:
            raise InputError("stop strings need a tokenizer; this bundle has none")
        check_sampling(self.spec.io.head_spec(), sampling)
        look = self.lookahead_options(opts.ngram, opts.window, opts.branches) if opts.lookahead else None
        ids = self.encode(prompt, opts.chat)
        self._check_context(len(ids), stops.max_new_tokens, opts.strict)
        return _Session(self, ids, sampling, stops, look, start, opts.reuse_prefix)

    def _check_context(self, n_prompt: int, max_new: int, strict: bool) -> None:
        limit = self.spec.context_limit
        if n_prompt > limit:
            raise ContextOverflowError(
                f"prompt of {n_prompt} tokens does not fit the context limit of {limit} tokens; "
                f"shorten it or export with a larger --max-context-len"
            )
        if strict and n_prompt + max_new > limit:
            raise ContextOverflowError(
                f"prompt of {n_prompt} tokens + max_new_tokens {max_new} exceed the context limit of {limit} "
                f"tokens (without strict, generation stops at the limit with stop_reason 'context_limit')"
            )

    def lookahead_options(
        self, ngram: int | None = None, window: int | None = None, branches: int | None = None
    ) -> LookaheadOptions:
        """The lookahead settings this bundle runs with; InputError if it cannot."""
        spec = self.spec
        info = spec.methods[spec.decode_method]
        if info.logits != "full" or info.input_len < 2:
            raise InputError(
                f"lookahead decoding needs a single-method bundle whose method returns full logits over "
                f"several rows; this bundle decodes with {info.name!r} ({info.input_len} row(s), "
                f"logits {info.logits!r}). Export without --multifunction to use it"
            )
        return resolve_options(info.input_len, ngram, window, branches, info.name)


class _Session:
    """One generation: runs lazily as its pieces are consumed."""

    def __init__(
        self,
        gen: Generator,
        ids: list[int],
        sampling: SamplingOptions,
        stops: StopOptions,
        look: LookaheadOptions | None,
        start: float,
        reuse_prefix: bool = False,
    ) -> None:
        self.gen = gen
        self.reuse_prefix = reuse_prefix
        self.ids = ids
        self.sampler = Sampler(sampling, gen.spec.vocab_size, history=ids)
        self.stops = stops
        self.look = look
        self.start = start
        tok = gen.tokenizer
        self.text = TextStream(tok.decode if tok else (lambda _ids: ""), stops.stop_strings)
        self.generated: list[int] = []
        self.reason = ""
        self.timings = Timings(prefill_tokens=len(ids))
        self.result = GenerationResult("", [], ids, "", self.timings, look)
        self._first_at = 0.0
        self._produced: list[int] = []  # lookahead: tokens produced by each decode call
        self._prefill_calls: int | None = None

    def choose(self, logits: Scores) -> int:
        token = self.sampler(logits)
        self.sampler.observe(token)
        return token

    def emit(self, token: int) -> tuple[str, bool]:
        """Records one generated token; returns (text piece, whether to stop)."""
        if not self.generated:
            self._first_at = time.perf_counter()
            self.timings.ttft_s = self._first_at - self.start
        self.generated.append(token)
        if token in self.stops.stop_token_ids:
            self.reason = stopping.STOP_TOKEN
            return "", True
        piece = self.text.push(token)
        if self.text.stopped:
            self.reason = stopping.STOP_STRING
        elif len(self.generated) >= self.stops.max_new_tokens:
            self.reason = stopping.MAX_NEW_TOKENS
        elif len(self.ids) + len(self.generated) >= self.gen.spec.context_limit:
            self.reason = stopping.CONTEXT_LIMIT
        return piece, bool(self.reason)

    def pieces(self) -> Iterator[str]:
        runner = self.gen.runner
        try:
            if self.stops.max_new_tokens == 0:
                self.reason = stopping.MAX_NEW_TOKENS
            elif len(self.ids) >= self.gen.spec.context_limit:
                self.reason = stopping.CONTEXT_LIMIT
            else:
                t0 = time.perf_counter()
                if self.reuse_prefix:
                    reused = runner.reuse_prefix(self.ids)
                else:
                    runner.reset()
                    reused = 0
                self.timings.reused_tokens = reused
                self.timings.prefill_tokens = len(self.ids) - reused
                logits = runner.prefill(self.ids[reused:])
                self.timings.prefill_s = time.perf_counter() - t0
                self._prefill_calls = runner.calls
                steps = self._lookahead_steps(logits) if self.look else self._plain_steps(logits)
                yield from (p for p in steps if p)
            tail = self.text.finish()
            if tail:
                yield tail
        except BaseException:
            # Ctrl-C, a closed stream (GeneratorExit) or an error: the cache
            # still holds exactly runner.history, so a later call can reuse it.
            self.reason = self.reason or stopping.CANCELLED
            raise
        finally:
            self._finish()

    def _plain_steps(self, logits: Scores) -> Iterator[str]:
        while True:
            token = self.choose(logits)
            piece, stop = self.emit(token)
            yield piece
            if stop:
                return
            logits = self.gen.runner.step(token)

    def _lookahead_steps(self, logits: Scores) -> Iterator[str]:
        opts = self.look
        assert opts is not None
        runner = self.gen.runner
        spec = self.gen.spec
        builder = LayoutBuilder(opts, runner.decode_io.n_rows)
        pool = NGramPool(opts.ngram, opts.branches)
        grid = LookaheadGrid(opts, self.ids)
        context = list(self.ids)
        if opts.pool_from_text:
            pool.add_text(context)
        token = self.choose(logits)
        piece, stop = self.emit(token)
        yield piece
        context.append(token)
        while not stop:
            if runner.position + builder.max_depth() >= spec.max_context_len:
                # Near the end the grid would pass the rotary table: plain steps.
                token = self.choose(runner.step(token))
                chosen = [token]
            else:
                chosen = self._lookahead_call(token, builder, pool, grid)
            self._produced.append(len(chosen))
            for token in chosen:
                piece, stop = self.emit(token)
                yield piece
                if stop:
                    break
            if opts.pool_from_text:
                start = len(context) - opts.ngram + 1
                context.extend(chosen)
                pool.add_text(context, start)

    def _lookahead_call(
        self, current: int, builder: LayoutBuilder, pool: NGramPool, grid: LookaheadGrid
    ) -> list[int]:
        runner = self.gen.runner
        opts = self.look
        assert opts is not None
        cands = pool.candidates(current, opts.branches)
        layout = builder.build(current, grid.levels, cands)
        out = runner.run_tree(layout.tokens, layout.depth, layout.allowed)
        io = runner.decode_io
        chosen, kv_rows = verify(lambda r: io.scores(out, r), cands, layout.cand_rows, self.choose)
        # Never commit past the context: x_q plus the accepted tokens that will be kept.
        room = self.gen.spec.context_limit - (len(self.ids) + len(self.generated))
        chosen = chosen[:room]
        rows = kv_rows[: len(chosen)]
        runner.commit_rows(out, rows, layout.tokens[rows].tolist())
        last = layout.grid_rows[len(grid.levels) - 1]
        grid.advance(io.head.greedy(out, last), pool)
        return chosen

    def _finish(self) -> None:
        t = self.timings
        end = time.perf_counter()
        t.total_s = end - self.start
        if self._prefill_calls is not None:
            t.decode_calls = self.gen.runner.calls - self._prefill_calls
        if t.prefill_s > 0:
            t.prefill_tokens_per_s = t.prefill_tokens / t.prefill_s
        if self.generated:
            t.decode_s = end - self._first_at
            t.decode_tokens = len(self.generated) - 1
            if t.decode_s > 0 and t.decode_tokens > 0:
                t.decode_tokens_per_s = t.decode_tokens / t.decode_s
        if self.look is not None and self._produced:
            t.accepted_per_call = float(np.mean(self._produced))
        if not self.reason:
            self.reason = stopping.MAX_NEW_TOKENS
        self.result.text = self.text.text
        self.result.token_ids = list(self.generated)
        self.result.stop_reason = self.reason
        self.gen.last_result = self.result
