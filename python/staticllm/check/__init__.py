"""Static checks of Core ML programs. `check_package(path, target)` returns the
Neural Engine findings for a .mlpackage (used by `staticllm check` and by
exports that must pass it: `if has_errors(f): raise ExportError(error_summary(f, target))`);
the rules and targets live in rules.py."""

from __future__ import annotations

from staticllm.check.ane import Finding, check_package, check_program, has_errors
from staticllm.check.report import error_summary
from staticllm.check.rules import DEFAULT_TARGET, RULES, TARGETS, Rule, Target

__all__ = [
    "DEFAULT_TARGET",
    "RULES",
    "TARGETS",
    "Finding",
    "Rule",
    "Target",
    "check_package",
    "check_program",
    "error_summary",
    "has_errors",
]
