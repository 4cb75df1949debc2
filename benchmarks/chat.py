"""Chat turns with KV-cache prefix reuse against prefilling the whole history, measured in one run.

    python benchmarks/chat.py BUNDLE [--turns 3] [--max-new-tokens 48] [--repeats 3]

Two chat sessions over the same bundle (each with its own Generator) hold the
same greedy conversation: one reuses the cached prefix on every turn (the
default), the other prefills the whole rendered conversation from scratch
(reuse=False). Turns run interleaved, session by session, so machine noise
hits both alike. Per turn: prompt tokens, tokens reused, time to first token
of each (median over repeats) and the speed-up scratch / reuse. The replies
are compared: where they part (a rounding-level difference at a near-tie, see
staticllm.ChatSession), the turn and token, the scratch session's top-2 logit
margin there are printed, and the scratch session takes the reuse session's
reply so the two conversations stay the same. Use a bundle with a chat
template, e.g. the SmolLM2 bundle `scripts/main_job.sh` exports.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from staticllm.generate import Generator

QUESTIONS = [
    "What is the capital of France?",
    "Which river flows through it?",
    "Name one famous museum there.",
    "What is it best known for?",
    "Thank you! Summarize our conversation in one sentence.",
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="bundle directory with a chat template")
    p.add_argument("--turns", type=int, default=3, choices=range(2, len(QUESTIONS) + 1), metavar="N")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--repeats", type=int, default=3, help="conversations per mode (median reported)")
    p.add_argument("--system", default=None, help="system prompt")
    return p.parse_args()


def _report_parting(turn: int, results: dict, scratch: Generator) -> None:
    """Where the two replies part, and how close the scratch side's top two were there."""
    a, b = results["reuse"].token_ids, results["scratch"].token_ids
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    scratch.runner.reset()
    logits = scratch.runner.prefill(results["scratch"].prompt_token_ids + b[:at])
    top2 = np.sort(np.asarray(logits, np.float64).ravel())[-2:]
    print(
        f"turn {turn + 1}: the replies part at generated token {at} (the scratch side's top-2 logit "
        f"margin there: {top2[1] - top2[0]:.4f}); the scratch session goes on with the reuse session's reply",
        file=sys.stderr,
    )


def main() -> int:
    from staticllm.generate import Generator

    args = parse_args()
    gens = {"reuse": Generator(args.bundle), "scratch": Generator(args.bundle)}
    ttft: dict[str, list[list[float]]] = {mode: [[] for _ in range(args.turns)] for mode in gens}
    shape: list[tuple[int, int]] = []  # per turn: (prompt tokens, reused tokens)
    for rep in range(args.repeats):
        for gen in gens.values():
            gen.runner.reset()  # each conversation starts from an empty cache
        chats = {
            mode: gen.chat(system=args.system, reuse=mode == "reuse", max_new_tokens=args.max_new_tokens)
            for mode, gen in gens.items()
        }
        for turn in range(args.turns):
            results = {mode: chat.send(QUESTIONS[turn]) for mode, chat in chats.items()}
            if results["reuse"].token_ids != results["scratch"].token_ids:
                _report_parting(turn, results, gens["scratch"])
                chats["scratch"].messages[-1] = dict(chats["reuse"].messages[-1])
            for mode, r in results.items():
                ttft[mode][turn].append(r.timings.ttft_s * 1000)
            if rep == 0:
                r = results["reuse"]
                shape.append((len(r.prompt_token_ids), r.timings.reused_tokens))
                print(f"turn {turn + 1}: {r.text.strip()[:70]!r}", file=sys.stderr)
    print(f"{args.bundle}: {args.turns} turns, {args.repeats} repeats, time to first token (median ms)")
    print(f"{'turn':>4} {'prompt':>7} {'reused':>7} {'reuse ms':>9} {'scratch ms':>11} {'speed-up':>9}")
    for turn in range(args.turns):
        reuse = statistics.median(ttft["reuse"][turn])
        scratch = statistics.median(ttft["scratch"][turn])
        prompt, reused = shape[turn]
        print(
            f"{turn + 1:>4} {prompt:>7} {reused:>7} {reuse:>9.1f} {scratch:>11.1f} {scratch / reuse:>8.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
