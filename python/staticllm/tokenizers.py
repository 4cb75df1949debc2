"""Tokenizers loaded from a bundle, told apart by file content, not by name.

- Hugging Face `tokenizer.json` (JSON with a "model" object), via `tokenizers`
- SentencePiece model (a protobuf), via `sentencepiece`
- tiktoken-style BPE (Llama 3's `tokenizer.model`: lines "<base64 token> <rank>"),
  via `tiktoken` with Llama 3's split pattern and special tokens

A chat template comes from `tokenizer_config.json` and is rendered with
jinja2 the way Hugging Face renders it. This module's name shadows nothing:
`import tokenizers` below is the absolute, third-party package.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from staticllm.errors import BundleError, InputError

# Llama 3's pre-tokenizer split pattern (the same as cl100k_base's).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_NUM_SPECIAL = 256
_LLAMA3_NAMED = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
]
# Meta's format for Llama 3 instruct models, used when no tokenizer_config.json carries a template.
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    " + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
_TIKTOKEN_LINE = re.compile(rb"^[A-Za-z0-9+/]+={0,2} \d+$")


def llama3_special_tokens() -> list[str]:
    """The 256 special tokens that follow Llama 3's BPE ranks, in id order."""
    reserved = LLAMA3_NUM_SPECIAL - len(_LLAMA3_NAMED)
    return _LLAMA3_NAMED + [f"<|reserved_special_token_{3 + i}|>" for i in range(reserved)]


class Tokenizer(ABC):
    """What generation needs from a tokenizer."""

    kind: str = ""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}
        self.chat_template: str | None = _pick_template(self.config.get("chat_template"))

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def _encode(self, text: str) -> list[int]:
        """Plain encoding, without BOS."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids; special tokens (BOS, EOS, control) are left out."""

    @abstractmethod
    def token_to_id(self, token: str) -> int | None: ...

    @property
    def bos_id(self) -> int | None:
        name = _token_text(self.config.get("bos_token"))
        return None if name is None else self.token_to_id(name)

    @property
    def eos_ids(self) -> list[int]:
        name = _token_text(self.config.get("eos_token"))
        tid = None if name is None else self.token_to_id(name)
        return [] if tid is None else [tid]

    def _adds_bos_by_default(self) -> bool:
        return False

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        ids = self._encode(text)
        want = self.config.get("add_bos_token", self._adds_bos_by_default())
        bos = self.bos_id
        if add_bos and want and bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        return ids

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        template = self.chat_template
        if template is None:
            raise InputError(
                "this bundle's tokenizer has no chat template (no 'chat_template' in "
                "tokenizer_config.json); run without chat"
            )
        return render_chat_template(template, messages, self.config, add_generation_prompt)


class HFTokenizer(Tokenizer):
    kind = "huggingface"

    def __init__(self, path: Path, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        import tokenizers

        try:
            self.tok = tokenizers.Tokenizer.from_file(str(path))
        except Exception as exc:  # the library raises plain Exception subclasses
            raise BundleError(f"{path}: not a valid Hugging Face tokenizer.json: {exc}") from exc

    @property
    def vocab_size(self) -> int:
        return int(self.tok.get_vocab_size(with_added_tokens=True))

    def _encode(self, text: str) -> list[int]:
        # The post-processor (e.g. Llama 2's TemplateProcessing) adds BOS itself.
        return list(self.tok.encode(text, add_special_tokens=True).ids)

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        if not add_bos:
            return list(self.tok.encode(text, add_special_tokens=False).ids)
        return super().encode(text, add_bos)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tok.decode(list(ids), skip_special_tokens=True))

    def token_to_id(self, token: str) -> int | None:
        tid = self.tok.token_to_id(token)
        return None if tid is None else int(tid)


