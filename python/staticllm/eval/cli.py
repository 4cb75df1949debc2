"""`staticllm eval`: perplexity of a bundle, and its distance to a reference.

Exit status: 0 when every given threshold is met, 1 when one is missed
(each missed threshold is named on stderr), 2 on an error.
"""

from __future__ import annotations

import argparse
import json
import sys


def _run(args: argparse.Namespace) -> int:
    from staticllm.eval import evaluate
    from staticllm.eval.text import read_text

    if args.reference_params is not None and args.reference_checkpoint is None:
        raise SystemExit("staticllm eval: --reference-params goes with --reference-checkpoint")
    if (args.min_snr is not None or args.max_ppl_ratio is not None) and not _has_reference(args):
        raise SystemExit("staticllm eval: --min-snr and --max-ppl-ratio need a reference (--reference-...)")
    result = evaluate(
        args.bundle,
        None if args.text is None else read_text(args.text),
        text_name=args.text,
        windows=args.windows,
        window_len=args.window_len,
        reference_hf_dir=args.reference_hf_dir,
        reference_gguf=args.reference_gguf,
        reference_checkpoint=args.reference_checkpoint,
        reference_params=args.reference_params,
        reference_bundle=args.reference_bundle,
        backend=args.backend,
        mmap=not args.no_mmap,
        progress=not args.quiet,
    )
    missed = result.failures(args.min_snr, args.max_ppl_ratio)
    if args.json:
        print(json.dumps({**result.to_dict(), "failures": missed}, indent=2))
    else:
        print(result.summary())
    for line in missed:
        print(f"staticllm eval: FAILED: {line}", file=sys.stderr)
    return 1 if missed else 0


def _has_reference(args: argparse.Namespace) -> bool:
    return any(
        v is not None
        for v in (
            args.reference_hf_dir,
            args.reference_gguf,
            args.reference_checkpoint,
            args.reference_bundle,
        )
    )


def register(subparsers: argparse._SubParsersAction, name: str) -> None:
    from staticllm.generate.cli import add_load_args

    p = subparsers.add_parser(
        name,
        help="perplexity of a bundle; SNR, top-1 and KL against a reference",
        description="Perplexity of a bundle over a text, cut into windows and tokenized with the bundle's "
        "tokenizer. With a reference model (fed the same token ids): its perplexity, the logits SNR in dB "
        "(per row 10*log10(|ref|^2 / |ref - bundle|^2), averaged), top-1 agreement and mean "
        "KL(ref || bundle). Single-method bundles are scored through forward's full logits; multifunction "
        "bundles through decode steps (prefill returns only the last row's logits). "
        "Exit status 1 when a threshold is missed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--text", metavar="FILE", help="UTF-8 text to score (default: the built-in English text)")
    p.add_argument("--windows", type=int, default=4, help="number of windows")
    p.add_argument("--window-len", type=int, default=512, help="tokens per window")
    ref = p.add_mutually_exclusive_group()
    ref.add_argument(
        "--reference-hf-dir", metavar="DIR", help="Hugging Face model directory (transformers, fp32)"
    )
    ref.add_argument("--reference-gguf", metavar="FILE", help="GGUF file (transformers, dequantized to fp32)")
    ref.add_argument(
        "--reference-checkpoint", metavar="FILE", help="Meta consolidated.pth (staticllm's torch model, fp32)"
    )
    ref.add_argument("--reference-bundle", metavar="DIR", help="another bundle with the same vocabulary")
    p.add_argument("--reference-params", metavar="FILE", help="params.json for --reference-checkpoint")
    p.add_argument("--min-snr", type=float, metavar="DB", help="exit 1 if the logits SNR is below DB")
    p.add_argument("--max-ppl-ratio", type=float, metavar="R", help="exit 1 if perplexity / reference's > R")
    add_load_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
