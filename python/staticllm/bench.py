"""`staticllm bench BUNDLE`: load time, time to first token, prefill and decode
speed over several trials, peak memory and the machine, in the manner of
llama-bench. The prompt is random token ids (a static graph costs the same
whatever the tokens); generation is greedy with end-of-sequence ignored, so
every trial generates exactly --gen-tokens tokens."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from staticllm.errors import InputError
from staticllm.generate.cli import add_load_args


def register(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="measure load time, time to first token and tokens/s of a bundle",
        description=__doc__,
    )
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory (with an llm section)")
    p.add_argument(
        "--prompt-tokens",
        type=int,
        default=512,
        metavar="N",
        help="prompt length (default 512; lowered to fit the context with --gen-tokens)",
    )
    p.add_argument("--gen-tokens", type=int, default=128, metavar="N", help="tokens generated (default 128)")
    p.add_argument("--trials", type=int, default=5, metavar="N", help="timed trials (default 5)")
    p.add_argument("--warmup", type=int, default=1, metavar="N", help="untimed trials first (default 1)")
    p.add_argument("--lookahead", action="store_true", help="lookahead decoding (single-method bundles)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random prompt")
    add_load_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for flag, value, low in (
        ("--prompt-tokens", args.prompt_tokens, 1),
        ("--gen-tokens", args.gen_tokens, 1),
        ("--trials", args.trials, 1),
        ("--warmup", args.warmup, 0),
    ):
        if value < low:
            raise InputError(f"{flag} must be >= {low}, got {value}")
    report = bench(
        args.bundle,
        args.prompt_tokens,
        args.gen_tokens,
        args.trials,
        args.warmup,
        args.lookahead,
        args.seed,
        args.backend,
        mmap=not args.no_mmap,
        progress=not args.json,
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def bench(
    bundle: str | Path,
    prompt_tokens: int = 512,
    gen_tokens: int = 128,
    trials: int = 5,
    warmup: int = 1,
    lookahead: bool = False,
    seed: int = 0,
    backend: str = "auto",
    mmap: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """The measurements as a dict (what --json prints)."""
    from staticllm.generate import Generator

    start = time.perf_counter()
    gen = Generator(bundle, backend=backend, mmap=mmap)
    load_s = time.perf_counter() - start
    limit = gen.spec.context_limit
    if gen_tokens >= limit:
        raise InputError(
            f"--gen-tokens {gen_tokens} leaves no room for a prompt in the context of {limit} tokens"
        )
    notes = []
    if prompt_tokens + gen_tokens > limit:
        notes.append(f"prompt tokens lowered from {prompt_tokens} to {limit - gen_tokens} to fit the context")
        prompt_tokens = limit - gen_tokens
    prompt = np.random.default_rng(seed).integers(0, gen.spec.vocab_size, prompt_tokens).tolist()
    options = dict(max_new_tokens=gen_tokens, ignore_eos=True, lookahead=lookahead)
    runs = []
    from tqdm import tqdm

    for i in tqdm(range(warmup + trials), desc="trials", disable=not progress, file=sys.stderr):
        t = gen.generate(prompt, **options).timings
        if i >= warmup:
            runs.append(t)
    return {
        "bundle": str(bundle),
        "methods": {"prefill": gen.spec.prefill_method, "decode": gen.spec.decode_method},
        "backend": gen.runtime.backend,
        "lookahead": lookahead,
        "prompt_tokens": prompt_tokens,
        "gen_tokens": gen_tokens,
        "trials": trials,
        "load_s": load_s,
        "ttft_ms": _summary([t.ttft_s * 1000 for t in runs]),
        "prefill_tokens_per_s": _summary([t.prefill_tokens_per_s for t in runs]),
        "decode_tokens_per_s": _summary([t.decode_tokens_per_s for t in runs]),
        "peak_rss_mb": _peak_rss_mb(),
        "machine": machine(),
        "notes": notes,
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def machine() -> dict[str, Any]:
    from staticllm import _core

    env = os.environ.get("STATICLLM_NUM_THREADS", "")
    return {
        "cpu": _cpu_name(),
        "arch": platform.machine(),
        "os": platform.platform(terse=True),
        "simd": _core.simd_level(),
        "threads": int(env) if env.isdigit() and int(env) > 0 else os.cpu_count(),
        "python": platform.python_version(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_report(r: dict[str, Any]) -> str:
    m = r["machine"]
    methods = f"{r['methods']['prefill']} -> {r['methods']['decode']}"
    lookahead = ", lookahead" if r["lookahead"] else ""
    lines = [
        f"bundle: {r['bundle']} ({methods}, backend {r['backend']}{lookahead})",
        f"machine: {m['cpu']} ({m['arch']}), SIMD {m['simd']}, {m['threads']} threads",
        f"load: {r['load_s']:.2f} s   peak RSS: "
        + ("n/a" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f} MB"),
        f"{r['prompt_tokens']} prompt tokens, {r['gen_tokens']} generated, {r['trials']} trials",
        f"{'':24}{'median':>10}{'min':>10}{'max':>10}",
    ]
    for key, label in (
        ("ttft_ms", "time to first token ms"),
        ("prefill_tokens_per_s", "prefill tokens/s"),
        ("decode_tokens_per_s", "decode tokens/s"),
    ):
        s = r[key]
        lines.append(f"{label:24}{s['median']:>10.1f}{s['min']:>10.1f}{s['max']:>10.1f}")
    lines += [f"note: {n}" for n in r["notes"]]
    return "\n".join(lines)
