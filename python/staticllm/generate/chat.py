"""Multi-turn chat over one Generator, reusing the KV cache between turns.

    chat = staticllm.Generator("bundle").chat(system="You are terse.", max_new_tokens=256)
    print(chat.send("Hello!").text)
    for piece in chat.stream("And what is 2 + 2?"):
        print(piece, end="", flush=True)
    print(chat.last.timings.reused_tokens)   # prompt tokens taken from the cache

Each turn renders the whole conversation with the bundle's chat template and
compares its token ids with the tokens whose KV the cache holds (the last
turn's prompt and reply): only the tokens after the longest common prefix are
prefilled. A template that renders earlier turns differently once a new turn
follows simply reuses less. The prefix's keys and values are those a prefill
of the whole history from scratch computes, to rounding only: the kernels sum
a one-row decode call and a many-row prefill chunk in different orders, and
chunks that start at other positions group the attention sums differently.
The replies are therefore the scratch prefill's tokens except where the two
best candidates (nearly) tie.

When the context fills (the rendered prompt plus max_new_tokens exceed the
context limit), the oldest turns are dropped, one user message and the replies
after it at a time, keeping the system prompt and the newest message, and the
shortened conversation is prefilled again (it shares only the system prompt
with the cache). If even the system prompt and the newest message leave no
room for max_new_tokens, the reply runs until the context is full
(stop_reason "context_limit"); if they do not fit at all, ContextOverflowError.
With strict=True any overflow raises ContextOverflowError before running.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from staticllm.errors import ContextOverflowError, InputError
from staticllm.generate.generator import GenerateOptions

if TYPE_CHECKING:
    from staticllm.generate.generator import GenerationResult, Generator

# Options the session owns: a turn may not set them.
_SESSION_OWNED = ("chat", "reuse_prefix", "strict")


class ChatSession:
    def __init__(
        self,
        generator: Generator,
        system: str | None = None,
        strict: bool = False,
        reuse: bool = True,
        **options: Any,
    ) -> None:
        """`options` are Generator.generate options used for every turn
        (max_new_tokens, temperature, stop, lookahead, ...); `reuse=False`
        prefills every turn from scratch (for comparison)."""
        self.generator = generator
        self.system = system
        self.strict = strict
        self.reuse = reuse
        self.options = self._checked(options)
        self.messages: list[dict[str, str]] = []  # user and assistant turns, oldest first
        self.results: list[GenerationResult] = []  # one per turn
        self.dropped_messages = 0  # messages dropped to fit the context, since the last reset

    @staticmethod
    def _checked(options: dict[str, Any]) -> dict[str, Any]:
        owned = sorted(set(options) & set(_SESSION_OWNED))
        if owned:
            raise InputError(f"a chat session sets {owned} itself; pass strict/reuse to the session instead")
        GenerateOptions.from_kwargs(options)  # unknown names fail here, not on the first turn
        return dict(options)

    @property
    def last(self) -> GenerationResult | None:
        return self.results[-1] if self.results else None

    def conversation(self) -> list[dict[str, str]]:
        """The messages the next turn renders: the system prompt, then the turns."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.messages

    def reset(self) -> None:
        """Forgets the turns (the system prompt stays, and so does its cached KV)."""
        self.messages = []
        self.results = []
        self.dropped_messages = 0

    def send(self, text: str, **options: Any) -> GenerationResult:
        """One turn: the whole reply."""
        for _ in self.stream(text, **options):
            pass
        result = self.last
        assert result is not None
        return result

    def stream(self, text: str, **options: Any) -> Iterator[str]:
        """One turn, as text pieces. Closing the stream early (or Ctrl-C) keeps
        the reply so far as the assistant's message."""
        if not isinstance(text, str) or not text:
            raise InputError("a chat message must be non-empty text")
        opts = {**self.options, **self._checked(options)}
        max_new = int(opts.get("max_new_tokens", GenerateOptions.max_new_tokens))
        self.messages.append({"role": "user", "content": text})
        try:
            ids = self._fit(max_new)
            pieces = self.generator.stream(ids, reuse_prefix=self.reuse, **opts)
        except BaseException:
            self.messages.pop()
            raise
        return self._turn(pieces)

    def _turn(self, pieces: Iterator[str]) -> Iterator[str]:
        try:
            yield from pieces
        finally:
            pieces.close()  # a consumer that stopped early: finish the result now
            result = self.generator.last_result
            assert result is not None
            self.messages.append({"role": "assistant", "content": result.text})
            self.results.append(result)

    def _fit(self, max_new: int) -> list[int]:
        """The prompt ids of the conversation, oldest turns dropped to make room."""
        limit = self.generator.spec.context_limit
        while True:
            ids = self.generator.encode_messages(self.conversation())
            if len(ids) + max_new <= limit:
                return ids
            if self.strict:
                raise ContextOverflowError(
                    f"the conversation is {len(ids)} tokens; with max_new_tokens {max_new} it exceeds the "
                    f"context limit of {limit} tokens (without strict, the oldest turns are dropped)"
                )
            if not self._drop_oldest_turn():
                if len(ids) < limit:
                    return ids  # the reply stops when the context is full
                raise ContextOverflowError(
                    f"the system prompt and the newest message alone are {len(ids)} tokens, which leaves no "
                    f"room in the context limit of {limit} tokens; send a shorter message"
                )

    def _drop_oldest_turn(self) -> bool:
        """Drops the oldest user message and the replies up to the next one;
        False when only the newest message is left."""
        user_at = [i for i, m in enumerate(self.messages) if m["role"] == "user"]
        if len(user_at) < 2:
            return False
        del self.messages[: user_at[1]]
        self.dropped_messages += user_at[1]
        return True