class SentencePieceTokenizer(Tokenizer):
    kind = "sentencepiece"

    def __init__(self, data: bytes, path: Path, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        import sentencepiece

        self.sp = sentencepiece.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(data)
        except Exception as exc:
            raise BundleError(f"{path}: not a SentencePiece model: {exc}") from exc

    @property
    def vocab_size(self) -> int:
        return int(self.sp.GetPieceSize())

    def _adds_bos_by_default(self) -> bool:
        return True  # Llama 1/2 convention

    def _encode(self, text: str) -> list[int]:
        return [int(i) for i in self.sp.EncodeAsIds(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.sp.DecodeIds([int(i) for i in ids]))

    def token_to_id(self, token: str) -> int | None:
        tid = int(self.sp.PieceToId(token))
        if tid == self.sp.unk_id() and token != self.sp.IdToPiece(tid):
            return None
        return tid

    @property
    def bos_id(self) -> int | None:
        tid = super().bos_id
        if tid is None and self.sp.bos_id() >= 0:
            tid = int(self.sp.bos_id())
        return tid

    @property
    def eos_ids(self) -> list[int]:
        ids = super().eos_ids
        if not ids and self.sp.eos_id() >= 0:
            ids = [int(self.sp.eos_id())]
        return ids


class TiktokenTokenizer(Tokenizer):
    """Llama 3's BPE: ranks from the file, 256 special tokens after them."""

    kind = "tiktoken"

    def __init__(self, ranks: dict[bytes, int], path: Path, config: dict[str, Any] | None = None) -> None:
        import tiktoken

        self.n_base = len(ranks)
        self.specials = {t: self.n_base + i for i, t in enumerate(llama3_special_tokens())}
        self.enc = tiktoken.Encoding(
            name=path.stem, pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens=self.specials
        )
        config = dict(config or {})
        config.setdefault("bos_token", "<|begin_of_text|>")
        config.setdefault("eos_token", "<|eot_id|>")
        config.setdefault("chat_template", LLAMA3_CHAT_TEMPLATE)
        super().__init__(config)

    @property
    def vocab_size(self) -> int:
        return self.n_base + len(self.specials)

    def _adds_bos_by_default(self) -> bool:
        return True

    def _encode(self, text: str) -> list[int]:
        # Special-token text is recognised, as Hugging Face tokenizers do for added tokens.
        return [int(i) for i in self.enc.encode(text, allowed_special="all")]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.enc.decode([int(i) for i in ids if 0 <= int(i) < self.n_base]))

    def token_to_id(self, token: str) -> int | None:
        if token in self.specials:
            return self.specials[token]
        try:
            return int(self.enc.encode_single_token(token.encode("utf-8")))
        except KeyError:
            return None

    @property
    def eos_ids(self) -> list[int]:
        ids = set(super().eos_ids)
        ids.update(self.specials[t] for t in ("<|end_of_text|>", "<|eot_id|>", "<|eom_id|>"))
        return sorted(ids)


def _token_text(value: Any) -> str | None:
    """tokenizer_config stores special tokens as strings or AddedToken dicts."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _pick_template(value: Any) -> str | None:
    """chat_template is a string, or a list of {"name", "template"} with a "default"."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list):
        named = {d.get("name"): d.get("template") for d in value if isinstance(d, dict)}
        chosen = named.get("default") or next(iter(named.values()), None)
        return chosen if isinstance(chosen, str) else None
    return None


def render_chat_template(
    template: str, messages: list[dict[str, str]], config: dict[str, Any], add_generation_prompt: bool = True
) -> str:
    """Renders like Hugging Face: sandboxed jinja2, trim_blocks and lstrip_blocks,
    special tokens from the config as variables."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise InputError(f"chat template: {message}")

    def tojson(value: Any, indent: int | None = None) -> str:
        return json.dumps(value, ensure_ascii=False, indent=indent)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    variables = {k: _token_text(v) for k, v in config.items() if k.endswith("_token")}
    try:
        return env.from_string(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **variables
        )
    except jinja2.TemplateError as exc:
        raise InputError(f"chat template from tokenizer_config.json failed to render: {exc}") from exc


def _parse_tiktoken(data: bytes) -> dict[bytes, int] | None:
    """Ranks if `data` is a tiktoken BPE file, else None."""
    lines = data.splitlines()
    if not lines or not all(_TIKTOKEN_LINE.match(line) for line in lines[:64] if line):
        return None
    ranks: dict[bytes, int] = {}
    for line in lines:
        if not line:
            continue
        token, rank = line.split(b" ")
        try:
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except binascii.Error:
            return None
    return ranks


def load_tokenizer(path: str | Path, config_path: str | Path | None = None) -> Tokenizer:
    """Opens a tokenizer file of any supported kind, judged by its content."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read tokenizer file {path}: {exc}") from exc
    config = _read_config(config_path)
    if data.lstrip()[:1] == b"{":
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise BundleError(f"{path}: looks like JSON but does not parse: {exc}") from exc
        if not isinstance(doc, dict) or "model" not in doc:
            raise BundleError(f"{path}: JSON without a 'model' object is not a Hugging Face tokenizer.json")
        return HFTokenizer(path, config)
    ranks = _parse_tiktoken(data)
    if ranks is not None:
        return TiktokenTokenizer(ranks, path, config)
    try:
        return SentencePieceTokenizer(data, path, config)
    except BundleError as exc:
        raise BundleError(
            f"{path}: not a Hugging Face tokenizer.json, a tiktoken BPE file ('<base64> <rank>' lines) "
            f"or a SentencePiece model"
        ) from exc


def _read_config(config_path: str | Path | None) -> dict[str, Any]:
    if config_path is None:
        return {}
    p = Path(config_path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read tokenizer config {p}: {exc}") from exc
    if not isinstance(doc, dict):
        raise BundleError(f"{p}: expected a JSON object")
    return doc
