"""Export cost and size: single-method vs multifunction bundles, measured in one run.

    python benchmarks/export.py            # 4-layer dim-256 model and a ~110M-parameter Llama shape
    python benchmarks/export.py --small    # only the 4-layer dim-256 model

For each shape (random weights, Hugging Face layout, fp16): wall time of a
single-method export and of a multifunction export, the ratio of the
multifunction export to two single exports (the peer: what building the two
graphs separately costs), package and weight.bin sizes, and how many weight
blobs the decode function shares with prefill.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))

SHAPES = {
    "4L-256d": dict(dim=256, n_layers=4, n_heads=8, n_kv_heads=4, hidden_dim=688, vocab_size=4096),
    "110M": dict(
        dim=768,
        n_layers=12,
        n_heads=12,
        n_kv_heads=12,
        hidden_dim=2048,
        vocab_size=32000,
        tied_embeddings=True,
    ),
}


def dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def timed_export(out: Path, ckpt: Path, multifunction: bool, input_len: int, context: int) -> float:
    import staticllm

    start = time.perf_counter()
    staticllm.export(
        out,
        hf_dir=ckpt,
        input_len=input_len,
        max_context_len=context,
        multifunction=multifunction,
        dtype="fp16",
        progress=False,
    )
    return time.perf_counter() - start


def run(name: str, shape: dict, tmp: Path, input_len: int, context: int) -> None:
    from llama_fixtures import make_hf_checkpoint, tiny_config
    from staticllm.inspect import weight_sharing

    cfg = tiny_config(**shape)
    sd = __import__("llama_fixtures").random_state_dict(cfg)
    n_params = sum(v.numel() for k, v in sd.items() if not (cfg.tied_embeddings and k == "lm_head.weight"))
    ckpt = make_hf_checkpoint(tmp / f"{name}-hf", cfg, with_tokenizer=False)
    single = tmp / f"{name}-single"
    multi = tmp / f"{name}-multi"
    t_single = timed_export(single, ckpt, False, input_len, context)
    t_multi = timed_export(multi, ckpt, True, input_len, context)
    wb = "model.mlpackage/Data/com.apple.CoreML/weights/weight.bin"
    w_single, w_multi = (single / wb).stat().st_size, (multi / wb).stat().st_size
    share = weight_sharing(multi)
    print(f"\n== {name}: {n_params / 1e6:.1f}M parameters, fp16, input_len {input_len}, context {context}")
    print(
        f"export time   single {t_single:7.1f} s   multifunction {t_multi:7.1f} s   "
        f"multifunction / (2 x single) = {t_multi / (2 * t_single):.2f}"
    )
    print(
        f"package size  single {dir_size(single / 'model.mlpackage') / 1e6:7.1f} MB  "
        f"multifunction {dir_size(multi / 'model.mlpackage') / 1e6:7.1f} MB"
    )
    print(
        f"weight.bin    single {w_single / 1e6:7.1f} MB  multifunction {w_multi / 1e6:7.1f} MB  "
        f"ratio {w_multi / w_single:.4f}"
    )
    print(
        f"shared blobs  decode {share['decode']['shared']}/{share['decode']['blobs']}   "
        f"prefill {share['prefill']['shared']}/{share['prefill']['blobs']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="only the 4-layer dim-256 shape")
    ap.add_argument("--input-len", type=int, default=32)
    ap.add_argument("--max-context-len", type=int, default=512)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="staticllm-bench-") as d:
        for name, shape in SHAPES.items():
            if args.small and name != "4L-256d":
                continue
            run(name, shape, Path(d), args.input_len, args.max_context_len)


if __name__ == "__main__":
    main()
