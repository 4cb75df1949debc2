"""What eval compares: the bundle, and a reference giving logits for the same
token ids (a Hugging Face directory or a GGUF file through transformers, a
Meta checkpoint or an in-memory model through staticllm's torch model, or
another bundle).

Each model maps a window of ids to the logits after each of its first
len(ids) - 1 tokens, [len(ids) - 1, vocab] float32: row j predicts ids[j + 1].
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from staticllm.errors import InputError, StaticLLMError


class BundleModel:
    """A bundle run through its own methods.

    A method with full logits (single-method bundles' `forward`) scores
    input_len tokens per call. A multifunction bundle's prefill returns only
    the last row's logits, so scoring every position through it would take
    one full prefill call per token; instead every token goes through decode,
    one call each, which yields every position's logits exactly as generation
    sees them (prefill and decode share their weights).
    """

    def __init__(self, path: str | Path, backend: str = "auto", mmap: bool = True) -> None:
        from staticllm.bundle_layout import bundle_paths
        from staticllm.generate.runner import Runner
        from staticllm.llm_section import LLMSpec
        from staticllm.runtime import Runtime

        self.path = Path(path)
        self.runtime = Runtime.load(str(self.path), backend=backend, mmap=mmap)
        self.spec = LLMSpec.from_metadata(self.runtime.metadata, str(bundle_paths(self.path).metadata))
        head = self.spec.io.head_spec()
        if not head.full_logits:
            raise InputError(
                f"bundle {self.path} returns the top {head.k} logit(s) of each vocabulary chunk "
                f"(head {head.mode}), not the logits eval compares; export it with --head logits "
                f"to evaluate it"
            )
        self.runner = Runner(self.runtime, self.spec)
        self.vocab_size = self.spec.vocab_size
        self.name = f"bundle {self.path}"
        self.full_logits = self.runner.prefill_io.full_logits
        self.how = (
            f"{self.spec.prefill_method} (full logits)"
            if self.full_logits
            else f"{self.spec.decode_method} steps"
        )

    @property
    def max_window(self) -> int:
        """Longest window: its context limit (references see every position)."""
        return self.spec.context_limit

    def tokenizer(self) -> Any:
        if self.spec.tokenizer is None:
            return None
        from staticllm.tokenizers import load_tokenizer

        cfg = self.spec.tokenizer_config
        return load_tokenizer(self.path / self.spec.tokenizer, None if cfg is None else self.path / cfg)

    def window_logits(self, ids: list[int], on_tokens: Callable[[int], Any] = lambda n: None) -> np.ndarray:
        runner = self.runner
        runner.reset()
        feed = ids[:-1]
        rows: list[np.ndarray] = []
        if self.full_logits:
            n = runner.prefill_io.n_rows
            for start in range(0, len(feed), n):
                runner.feed(feed[start : start + n], rows=rows)
                on_tokens(len(feed[start : start + n]))
        else:
            for token in feed:
                rows.append(np.asarray(runner.step(token))[None])
                on_tokens(1)
        return np.concatenate(rows).astype(np.float32)


class TorchModel:
    """Logits from a torch module: transformers (input_ids -> .logits) or
    staticllm's export model (tokens, positions, mask, caches -> logits)."""

    def __init__(self, module: Any, name: str) -> None:
        self.module = module
        self.name = name
        cfg = getattr(module, "cfg", None)
        self.staticllm_model = cfg is not None and hasattr(module, "logits_mode")
        self.vocab_size = int(cfg.vocab_size if self.staticllm_model else module.config.vocab_size)

    def window_logits(self, ids: list[int], on_tokens: Callable[[int], Any] = lambda n: None) -> np.ndarray:
        import torch

        with torch.no_grad():
            if self.staticllm_model:
                logits = self._staticllm_logits(torch.tensor([ids], dtype=torch.int32))
            else:
                logits = self.module(input_ids=torch.tensor([ids], dtype=torch.long)).logits[0]
        return logits[:-1].float().numpy()

    def _staticllm_logits(self, tokens: Any) -> Any:
        return self.module.sequence_logits(tokens)


def transformers_model(path: str | Path, gguf: bool, progress: bool = True) -> TorchModel:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    p = Path(path)
    if not (p.is_file() if gguf else p.is_dir()):
        raise InputError(f"reference {'GGUF file' if gguf else 'Hugging Face directory'} not found: {p}")
    bars = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        if gguf:
            module = AutoModelForCausalLM.from_pretrained(
                str(p.parent), gguf_file=p.name, dtype=torch.float32
            )
        else:
            module = AutoModelForCausalLM.from_pretrained(str(p), dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"transformers cannot load the reference {p}: {exc}") from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return TorchModel(module.eval(), f"transformers {p.name}")


def checkpoint_model(checkpoint: str | Path, params: str | Path | None, window_len: int) -> TorchModel:
    """A Meta consolidated.pth through staticllm's torch model (fp32)."""
    from staticllm.exporter import build_model
    from staticllm.exporter.checkpoints import load_meta

    try:
        model = build_model(load_meta(checkpoint, params), window_len)
    except StaticLLMError as exc:
        raise InputError(f"cannot load the reference checkpoint {checkpoint}: {exc}") from exc
    return TorchModel(model, f"checkpoint {Path(checkpoint).name}")
