"""`staticllm.evaluate`: a bundle's perplexity over a text, and how far its
logits are from a reference model's on the same token ids.

    result = staticllm.evaluate("bundle", reference_gguf="model.gguf")
    print(result.perplexity, result.snr_db, result.top1_agreement)

The text (the built-in one unless given) is tokenized once with the bundle's
tokenizer and cut into windows; bundle and reference see the same ids, so a
reference tokenizer that splits text differently cannot skew the comparison.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from staticllm.errors import InputError
from staticllm.eval import text as text_mod
from staticllm.eval.metrics import Totals
from staticllm.eval.models import BundleModel, TorchModel, checkpoint_model, transformers_model

__all__ = ["EvalResult", "evaluate"]


@dataclass
class EvalResult:
    bundle: str
    how: str  # which method produced the logits: "forward (full logits)" or "decode steps"
    text: str  # "built-in text", a file name, or "token ids"
    windows: int
    window_len: int
    tokens_scored: int
    perplexity: float
    reference: str | None = None
    reference_perplexity: float | None = None
    ppl_ratio: float | None = None  # bundle / reference
    snr_db: float | None = None  # mean over rows of 10 log10(|ref|^2 / |ref - bundle|^2)
    top1_agreement: float | None = None  # fraction of rows with the same argmax
    mean_kl: float | None = None  # mean KL(reference || bundle), nats
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        # JSON has no infinity: identical logits (SNR +inf) are written as null
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()
        }

    def failures(self, min_snr: float | None = None, max_ppl_ratio: float | None = None) -> list[str]:
        """The thresholds this result misses, each as a sentence."""
        out = []
        if (min_snr is not None or max_ppl_ratio is not None) and self.reference is None:
            raise InputError("--min-snr and --max-ppl-ratio compare against a reference; give one")
        if min_snr is not None and self.snr_db is not None and self.snr_db < min_snr:
            out.append(f"logits SNR {self.snr_db:.2f} dB is below the minimum {min_snr:g} dB")
        if max_ppl_ratio is not None and self.ppl_ratio is not None and self.ppl_ratio > max_ppl_ratio:
            out.append(f"perplexity ratio {self.ppl_ratio:.4f} is above the maximum {max_ppl_ratio:g}")
        return out

    def summary(self) -> str:
        lines = [
            f"bundle       {self.bundle}  [{self.how}]",
            f"text         {self.text}: {self.windows} window(s) of {self.window_len} tokens, "
            f"{self.tokens_scored} scored",
            f"perplexity   {self.perplexity:.4f}",
        ]
        if self.reference is not None:
            lines += [
                f"reference    {self.reference}: perplexity {self.reference_perplexity:.4f}, "
                f"ratio {self.ppl_ratio:.4f}",
                f"logits SNR   {self.snr_db:.2f} dB",
                f"top-1 agree  {100 * (self.top1_agreement or 0):.2f} %",
                f"mean KL      {self.mean_kl:.5f} nats",
            ]
        lines.append(f"time         {self.seconds:.1f} s")
        return "\n".join(lines)


def _reference(
    window_len: int,
    reference: Any,
    hf_dir: str | Path | None,
    gguf: str | Path | None,
    checkpoint: str | Path | None,
    params: str | Path | None,
    bundle: str | Path | None,
    backend: str,
    mmap: bool,
    progress: bool,
) -> Any:
    given = {
        "reference": reference,
        "reference_hf_dir": hf_dir,
        "reference_gguf": gguf,
        "reference_checkpoint": checkpoint,
        "reference_bundle": bundle,
    }
    named = [k for k, v in given.items() if v is not None]
    if len(named) > 1:
        raise InputError(f"give at most one reference, got {', '.join(named)}")
    if params is not None and checkpoint is None:
        raise InputError("reference_params goes with reference_checkpoint")
    if reference is not None:
        return reference if hasattr(reference, "window_logits") else TorchModel(reference, "torch model")
    if hf_dir is not None:
        return transformers_model(hf_dir, gguf=False, progress=progress)
    if gguf is not None:
        return transformers_model(gguf, gguf=True, progress=progress)
    if checkpoint is not None:
        return checkpoint_model(checkpoint, params, window_len)
    if bundle is not None:
        return BundleModel(bundle, backend, mmap=mmap)
    return None


def _token_windows(
    model: BundleModel,
    text: str | None,
    text_name: str | None,
    token_ids: Sequence[int] | None,
    n: int,
    length: int,
) -> tuple[list[list[int]], str]:
    if token_ids is not None:
        if text is not None:
            raise InputError("give a text or token ids, not both")
        ids, prefix, name = [int(t) for t in token_ids], [], "token ids"
    else:
        tok = model.tokenizer()
        if tok is None:
            raise InputError(f"bundle {model.path} has no tokenizer (llm.tokenizer); pass token ids instead")
        name = text_name or (text_mod.BUILTIN if text is None else "given text")
        prefix, ids = text_mod.encode(tok, text_mod.builtin_text() if text is None else text)
    bad = next((t for t in ids if not 0 <= t < model.vocab_size), None)
    if bad is not None:
        raise InputError(f"token id {bad} is outside the bundle's vocabulary [0, {model.vocab_size})")
    return text_mod.windows(ids, n, length, prefix), name


def evaluate(
    bundle: str | Path | BundleModel,
    text: str | PathLike[str] | None = None,
    *,
    text_name: str | None = None,
    token_ids: Sequence[int] | None = None,
    windows: int = 4,
    window_len: int = 512,
    reference: Any = None,
    reference_hf_dir: str | Path | None = None,
    reference_gguf: str | Path | None = None,
    reference_checkpoint: str | Path | None = None,
    reference_params: str | Path | None = None,
    reference_bundle: str | Path | None = None,
    backend: str = "auto",
    mmap: bool = True,
    progress: bool = True,
) -> EvalResult:
    """Perplexity of `bundle` over `text` (a string, a path to a UTF-8 file,
    or None for the built-in text) in
    `windows` windows of `window_len` tokens, and with a reference its
    perplexity on the same ids, the logits SNR, top-1 agreement and KL.

    `reference` may be a torch module (transformers or staticllm's export
    model) or any object with `window_logits(ids)` and `vocab_size`.
    `backend` and `mmap` say how bundles are loaded (staticllm.Runtime.load).
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    if isinstance(text, PathLike):  # a file rather than the text itself
        text_name = text_name or Path(text).name
        text = text_mod.read_text(text)
    model = bundle if isinstance(bundle, BundleModel) else BundleModel(bundle, backend, mmap=mmap)
    if window_len > model.max_window:
        raise InputError(
            f"window length {window_len} exceeds what bundle {model.path} can hold "
            f"(its context limit of {model.max_window} tokens); "
            f"pass a window length of {model.max_window} or less"
        )
    wins, name = _token_windows(model, text, text_name, token_ids, windows, window_len)
    ref = _reference(
        window_len,
        reference,
        reference_hf_dir,
        reference_gguf,
        reference_checkpoint,
        reference_params,
        reference_bundle,
        backend,
        mmap,
        progress,
    )
    if ref is not None and ref.vocab_size != model.vocab_size:
        raise InputError(
            f"the reference ({ref.name}) has a vocabulary of {ref.vocab_size} tokens, the bundle "
            f"{model.vocab_size}: they do not share token ids, so their logits cannot be compared"
        )
    totals = Totals()
    bar = tqdm(
        total=sum(len(w) - 1 for w in wins), desc="eval", unit="tok", disable=not progress, leave=False
    )
    try:
        import numpy as np

        for w in wins:
            logits = model.window_logits(w, bar.update)
            ref_logits = None if ref is None else ref.window_logits(w)
            totals.add(logits, np.asarray(w[1:]), ref_logits)
    finally:
        bar.close()
    result = EvalResult(
        bundle=str(model.path),
        how=model.how,
        text=name,
        windows=len(wins),
        window_len=window_len,
        tokens_scored=totals.rows,
        perplexity=totals.perplexity(),
    )
    if ref is not None:
        result.reference = ref.name
        result.reference_perplexity = totals.reference_perplexity()
        result.ppl_ratio = result.perplexity / result.reference_perplexity
        result.snr_db = totals.snr_db / totals.rows
        result.top1_agreement = totals.top1 / totals.rows
        result.mean_kl = totals.kl / totals.rows
    result.seconds = time.perf_counter() - start
    return result
