"""`staticllm chat BUNDLE [--system TEXT]`: an interactive chat in the terminal.

Replies stream as they are generated; input has line editing and history
(readline). Each turn reuses the KV cache of the conversation so far (see
staticllm.generate.chat). Ctrl-C stops the current reply and returns to the
prompt; Ctrl-D (end of input) or /exit quits.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from staticllm.errors import StaticLLMError
from staticllm.generate.cli import add_generation_args, generation_options

PROMPT = ">>> "
COMMANDS = {
    "/reset": "forget the conversation (the system prompt stays)",
    "/stats": "time to first token, tokens/s and tokens reused of the last reply",
    "/help": "this list",
    "/exit": "quit (so does Ctrl-D)",
}


def register(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="chat with a bundle in the terminal",
        description="An interactive chat with the bundle's chat template. Each turn prefills only what "
        "the cache does not hold yet. Commands: "
        + "; ".join(f"{c} {h}" for c, h in COMMANDS.items())
        + ". Ctrl-C stops a reply.",
    )
    p.add_argument(
        "bundle", metavar="BUNDLE", help="bundle directory (with an llm section and a chat template)"
    )
    p.add_argument("--system", default=None, metavar="TEXT", help="system prompt")
    add_generation_args(p, max_new_tokens=512)
    p.add_argument(
        "--no-reuse",
        action="store_true",
        help="prefill the whole conversation every turn (to compare with prefix reuse)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from staticllm.generate import Generator

    gen = Generator(args.bundle, backend=args.backend, mmap=not args.no_mmap)
    options = generation_options(args)
    strict = options.pop("strict")
    session = gen.chat(system=args.system, strict=strict, reuse=not args.no_reuse, **options)
    _enable_line_editing()
    print(
        f"staticllm chat: {gen.path.name}, context {gen.spec.context_limit} tokens. "
        f"/help for commands, Ctrl-D to quit.",
        file=sys.stderr,
        flush=True,
    )
    while True:
        try:
            line = input(PROMPT)
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:  # at the prompt: a fresh line, as shells do
            print()
            continue
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            if not _command(session, text):
                return 0
            continue
        _reply(session, text)


def _enable_line_editing() -> None:
    try:
        import readline  # noqa: F401  (input() gains editing and history once it is loaded)
    except ImportError:  # e.g. Windows without pyreadline: plain input still works
        pass


def _reply(session: Any, text: str) -> None:
    dropped = session.dropped_messages
    try:
        stream = session.stream(text)
    except StaticLLMError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return
    except KeyboardInterrupt:
        print("\n[stopped]", flush=True)
        return
    if session.dropped_messages > dropped:
        n = session.dropped_messages - dropped
        print(f"[context full: dropped the {n} oldest messages]", file=sys.stderr, flush=True)
    try:
        for piece in stream:
            sys.stdout.write(piece)
            sys.stdout.flush()
        print(flush=True)
    except KeyboardInterrupt:
        stream.close()  # keeps the reply so far as the assistant's message
        print("\n[stopped]", flush=True)
    except StaticLLMError as exc:
        print(f"\nerror: {exc}", file=sys.stderr, flush=True)


def _command(session: Any, text: str) -> bool:
    """Runs a /command; False means quit."""
    name = text.split()[0].lower()
    if name in ("/exit", "/quit"):
        return False
    if name == "/reset":
        session.reset()
        print("[conversation reset]", flush=True)
    elif name == "/stats":
        print(format_turn_stats(session), flush=True)
    elif name == "/help":
        for c, h in COMMANDS.items():
            print(f"  {c:8} {h}")
    else:
        print(f"unknown command {name}; /help lists them", flush=True)
    return True


def format_turn_stats(session: Any) -> str:
    result = session.last
    if result is None:
        return "no reply yet"
    t = result.timings
    used = len(session.generator.runner.history)
    return "\n".join(
        [
            f"time to first token: {t.ttft_s * 1000:.1f} ms",
            f"prompt: {len(result.prompt_token_ids)} tokens, {t.reused_tokens} reused from the cache, "
            f"{t.prefill_tokens} prefilled at {t.prefill_tokens_per_s:.1f} tokens/s",
            f"reply: {len(result.token_ids)} tokens, decode {t.decode_tokens_per_s:.1f} tokens/s, "
            f"stop: {result.stop_reason}",
            f"context: {used} of {session.generator.spec.context_limit} tokens in the cache",
        ]
    )
