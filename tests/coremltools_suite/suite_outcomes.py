"""How each coremltools op test ended, and the summary table per op family.

A test "reaches prediction" when it calls MLModel.predict (or make_state).
Those end as: passed; unsupported op (the interpreter lacks an op type: the
load fails with UnsupportedOpError); refused at load (any other refusal by
import or load: a form of an op, a flexible shape, a data type); error at run
(the interpreter raised while executing); wrong values (every prediction ran
and the test's own comparison failed); fp16 rounding (the comparison failed,
and every element that missed the tolerance is within FP16_ULPS fp16 units
in the last place of the output's largest expected value when the program
holds fp16 tensors, one unit of the element's when it does not: an fp32
tolerance applied to values that pass through fp16, in the program or in the
test's own reference; see FP16_ULPS); other assertion (every comparison of predicted values
passed, then the test failed on something else, such as the number of cast
ops coremltools put in the program); neuralnetwork (the test predicts with
the neuralnetwork backend, which the interpreter does not run). Tests that
never predict (type inference, value inference, builder errors) are counted
apart, by their pytest outcome.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Column order of the table; the first group reached prediction.
REACHED = (
    "passed",
    "unsupported",
    "refused",
    "run_error",
    "wrong",
    "fp16_rounding",
    "other_assert",
    "neuralnetwork",
)
NOT_REACHED = ("np_passed", "np_skipped", "np_failed")
HEADERS = {
    "passed": "passed",
    "unsupported": "unsupported op",
    "refused": "refused at load",
    "run_error": "error at run",
    "wrong": "wrong values",
    "fp16_rounding": "fp16 rounding",
    "other_assert": "other assertion",
    "neuralnetwork": "neuralnetwork",
    "np_passed": "no-predict pass",
    "np_skipped": "skipped",
    "np_failed": "no-predict fail",
}


@dataclass
class Record:
    """What the predict replacement saw during one test."""

    reached: bool = False
    predictions: int = 0
    compared: int = 0  # compare_backend calls that returned (their value checks passed)
    has_fp16: bool = False  # the program holds fp16 tensors
    kind: str | None = None  # the first failure noted: unsupported, refused, run_error, not_mlprogram
    message: str = ""

    def note(self, kind: str, error: BaseException | None) -> None:
        if self.kind is None:
            self.kind = kind
            self.message = "" if error is None else f"{type(error).__name__}: {error}"


_current = Record()


def current() -> Record:
    return _current


def start() -> Record:
    global _current
    _current = Record()
    return _current


def classify(record: Record, outcome: str) -> str:
    """The table column of a test; outcome is passed, failed or skipped."""
    if not record.reached:
        return {"passed": "np_passed", "skipped": "np_skipped"}.get(outcome, "np_failed")
    if outcome == "passed":  # a failure the test expected (an error for bad indices) included
        return "passed"
    if record.kind == "not_mlprogram":
        return "neuralnetwork"
    if record.kind is not None:
        return record.kind
    return "wrong" if outcome == "failed" else "np_skipped"


def fp16_ulp(values: np.ndarray) -> np.ndarray:
    """One fp16 unit in the last place at each value (subnormal spacing below 2^-14)."""
    exponent = np.floor(np.log2(np.maximum(np.abs(values), 2.0**-14)))
    return 2.0 ** (exponent - 10)


# The error an fp16 result may carry: fp16 inputs and parameters (the tests
# round fp32 data and weights to fp16 for the program but compute their
# references from the fp32 values) and fp16 intermediates carry errors of a
# few units in the last place at the scale of the values combined, which a
# sum that cancels to near zero keeps: the bound is FP16_ULPS units at the
# largest expected magnitude in the compared output. A program without fp16
# tensors gets one unit at each element: some tests' references were taken
# from fp16 results (crop_resize's 7.899 where bilinear sampling gives 7.9).
FP16_ULPS = 4


def fp16_rounding(actual: Any, desired: Any, rtol: float, atol: float, has_fp16: bool) -> bool:
    """True when every element outside atol + rtol * |desired| is within the
    fp16 bound above (NaN and inf where desired has them)."""
    try:
        a = np.asarray(actual, dtype=np.float64)
        d = np.asarray(desired, dtype=np.float64)
        a, d = np.broadcast_arrays(a, d)
    except (TypeError, ValueError):
        return False
    missed = ~np.isclose(a, d, rtol=rtol, atol=atol, equal_nan=True)
    if not missed.any():
        return False
    finite = np.isfinite(d)
    scale = np.abs(d[finite]).max(initial=0.0)
    a, d = a[missed], d[missed]
    if not (np.isfinite(a).all() and np.isfinite(d).all()):
        return False
    bound = FP16_ULPS * fp16_ulp(np.full_like(d, scale)) if has_fp16 else fp16_ulp(d)
    return bool((np.abs(a - d) <= bound).all())


_OP_TYPE = re.compile(r"\(type '([A-Za-z0-9_]+)'\)")
_TEMP_PATH = re.compile(r"/\S*/(model\.mlpackage|bundle/program\.json)")


def reason(result: dict[str, Any]) -> str:
    """A short grouping key for a failure: the op type and the refusal's gist."""
    message = _TEMP_PATH.sub(r"\1", result["message"])
    op = _OP_TYPE.search(message)
    if result["category"] == "unsupported":
        return f"op {op.group(1)}" if op else message[:100]
    gist = message.split("): ", 1)[-1] if op else message
    gist = re.sub(r"\d+", "N", gist.splitlines()[0] if gist else "")[:100]
    return f"{op.group(1)}: {gist}" if op else gist


