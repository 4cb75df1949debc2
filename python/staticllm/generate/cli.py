"""`staticllm generate BUNDLE --prompt TEXT ...`"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="generate text from a bundle",
        description="Generate text from an exported bundle: prefill/decode for multifunction bundles, "
        "chunked forward (optionally with lookahead decoding) for single-method ones.",
    )
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory (with an llm section)")
    p.add_argument("--prompt", required=True, help="prompt text")
    add_generation_args(p, max_new_tokens=128)
    p.add_argument("--stream", action="store_true", help="print text as it is generated")
    p.add_argument("--stats", action="store_true", help="print timing figures to stderr")
    p.add_argument("--chat", action="store_true", help="apply the bundle's chat template to the prompt")
    p.set_defaults(func=run)


def add_generation_args(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    """Sampling, stopping, lookahead and backend options (generate and chat share them)."""
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens, metavar="N")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0, metavar="K", help="0 = no limit")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="nucleus mass in (0, 1]")
    p.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R", help="1 = none")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="seed for sampling")
    p.add_argument("--stop", action="append", default=None, metavar="TEXT", help="stop string (repeatable)")
    p.add_argument("--lookahead", action="store_true", help="lookahead decoding (single-method bundles)")
    p.add_argument("--ngram", type=int, default=None, metavar="N", help="lookahead n-gram size (default 5)")
    p.add_argument("--window", type=int, default=None, metavar="W", help="lookahead window (default 4)")
    p.add_argument(
        "--branches", type=int, default=None, metavar="G", help="lookahead verification branches (default 4)"
    )
    add_load_args(p)
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail before running if prompt + max new tokens exceed the context",
    )


def add_load_args(p: argparse.ArgumentParser) -> None:
    """How a command that loads a bundle opens it (generate, chat, serve, bench, eval)."""
    p.add_argument("--backend", choices=("auto", "mil", "coreml"), default="auto")
    p.add_argument(
        "--no-mmap",
        action="store_true",
        help="read weight.bin into memory instead of mapping it (immune to the file changing while it runs)",
    )


def generation_options(args: argparse.Namespace) -> dict[str, Any]:
    """Generator options from the arguments add_generation_args defined."""
    return dict(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
        stop=args.stop,
        lookahead=args.lookahead,
        ngram=args.ngram,
        window=args.window,
        branches=args.branches,
        strict=args.strict,
    )


def run(args: argparse.Namespace) -> int:
    from staticllm.generate import Generator

    gen = Generator(args.bundle, backend=args.backend, mmap=not args.no_mmap)
    options = generation_options(args)
    options["chat"] = args.chat
    if args.stream:
        for piece in gen.stream(args.prompt, **options):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        result = gen.last_result
    else:
        result = gen.generate(args.prompt, **options)
        print(result.text)
    sys.stdout.flush()  # the text before the stats when both go to one terminal
    if args.stats and result is not None:
        print(format_stats(result), file=sys.stderr)
    return 0


def format_stats(result: Any) -> str:
    t = result.timings
    lines = [
        f"prompt tokens: {t.prefill_tokens}, generated tokens: {len(result.token_ids)}, "
        f"stop: {result.stop_reason}",
        f"time to first token: {t.ttft_s * 1000:.1f} ms",
        f"prefill: {t.prefill_tokens_per_s:.1f} tokens/s",
        f"decode: {t.decode_tokens_per_s:.1f} tokens/s ({t.decode_calls} calls)",
    ]
    if result.lookahead is not None:
        look = result.lookahead
        per_call = "n/a" if t.accepted_per_call is None else f"{t.accepted_per_call:.2f}"
        lines.append(
            f"lookahead (ngram {look.ngram}, window {look.window}, branches {look.branches}): "
            f"{per_call} accepted tokens per call"
        )
    return "\n".join(lines)
