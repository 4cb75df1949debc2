"""`staticllm check` output: a readable report grouped by level and rule, or JSON."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from staticllm.check.ane import Finding
from staticllm.check.rules import ERROR, RULES, WARNING, Target

JSON_FORMAT = 1  # bump when the JSON document changes shape


def summary_counts(findings: list[Finding]) -> dict[str, int]:
    return {
        "errors": sum(f.level == ERROR for f in findings),
        "warnings": sum(f.level == WARNING for f in findings),
    }


def report_json(path: str, kind: str, target: Target, findings: list[Finding]) -> dict[str, Any]:
    return {
        "format": JSON_FORMAT,
        "path": path,
        "kind": kind,
        "target": {
            "name": target.name,
            "chip": target.chip,
            "max_dim": target.max_dim,
            "platform": target.platform,
        },
        **summary_counts(findings),
        "rules_checked": list(RULES),
        "findings": [f.to_dict() for f in findings],
    }


def report_text(path: str, kind: str, target: Target, findings: list[Finding], limit: int) -> str:
    """Grouped by level (errors first), then rule; at most `limit` findings
    listed per rule and function (0 = all), the rest counted."""
    counts = summary_counts(findings)
    lines = [
        f"Neural Engine check of {kind} {path}",
        f"target {target.name} ({target.chip}, {target.platform}; largest dimension {target.max_dim:,})",
        "",
    ]
    by_rule: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_rule[f.rule].append(f)
    for level in (ERROR, WARNING):
        for rule in (r for r in RULES.values() if r.level == level and r.id in by_rule):
            lines += _rule_section(rule.id, by_rule[rule.id], limit)
    passed = [r.id for r in RULES.values() if r.id not in by_rule]
    if passed:
        lines.append(f"passed: {', '.join(passed)}")
    lines.append(f"{counts['errors']} error(s), {counts['warnings']} warning(s)")
    if counts["errors"]:
        lines.append(
            "Core ML would run the parts with errors on the GPU or CPU, or fail to load them on the ANE."
        )
    return "\n".join(lines) + "\n"


def error_summary(findings: list[Finding], target: Target, limit: int = 10) -> str:
    """The errors, one line each (at most `limit`), for an exception message:
    what an export that must pass the check reports when it does not."""
    errors = [f for f in findings if f.level == ERROR]
    lines = [f"{f.rule} in {f.function}: {f.op} ({f.op_type}): {f.detail}" for f in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"... and {len(errors) - limit} more")
    head = f"{len(errors)} Neural Engine rule error(s) for {target.name}"
    return head + ("\n  " + "\n  ".join(lines) if lines else "")


def _rule_section(rule_id: str, found: list[Finding], limit: int) -> list[str]:
    r = RULES[rule_id]
    lines = [f"{r.level.upper()} {r.id}: {r.title} ({len(found)} finding{'s' if len(found) != 1 else ''})"]
    lines.append(f"  rule: {r.text}")
    lines += [f"  source: {s}" for s in r.sources]
    per_fn: dict[str, list[Finding]] = defaultdict(list)
    for f in found:
        per_fn[f.function].append(f)
    for fn, items in per_fn.items():
        shown = items if limit <= 0 else items[:limit]
        for f in shown:
            lines.append(f"  {fn}: {f.op} ({f.op_type}): {f.detail}")
        if len(items) > len(shown):
            lines.append(f"  {fn}: ... and {len(items) - len(shown)} more (--all or --json lists them)")
    return lines + [""]