@dataclass
class Summary:
    results: list[dict[str, Any]] = field(default_factory=list)

    def add(self, nodeid: str, family: str, category: str, record: Record, failure: str) -> None:
        message = record.message or (failure if category == "wrong" else "")
        self.results.append({"nodeid": nodeid, "family": family, "category": category, "message": message})

    def table(self) -> list[str]:
        counts: dict[str, Counter] = defaultdict(Counter)
        for r in self.results:
            counts[r["family"]][r["category"]] += 1
        total: Counter = Counter()
        for c in counts.values():
            total.update(c)
        cols = REACHED + NOT_REACHED
        width = max([len("family"), len("total"), *(len(f) for f in counts)])
        head = f"{'family':<{width}} {'reached':>7} " + " ".join(HEADERS[c] for c in cols)
        lines = [head, "-" * len(head)]

        def row(name: str, c: Counter) -> str:
            reached = sum(c[k] for k in REACHED)
            return f"{name:<{width}} {reached:>7} " + " ".join(f"{c[k]:>{len(HEADERS[k])}}" for k in cols)

        lines += [row(f, counts[f]) for f in sorted(counts)]
        lines += ["-" * len(head), row("total", total)]
        reached = sum(total[k] for k in REACHED)
        if reached:
            lines.append(
                f"{total['passed']} of {reached} tests that reach prediction pass "
                f"({100.0 * total['passed'] / reached:.1f} %), {total['wrong']} give wrong values"
            )
        return lines

    def reasons(self, top: int) -> list[str]:
        by_reason = Counter(
            (r["category"], reason(r)) for r in self.results if r["category"] in REACHED[1:] and r["message"]
        )
        return [f"{n:5d}  {HEADERS[cat]}: {why}" for (cat, why), n in by_reason.most_common(top)]

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.results, indent=1) + "\n")

    def write_expected(self, path: Path) -> None:
        """The tests that failed at load, in read_expected's form."""
        rows = sorted(
            (r["category"], reason(r), r["nodeid"]) for r in self.results if r["category"] in EXPECTABLE
        )
        lines = [EXPECTED_HEADER] + ["\t".join(row) for row in rows]
        path.write_text("\n".join(lines) + "\n")


# Failures at load or at run, fp16 rounding and other assertions may be listed
# as expected; a wrong value never is.
# A run error is an error naming the input (an out-of-range index where the
# test expects whatever value undefined behaviour gives), never a silent value.
EXPECTABLE = ("unsupported", "refused", "run_error", "fp16_rounding", "other_assert")
EXPECTED_HEADER = """\
# coremltools op tests expected to fail through the staticllm interpreter
# (unsupported op, refused at load, error at run, fp16 rounding, other
# assertion; never wrong values), one per line:
# category<TAB>op type and reason<TAB>test id. Written by --ct-write-expected;
# read by --ct-expected, which reports them xfailed while they fail so and
# fails them as soon as they end any other way (update the list then)."""


def read_expected(path: Path) -> dict[str, str]:
    """test id -> expected category."""
    expected = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3 or fields[0] not in EXPECTABLE:
            raise ValueError(f"{path}:{n}: not 'category<TAB>reason<TAB>test id' (category in {EXPECTABLE})")
        expected[fields[2]] = fields[0]
    return expected
