"""The mixed per-layer quantization file (`--quantize-config FILE`, JSON or YAML).

    default: palettize4            # the body; a mode, or {mode: ..., group_size: ...}
    embeddings: int8               # optional
    lm_head: int8                  # optional (one tensor with the embeddings when tied)
    rules:                         # optional; later rules win over earlier ones
      - layers: 0-1                # "0-1", "0-3,28-29", 5 or [0, 1, 29]
        mode: int8
      - pattern: "model.layers.*.mlp.down_proj.weight"   # or patterns: [...]
        mode: palettize6
        group_size: 8

A pattern (fnmatch) matches a weight's name in the model
(`model.layers.3.self_attn.q_proj.weight`, `model.embed_tokens.weight`, `lm_head.weight`) or
its const op name in the Core ML program (`model_layers_3_self_attn_q_proj_weight_to_fp16`).
Every error names the file, the key and, where the parser knows it, the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from staticllm.errors import ExportError
from staticllm.exporter.quantize import MODES, QuantPlan, QuantSpec, Rule

_SPEC_KEYS = {"mode", "block_size", "group_size"}
_TOP_KEYS = {"default", "embeddings", "lm_head", "rules"}
_RULE_KEYS = _SPEC_KEYS | {"pattern", "patterns", "layers"}
_TOP = "(top level)"


class _Doc:
    """The parsed document plus the line of each key path, for messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: dict[str, int] = {}
        text = self._read(path)
        self.data = self._parse(text)

    @staticmethod
    def _read(path: Path) -> str:
        if not path.is_file():
            raise ExportError(f"quantize config file not found: {path}")
        return path.read_text(encoding="utf-8")

    def _parse(self, text: str) -> Any:
        import yaml

        if self.path.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ExportError(f"{self.path} line {exc.lineno}: invalid JSON ({exc.msg})") from exc
        else:
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                line = f" line {mark.line + 1}" if mark is not None else ""
                raise ExportError(
                    f"{self.path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})"
                ) from exc
        try:  # JSON is YAML too: the node tree gives every key's line
            self._record_lines(yaml.compose(text), "")
        except yaml.YAMLError:
            pass
        return data

    def _record_lines(self, node: Any, path: str) -> None:
        import yaml

        if node is None:
            return
        self.lines.setdefault(path or _TOP, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = f"{path}.{key.value}" if path else str(key.value)
                self.lines[sub] = key.start_mark.line + 1
                self._record_lines(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._record_lines(item, f"{path}[{i}]")

    def fail(self, key: str, message: str) -> ExportError:
        line = self.lines.get(key)
        where = f"{self.path} line {line}" if line else str(self.path)
        return ExportError(f"{where}: {key}: {message}")


def _spec(doc: _Doc, value: Any, key: str, base: QuantSpec | None = None) -> QuantSpec:
    if isinstance(value, str):
        value = {"mode": value}
    if not isinstance(value, dict):
        raise doc.fail(key, f"expected a mode name or a mapping with 'mode', got {value!r}")
    unknown = sorted(set(value) - _SPEC_KEYS)
    if unknown:
        raise doc.fail(f"{key}.{unknown[0]}", f"unknown key; a mode setting takes {sorted(_SPEC_KEYS)}")
    return _spec_fields(doc, value, key, base)


def _spec_fields(doc: _Doc, value: dict[str, Any], key: str, base: QuantSpec | None) -> QuantSpec:
    mode = value.get("mode", base.mode if base else None)
    if mode is None:
        raise doc.fail(key, "missing 'mode'")
    if mode not in MODES:
        raise doc.fail(f"{key}.mode", f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    sizes = {}
    for name in ("block_size", "group_size"):
        v = value.get(name, getattr(base, name) if base else None)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise doc.fail(f"{key}.{name}", f"expected a positive integer, got {v!r}")
        sizes[name] = v
    if "block_size" in value and mode != "int4":
        raise doc.fail(f"{key}.block_size", f"block_size applies to int4, not {mode}")
    if "group_size" in value and not mode.startswith("palettize"):
        raise doc.fail(f"{key}.group_size", f"group_size applies to palettize4/palettize6, not {mode}")
    return QuantSpec(mode, **sizes)


def parse_layers(text: Any) -> frozenset[int]:
    """5, [0, 1, 29], "0-3", "0-3,28-29" -> the set of layer indices."""
    if isinstance(text, bool):
        raise ValueError(f"expected layer numbers, got {text!r}")
    if isinstance(text, int):
        items: list[Any] = [text]
    elif isinstance(text, str):
        items = [part.strip() for part in text.split(",")]
    elif isinstance(text, list):
        items = text
    else:
        raise ValueError(f"expected layer numbers, got {text!r}")
    out: set[int] = set()
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            out.add(item)
            continue
        lo, sep, hi = str(item).partition("-")
        try:
            first, last = int(lo), int(hi if sep else lo)
        except ValueError:
            raise ValueError(f"{item!r} is not a layer number or a range like 0-3") from None
        if first < 0 or last < first:
            raise ValueError(f"{item!r} is not an ascending range of layer numbers")
        out.update(range(first, last + 1))
    if not out:
        raise ValueError("no layers given")
    return frozenset(out)


def _rule(doc: _Doc, value: Any, key: str) -> Rule:
    if not isinstance(value, dict):
        raise doc.fail(key, f"expected a mapping (pattern/layers + mode), got {value!r}")
    unknown = sorted(set(value) - _RULE_KEYS)
    if unknown:
        raise doc.fail(f"{key}.{unknown[0]}", f"unknown key; a rule takes {sorted(_RULE_KEYS)}")
    if "pattern" in value and "patterns" in value:
        raise doc.fail(key, "give 'pattern' or 'patterns', not both")
    patterns = value.get("patterns", value.get("pattern", []))
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        raise doc.fail(f"{key}.patterns", f"expected a pattern or a list of patterns, got {patterns!r}")
    layers = None
    if "layers" in value:
        try:
            layers = parse_layers(value["layers"])
        except ValueError as exc:
            raise doc.fail(f"{key}.layers", str(exc)) from None
    if not patterns and layers is None:
        raise doc.fail(key, "a rule needs 'pattern'/'patterns' or 'layers' to say which weights it covers")
    if "mode" not in value:
        raise doc.fail(key, "missing 'mode'")
    spec = _spec_fields(doc, {k: v for k, v in value.items() if k in _SPEC_KEYS}, key, None)
    line = doc.lines.get(key)
    where = f"{key} (line {line})" if line else key
    return Rule(spec, tuple(patterns), layers, where)


def load_plan(path: str | Path, base: QuantPlan | None = None) -> QuantPlan:
    """The plan in `path`; keys it leaves out come from `base` (the command line)."""
    base = base or QuantPlan()
    doc = _Doc(Path(path))
    data = doc.data
    if not isinstance(data, dict):
        raise doc.fail(_TOP, f"expected a mapping with keys {sorted(_TOP_KEYS)}, got {data!r}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise doc.fail(unknown[0], f"unknown key; the file takes {sorted(_TOP_KEYS)}")
    default = _spec(doc, data["default"], "default", base.default) if "default" in data else base.default
    embeddings = _spec(doc, data["embeddings"], "embeddings") if "embeddings" in data else base.embeddings
    lm_head = _spec(doc, data["lm_head"], "lm_head") if "lm_head" in data else base.lm_head
    rules = data.get("rules", [])
    if not isinstance(rules, list):
        raise doc.fail("rules", f"expected a list of rules, got {rules!r}")
    parsed = tuple(_rule(doc, r, f"rules[{i}]") for i, r in enumerate(rules))
    return QuantPlan(default, embeddings, lm_head, base.rules + parsed, str(path))
