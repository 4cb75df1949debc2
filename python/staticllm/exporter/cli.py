"""`staticllm export`."""

from __future__ import annotations

import argparse
import json
import signal
import time
from typing import Any

from staticllm.bundle_layout import bundle_paths
from staticllm.exporter.quality_gate import DEFAULT_MIN_SNR_DB
from staticllm.exporter.quantize import DEFAULT_BLOCK_SIZE, DEFAULT_GROUP_SIZE, MODES, describe_plan
from staticllm.llm_section import describe_target, quality_record, quantization_record


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds, so the export removes its partial files


def _run(args: argparse.Namespace) -> int:
    from staticllm.exporter import export

    if args.checkpoint is None and args.params is not None:
        raise SystemExit("staticllm export: --params goes with --checkpoint")
    head, topk = _head(args.head)
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
        group_size=args.group_size,
        block_size=args.block_size,
        quantize_embeddings=args.quantize_embeddings,
        quantize_head=args.quantize_head,
        quantize_config=args.quantize_config,
        calibration_text=args.calibration_text,
        min_snr=args.min_snr,
        force=args.force,
        target=args.target,
        ane_max_dim=args.ane_max_dim,
        head=head,
        topk=topk,
    )
    kind = "prefill + decode (multifunction)" if args.multifunction else "forward (single method)"
    metadata = json.loads(bundle_paths(out).metadata.read_text())
    quant = describe_plan(quantization_record(metadata))
    print(
        f"wrote {out}: {kind}, {args.dtype}, target {describe_target(metadata)}, quantize={quant}, "
        f"{time.perf_counter() - start:.1f} s"
    )
    q = quality_record(metadata)
    if q:
        forced = " (below the minimum, written because of --force)" if q["forced"] else ""
        print(
            f"quality vs {q['reference']} on {q['tokens_scored']} tokens: SNR {q['snr_db']:.1f} dB{forced}, "
            f"perplexity {q['perplexity']:.3f} vs {q['reference_perplexity']:.3f} "
            f"(ratio {q['ppl_ratio']:.3f}), top-1 agreement {100 * q['top1_agreement']:.1f} %"
        )
    return 0


def _head(words: list[str] | None) -> tuple[str | None, int | None]:
    """--head logits | argmax | topk K."""
    if not words:
        return None, None
    mode, rest = words[0], words[1:]
    if mode == "topk":
        if len(rest) != 1 or not rest[0].isdigit():
            raise SystemExit(f"staticllm export: --head topk takes K, the candidates per chunk (got {rest})")
        return mode, int(rest[0])
    if rest:
        raise SystemExit(f"staticllm export: --head {mode} takes no value (got {rest})")
    return mode, None


def register(subparsers: argparse._SubParsersAction, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="export a checkpoint (Llama, Qwen2/3, Gemma 3, Mistral, Phi-3) to a bundle",
        description="Export a Meta, Hugging Face or GGUF checkpoint of a supported family (Llama, "
        "Qwen2/3, Gemma 3, Mistral, Phi-3) to a Core ML bundle: "
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
    q = p.add_argument_group(
        "quantization",
        "int8: per output channel; int4: symmetric, a scale per block of --block-size input channels; "
        "palettize4/6: a k-means lookup table per group of --group-size output channels, each value's "
        "error weighed by its input channel's activations on the calibration text. With a 4-bit body "
        "the embeddings and LM head are int8 unless chosen. Norm weights, biases and rotary tables are "
        "never quantized.",
    )
    q.add_argument("--quantize", choices=list(MODES), default="none", help="mode of the body's weights")
    q.add_argument(
        "--group-size", type=int, help=f"palettize: output channels per lookup table ({DEFAULT_GROUP_SIZE})"
    )
    q.add_argument("--block-size", type=int, help=f"int4: input channels per scale ({DEFAULT_BLOCK_SIZE})")
    q.add_argument(
        "--quantize-embeddings",
        choices=list(MODES),
        help="mode of the embeddings (default: int8 under a 4-bit body, else the body's)",
    )
    q.add_argument(
        "--quantize-head",
        choices=list(MODES),
        help="mode of the LM head (default: int8 under a 4-bit body, else the body's; one tensor with "
        "the embeddings when tied)",
    )
    q.add_argument(
        "--quantize-config",
        metavar="FILE",
        help="JSON/YAML file of per-layer rules (op-name patterns, layer ranges -> mode); see README",
    )
    g = p.add_argument_group(
        "quality gate",
        "a quantized or fp16 export is compared with the fp32 torch model on a calibration text; the SNR, "
        "perplexity ratio and top-1 agreement are printed and recorded in metadata.json (llm.quality)",
    )
    g.add_argument(
        "--calibration-text", metavar="FILE", help="text for the gate (default: the built-in text)"
    )
    g.add_argument(
        "--min-snr",
        type=float,
        metavar="DB",
        default=DEFAULT_MIN_SNR_DB,
        help="refuse to write a bundle whose logits SNR is below DB; the default is set from "
        "SmolLM2-135M, where fp16, int8 and palettize4 measure 54, 32 and 17 dB (perplexity within 1.2x "
        "of fp32) and int4 with one scale per row 9.3 dB (2.1x), a per-tensor uniform palette -2.6 dB",
    )
    g.add_argument("--force", action="store_true", help="write the bundle even if it misses --min-snr")
    t = p.add_argument_group(
        "target",
        "generic: the graph for a CPU or GPU. ane: shaped by the Apple Neural Engine rules (fp16 "
        "everywhere, 1x1 convs on [1, C, 1, S] data, attention per head, an fp16-safe RMSNorm, a finite "
        "mask, rotary cos/sin as inputs, the LM head and embeddings in chunks); the export runs "
        "`staticllm check` on what it wrote and fails on any error",
    )
    t.add_argument(
        "--target", choices=["generic", "ane"], default="generic", help="what the graph is shaped for"
    )
    t.add_argument(
        "--ane-max-dim",
        type=int,
        metavar="N",
        help="ane: rows per LM head and embedding chunk (16384, the A14/A15 limit; 65536 on A16 and later)",
    )
    t.add_argument(
        "--head",
        nargs="+",
        metavar="MODE",
        help="ane: 'logits' (default: the logits, in chunks), 'argmax' or 'topk K' (the largest logit(s) of "
        "each chunk and their ids, computed in the model; greedy and top-k sampling with top_k <= K only)",
    )
    p.add_argument("--tokenizer", help="tokenizer.json or tokenizer.model to ship in the bundle")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
