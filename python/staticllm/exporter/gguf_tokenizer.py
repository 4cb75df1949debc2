"""Rebuild a Hugging Face `tokenizer.json` from the vocabulary a GGUF file
carries in its metadata, so a bundle exported from GGUF can tokenize."""

from __future__ import annotations

from typing import Any

from staticllm.errors import ExportError

# llama.cpp token types
_CONTROL, _USER_DEFINED = 3, 4


def _field(reader: Any, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    return default if f is None else f.contents()


def _bpe(tokens: list[str], merges: list[str], pre: str | None) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("smollm", "starcoder", "refact", "qwen2", "deepseek-llm"):
        # these pre-tokenizers split digits one by one before the GPT-2 regex
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level]
        )
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    return tok


def _sentencepiece_bpe(tokens: list[str], priority: list[float], unk: int, gemma: bool) -> Any:
    """A SentencePiece BPE vocabulary (GGUF tokenizer model `llama`), as
    transformers rebuilds it: byte fallback, and the merges the vocabulary
    implies (every split of a token into two tokens), best first by
    `priority` (the token's score; for Gemma the file order, which its
    scores do not follow). Gemma adds no leading space; the others prepend
    one (Metaspace)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab = {t: i for i, t in enumerate(tokens)}
    merges = []
    for token, score in zip(tokens, priority):
        pairs = [
            (token[:k], token[k:]) for k in range(1, len(token)) if token[:k] in vocab and token[k:] in vocab
        ]
        pairs.sort(key=lambda lr: (vocab[lr[0]], vocab[lr[1]]))
        merges += [(score, len(left), len(right), left, right) for left, right in pairs]
    merges.sort(key=lambda m: (-m[0], -m[1], -m[2]))  # stable: ties keep vocabulary order
    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=[(m[3], m[4]) for m in merges],
            byte_fallback=True,
            fuse_unk=True,
            unk_token=tokens[unk],
        )
    )
    if gemma:
        tok.normalizer = normalizers.Replace(" ", "\u2581")
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(
            replacement="\u2581", prepend_scheme="first", split=False
        )
    tok.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
        + ([] if gemma else [decoders.Strip(" ", 1, 0)])
    )
    return tok


def tokenizer_from_gguf(reader: Any) -> tuple[str | None, dict[str, Any] | None, dict[str, Any]]:
    """Returns (tokenizer.json text, tokenizer_config dict, special token ids)."""
    from tokenizers import AddedToken

    tokens = _field(reader, "tokenizer.ggml.tokens")
    if not tokens:
        return None, None, {}
    kind = _field(reader, "tokenizer.ggml.model", "llama")
    types = _field(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
    if kind == "gpt2":
        merges = _field(reader, "tokenizer.ggml.merges") or []
        tok = _bpe(list(tokens), list(merges), _field(reader, "tokenizer.ggml.pre"))
    elif kind == "llama":
        gemma = str(_field(reader, "general.architecture", "")).startswith("gemma")
        if gemma:  # Gemma stores runs of spaces as real spaces; its vocabulary spells them with U+2581
            tokens = ["\u2581" * len(t) if " " in t and not t.strip() else t for t in tokens]
        scores = _field(reader, "tokenizer.ggml.scores") or [0.0] * len(tokens)
        priority = [-float(i) for i in range(len(tokens))] if gemma else [float(s) for s in scores]
        unk = int(_field(reader, "tokenizer.ggml.unknown_token_id", 0))
        tok = _sentencepiece_bpe(list(tokens), priority, unk, gemma)
    else:
        raise ExportError(f"GGUF tokenizer model {kind!r} is not supported (gpt2 and llama are)")
    # As transformers does: control tokens are special, user-defined ones plain
    # added tokens matched whole (only those the vocabulary spells as stored).
    control = [
        AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == _CONTROL
    ]
    if control:
        tok.add_special_tokens(control)
    vocab = tok.get_vocab()
    user = [
        AddedToken(t, special=False, normalized=False)
        for t, ty in zip(tokens, types)
        if ty == _USER_DEFINED and t in vocab
    ]
    if user:
        tok.add_tokens(user)

    def tid(key: str) -> int | None:
        v = _field(reader, f"tokenizer.ggml.{key}_token_id")
        return None if v is None else int(v)

    bos, eos, pad, eot = tid("bos"), tid("eos"), tid("padding"), tid("eot")
    eos_ids = [i for i in (eos, eot) if i is not None]
    special = {
        "bos": bos,
        "eos": sorted(set(eos_ids)),
        "pad": pad,
        "add_bos": bool(_field(reader, "tokenizer.ggml.add_bos_token", kind == "llama")),
    }
    config: dict[str, Any] = {}
    template = _field(reader, "tokenizer.chat_template")
    if template:
        config["chat_template"] = template
    if bos is not None:
        config["bos_token"] = tokens[bos]
    if eos is not None:
        config["eos_token"] = tokens[eos]
    config["add_bos_token"] = special["add_bos"]
    return tok.to_str(), config, special
