"""Small tokenizers of every supported kind, trained by the tests on a few
sentences (nothing is downloaded)."""

from __future__ import annotations

import base64
import io
import json
import re
from collections import Counter
from pathlib import Path

CORPUS = [
    "the quick brown fox jumps over the lazy dog.",
    "a static graph runs the same on every device.",
    "prefill reads the prompt, decode writes one token at a time.",
    "hello world! 0123456789",
    "café déjà vu, naïve façade, über straße.",
    "日本語のテキストも少し。 中文也有一点。",
    "emoji: 😀 🚀 ✨ and more text after them.",
] * 8

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def make_hf_tokenizer(directory: Path, vocab_size: int = 400, with_config: bool = True) -> Path:
    """Byte-level BPE with ChatML special tokens; returns tokenizer.json's path."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenizer.json"
    tok.save(str(path))
    if with_config:
        config = {
            "bos_token": "<|im_start|>",
            "eos_token": "<|im_end|>",
            "chat_template": CHATML_TEMPLATE,
            "add_bos_token": False,
        }
        (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return path


def make_sentencepiece(directory: Path, vocab_size: int = 400) -> Path:
    """A SentencePiece BPE model with byte fallback, saved as tokenizer.model.
    Trained without the emoji line, so emoji become <0xNN> byte pieces."""
    import sentencepiece as spm

    buf = io.BytesIO()
    lines = [line for line in CORPUS if "emoji" not in line]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        bos_id=1,
        eos_id=2,
        unk_id=0,
        pad_id=-1,
        minloglevel=2,
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenizer.model"
    path.write_bytes(buf.getvalue())
    return path


_SPLIT = re.compile(r" ?\w+| ?[^\w\s]+|\s+")


def train_byte_bpe(n_merges: int = 120) -> dict[bytes, int]:
    """tiktoken-style mergeable ranks: the 256 bytes, then the most frequent pairs."""
    ranks = {bytes([b]): b for b in range(256)}
    words = Counter(w.encode("utf-8") for line in CORPUS for w in _SPLIT.findall(line))
    parts = {w: [bytes([b]) for b in w] for w in words}
    for _ in range(n_merges):
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for w, n in words.items():
            seq = parts[w]
            for a, b in zip(seq, seq[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merged = a + b
        ranks[merged] = len(ranks)
        for w, seq in parts.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and seq[i] == a and seq[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            parts[w] = out
    return ranks


def make_tiktoken(directory: Path) -> tuple[Path, dict[bytes, int]]:
    """A Llama 3 style BPE file ('<base64> <rank>' lines) named tokenizer.model."""
    ranks = train_byte_bpe()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenizer.model"
    lines = [
        f"{base64.b64encode(tok).decode()} {rank}"
        for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1])
    ]
    path.write_text("\n".join(lines) + "\n")
    return path, ranks
