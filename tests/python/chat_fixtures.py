"""Tiny random chat bundles: the llama_fixtures checkpoint with a ChatML
tokenizer (generate_fixtures), exported single-method and multifunction."""

from __future__ import annotations

from pathlib import Path

import generate_fixtures as gf
import llama_fixtures as f
import staticllm

INPUT_LEN = 16
CFG = f.tiny_config(vocab_size=320)
# The multifunction bundle's long context keeps a reply running for seconds
# (the server's queue tests need one busy); the single one's short context
# fills within a few turns (the chat's overflow policy).
CONTEXT = {"single": 256, "multi": 2048}


def make_chat_bundles(root: Path) -> dict[str, Path]:
    """{"single": forward-only bundle, "multi": prefill/decode bundle}, fp32."""
    ckpt = f.make_hf_checkpoint(root / "ckpt", CFG, with_tokenizer=False)
    gf.make_hf_tokenizer(ckpt, vocab_size=CFG.vocab_size)
    return {
        kind: staticllm.export(
            root / kind,
            hf_dir=ckpt,
            input_len=INPUT_LEN,
            max_context_len=context,
            multifunction=kind == "multi",
            dtype="fp32",
            progress=False,
        )
        for kind, context in CONTEXT.items()
    }
