"""`staticllm export`."""

from __future__ import annotations

import argparse
import signal
import time
from typing import Any

from staticllm.exporter.quantize import MODES


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds, so the export removes its partial files


def _run(args: argparse.Namespace) -> int:
    from staticllm.exporter import export

    if args.checkpoint is None and args.params is not None:
        raise SystemExit("staticllm export: --params goes with --checkpoint")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    start = time.perf_counter()
    out = export(
        args.output,
        checkpoint=args.checkpoint,
        params=args.params,
        hf_dir=args.hf_dir,
        gguf=args.gguf,
        input_len=args.input_len,
        max_context_len=args.max_context_len,
        multifunction=args.multifunction,
        dtype=args.dtype,
        quantize=args.quantize,
        tokenizer=args.tokenizer,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    kind = "prefill + decode (multifunction)" if args.multifunction else "forward (single method)"
    print(f"wrote {out}: {kind}, {args.dtype}, quantize={args.quantize}, {time.perf_counter() - start:.1f} s")
    return 0


def register(subparsers: argparse._SubParsersAction, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="export a Llama-family checkpoint to a bundle",
        description="Export a Meta, Hugging Face or GGUF Llama-family checkpoint to a Core ML bundle: "
        "one method 'forward' (full logits, for lookahead decoding) or, with --multifunction, 'prefill' + "
        "'decode' sharing one copy of the weights.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="Meta consolidated.*.pth (params.json beside it, or --params)")
    src.add_argument("--hf-dir", help="Hugging Face directory: config.json + *.safetensors")
    src.add_argument("--gguf", help="GGUF file (llama.cpp); quantized tensors are dequantized")
    p.add_argument("--params", help="Meta params.json (default: next to --checkpoint)")
    p.add_argument("--output", required=True, help="bundle directory to create")
    p.add_argument("--input-len", type=int, default=32, help="tokens per forward/prefill call")
    p.add_argument("--max-context-len", type=int, default=1024, help="KV cache length")
    p.add_argument("--multifunction", action="store_true", help="export prefill + decode in one package")
    p.add_argument("--dtype", choices=["fp16", "fp32"], default="fp16", help="compute and I/O precision")
    p.add_argument("--quantize", choices=list(MODES), default="none", help="weight quantization")
    p.add_argument("--tokenizer", help="tokenizer.json or tokenizer.model to ship in the bundle")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
