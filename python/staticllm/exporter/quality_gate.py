"""The quality gate at export.

A quantized (or fp16) export runs its written bundle through the interpreter
and the unquantized fp32 torch model over a short calibration text (the last
CALIBRATION_TOKENS of it: the default eval windows start at the built-in
text's beginning), records the logits SNR, perplexity ratio, top-1 agreement,
KL and its own time in the llm section (`quality`), and refuses the bundle
(ExportError, nothing written) when the SNR is below the minimum, unless
forced. The same calibration ids weigh palettization's k-means
(quantize_importance), so they are tokenized once for both.

The default minimum, 12 dB, comes from SmolLM2-135M-Instruct: fp16 measures
54 dB, int8 31.7 dB and palettize4 (a weighted table per channel, int8 ends)
17.0 dB, perplexity ratios 1.00, 1.01 and 1.16, and pass; int4 with one scale
per row (what blocks of 1024 mean on its 576-wide rows) measures 9.3 dB at a
ratio of 2.1, palettize4 as first built (tables per 16 channels, 4-bit tied
head) 5.0 dB at 5.4x, the retired per-tensor uniform palette -2.6 dB, and fail.
12 dB sits between the best failing figure and palettize4's SNR over the full
eval text (15.9 dB), with room on both sides (README, "The quality gate").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from staticllm.bundle_layout import bundle_paths
from staticllm.errors import ExportError

DEFAULT_MIN_SNR_DB = 12.0
CALIBRATION_TOKENS = 128


@dataclass(frozen=True)
class Calibration:
    ids: list[int]
    name: str  # for the record: "built-in text, last 128 tokens"


@dataclass(frozen=True)
class Gate:
    active: bool
    what: str  # what is compared: "fp16 model quantized palettize4 (group_size 1), ..."
    text: str | None  # calibration text; None = the built-in one
    text_name: str
    min_snr: float
    force: bool

    @classmethod
    def for_export(
        cls,
        plan: Any,
        dtype: str,
        calibration_text: str | Path | None,
        min_snr: float | None,
        force: bool,
        full_logits: bool = True,
    ) -> Gate:
        """Checked before the export starts, so a bad option fails at once.
        A bundle whose head returns no logits (argmax / top-k) cannot be
        scored: the gate is off for it."""
        from staticllm.errors import InputError
        from staticllm.eval.text import BUILTIN, read_text

        text = None
        if calibration_text is not None:
            try:
                text = read_text(calibration_text)
            except InputError as exc:
                raise ExportError(f"calibration text: {exc}") from None
        if min_snr is not None and not isinstance(min_snr, (int, float)):
            raise ExportError(f"min_snr must be a number of dB, got {min_snr!r}")
        from staticllm.exporter.quantize import describe_plan

        what = (
            f"{dtype} model" if plan.is_none else f"{dtype} model quantized {describe_plan(plan.to_dict())}"
        )
        return cls(
            active=full_logits and (not plan.is_none or dtype == "fp16"),
            what=what,
            text=text,
            text_name=BUILTIN if calibration_text is None else Path(calibration_text).name,
            min_snr=DEFAULT_MIN_SNR_DB if min_snr is None else float(min_snr),
            force=force,
        )

    def calibration(self, tokenizer: Any, vocab_size: int, max_window: int) -> Calibration:
        """The calibration token ids: the last CALIBRATION_TOKENS of the text
        (the default eval windows start at the built-in text's beginning, so
        the gate and the quantizer's importance never see what eval scores)."""
        from staticllm.eval.text import builtin_text, encode

        limit = min(CALIBRATION_TOKENS, max_window)
        if tokenizer is None:
            import numpy as np

            ids = np.random.default_rng(0).integers(0, vocab_size, limit).tolist()
            return Calibration(ids, "random token ids (no tokenizer)")
        prefix, ids = encode(tokenizer, builtin_text() if self.text is None else self.text)
        ids = prefix + ids[-max(limit - len(prefix), 1) :]
        if len(ids) < 2:
            raise ExportError(f"calibration text {self.text_name} has fewer than 2 tokens; give a longer one")
        return Calibration(ids, f"{self.text_name}, last {len(ids) - len(prefix)} tokens")

    def run(
        self, staging: Path, model: Any, calibration: Calibration, progress: bool = False
    ) -> dict[str, Any]:
        """Measures the staged bundle; records the figures in its metadata or raises."""
        import time

        from staticllm.eval import evaluate
        from staticllm.eval.models import BundleModel, TorchModel

        start = time.perf_counter()
        name = calibration.name
        result = evaluate(
            BundleModel(staging, backend="mil"),
            token_ids=calibration.ids,
            windows=1,
            window_len=len(calibration.ids),
            reference=TorchModel(model, "fp32 torch model"),
            progress=progress,
        )
        quality = {
            "reference": "fp32 torch model",
            "calibration": name,
            "tokens_scored": result.tokens_scored,
            "snr_db": round(float(result.snr_db), 3),
            "perplexity": round(result.perplexity, 4),
            "reference_perplexity": round(float(result.reference_perplexity), 4),
            "ppl_ratio": round(float(result.ppl_ratio), 5),
            "top1_agreement": round(float(result.top1_agreement), 5),
            "mean_kl": round(float(result.mean_kl), 6),
            "min_snr_db": self.min_snr,
            "forced": False,
            "seconds": round(time.perf_counter() - start, 1),
        }
        if result.snr_db < self.min_snr:
            if not self.force:
                raise ExportError(
                    f"quality gate: the {self.what}: its logits are {result.snr_db:.1f} dB SNR from the "
                    f"fp32 model's on {result.tokens_scored} calibration tokens ({name}), below the minimum "
                    f"of {self.min_snr:g} dB (perplexity {result.perplexity:.2f} vs "
                    f"{result.reference_perplexity:.2f}, ratio {result.ppl_ratio:.3f}); nothing was written. "
                    f"Choose a gentler setting (int8, palettize6, a smaller group or block size, "
                    f"a --quantize-config keeping sensitive layers at 8 bits), lower --min-snr, or pass "
                    f"--force to write it anyway"
                )
            quality["forced"] = True
        _record(bundle_paths(staging).metadata, quality)
        return quality


def _record(path: Path, quality: dict[str, Any]) -> None:
    from staticllm.bundle_io import write_metadata
    from staticllm.llm_section import with_quality

    write_metadata(with_quality(json.loads(path.read_text()), quality), path)
