"""Runs coremltools' own MIL op unit tests with prediction through the
staticllm interpreter (see README.md here).

The op test files shipped inside the installed coremltools
(installed_op_tests.txt) are collected for the ML Program backends in fp16
and fp32. MLModel.predict and MLModel.make_state are replaced by the
interpreter (suite_predict.py); the macOS gates in front of prediction are
opened, nothing else: the tests build, convert and compare as they do on a Mac.

Options: --ct-params N (parametrizations per test and precision, picked
deterministically; 0 = all), --ct-perturb (self-check: every predicted output
is perturbed, so every test that compares values must fail), --ct-json PATH
(each test's outcome).
"""

from __future__ import annotations

import gc
import hashlib
import os
import random
import sys
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import suite_outcomes
import suite_predict

# coremltools' test configuration reads these once, when testing_reqs is
# first imported: the ML Program backends only, in fp16 and fp32.
os.environ["PYMIL_TEST_TARGETS"] = "mlprogram"
os.environ["INCLUDE_MIL_FP32_UNIT_TESTS"] = "1"

# The macOS version the suite's gates are shown: the lowest that lets every
# ML Program prediction in it run (12 for packages, 15 for states, 15.2 for
# test_compression's test_quant_lut, gated on a Core ML bug fixed there).
MACOS_SHOWN = (15, 2)

# Tests that predict with the neuralnetwork backend (comparing it with the ML
# Program's prediction, or through assert_model_is_valid's default backend),
# in every module that defines or inherits them; the interpreter runs ML
# Programs only.
NEURALNETWORK_TESTS = (
    "::TestSliceByIndex::test_slice_by_index",
    "::TestSliceByIndex::test_slice_by_index_slice_squeeze_separate",
    "::TestConv::test_type_inference_dynamic_x_with_groups",
)

# A test that times coremltools' type inference against 10 ms of wall time: it
# never predicts, and fails whenever the machine is busy (CI runs the suite).
TIMED_TESTS = ("TestSliceByIndex::test_efficient_type_inference",)

HERE = Path(__file__).parent
LIST_FILE = HERE / "installed_op_tests.txt"
PREFIX = "coremltools_ops/"

warnings.filterwarnings("ignore", module="coremltools")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("coremltools_suite", "coremltools op tests through the staticllm interpreter")
    group.addoption("--ct-params", type=int, default=4, help="parametrizations per test and precision, 0 all")
    group.addoption("--ct-perturb", action="store_true", help="self-check: perturb every predicted output")
    group.addoption(
        "--ct-max-per-test", type=int, default=0, help="at most N parametrizations per test, 0 no cap"
    )
    group.addoption("--ct-json", default=None, help="write each test's outcome to this JSON file")
    group.addoption(
        "--ct-expected",
        default=None,
        help="tests expected to fail at load (expected_failures.txt): reported xfailed when they fail so, "
        "failed otherwise",
    )
    group.addoption("--ct-write-expected", default=None, help="write the load failures in --ct-expected form")


def _observed(compare_backend: Any) -> Any:
    """compare_backend, counting the calls whose value checks passed (the
    comparison itself is untouched)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = compare_backend(*args, **kwargs)
        suite_outcomes.current().compared += 1
        return result

    return wrapper


def pytest_configure(config: pytest.Config) -> None:
    import coremltools.models.utils as ct_utils
    from coremltools.converters.mil import testing_utils
    from coremltools.converters.mil.mil.ops.tests import testing_utils as op_testing_utils
    from coremltools.models import MLModel

    # Gates read at import (skipif marks) and in compare_backend / compare_shapes.
    ct_utils._macos_version = lambda: MACOS_SHOWN
    testing_utils._IS_MACOS = True
    # observed, to tell a failed value check from a later assertion (both modules bind the name)
    observed = _observed(testing_utils.compare_backend)
    testing_utils.compare_backend = op_testing_utils.compare_backend = observed
    MLModel.predict = suite_predict.predict
    MLModel.make_state = suite_predict.make_state
    suite_predict.PERTURB = config.getoption("--ct-perturb")
    config.pluginmanager.register(SuitePlugin(config), "coremltools_suite")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path == LIST_FILE:
        return InstalledOpTests.from_parent(parent, path=file_path)
    return None


class InstalledOpTests(pytest.File):
    """The op test modules inside the installed coremltools package."""

    def collect(self) -> Any:
        import coremltools

        root = Path(coremltools.__file__).parent
        tests_dir = root / "converters/mil/mil/ops/tests"
        patterns = [ln.strip() for ln in LIST_FILE.read_text().splitlines() if ln.strip() and ln[0] != "#"]
        files = sorted({p for pat in patterns for p in root.glob(pat)})
        if not files:
            raise pytest.UsageError(f"no coremltools op tests under {root} match {LIST_FILE}")
        for path in files:
            name = path.relative_to(tests_dir).as_posix()
            yield pytest.Module.from_parent(self, path=path, name=name, nodeid=PREFIX + name)


def family(item: pytest.Item) -> str | None:
    """ "iOS14/test_activation" for an item of the suite, else None."""
    if not item.nodeid.startswith(PREFIX):
        return None
    return item.nodeid[len(PREFIX) :].split("::")[0].removesuffix(".py")


def precision(item: pytest.Item) -> tuple[str, str] | None:
    """(backend, precision) of an item parametrized over coremltools' backends."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    for value in params.values():
        if hasattr(value, "backend") and hasattr(value, "precision"):
            return value.backend, value.precision
        if isinstance(value, tuple) and len(value) == 2 and value[0] in ("mlprogram", "neuralnetwork"):
            return value
    return None


def _stable_key(nodeid: str) -> str:
    return hashlib.sha256(nodeid.encode()).hexdigest()


class SuitePlugin:
    """Hooks for the suite's items (a plugin, not conftest hooks, because the
    items live in site-packages, outside this conftest's directory)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.summary = suite_outcomes.Summary()
        self.seen: set[str] = set()
        path = config.getoption("--ct-expected")
        self.expected = suite_outcomes.read_expected(Path(path)) if path else {}

    def pytest_make_parametrize_id(self, config: pytest.Config, val: object, argname: str) -> str | None:
        # as coremltools' own conftest (outside the rootdir, so not loaded)
        # names parameters, except arrays and other long values (pytest's own id)
        text = f"{argname}={val}"
        return text if len(text) <= 120 and "\n" not in text else None

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        per_precision = config.getoption("--ct-params")
        per_test = config.getoption("--ct-max-per-test")
        groups: dict[str, dict[Any, list[pytest.Item]]] = defaultdict(lambda: defaultdict(list))
        keep, drop = [], []
        for item in items:
            if family(item) is None:
                keep.append(item)
                continue
            prec = precision(item)
            test = item.nodeid.split("[")[0]
            not_run = test.endswith(NEURALNETWORK_TESTS + TIMED_TESTS)
            if (prec is not None and prec[0] != "mlprogram") or not_run:
                drop.append(item)
                continue
            groups[test][prec].append(item)
        for by_precision in groups.values():
            chosen = []
            for members in by_precision.values():
                members.sort(key=lambda it: _stable_key(it.nodeid))
                chosen += members if per_precision <= 0 else members[:per_precision]
            chosen.sort(key=lambda it: _stable_key(it.nodeid))
            if per_test > 0:
                chosen = chosen[:per_test]
            keep += chosen
            chosen_ids = {id(it) for it in chosen}
            drop += [it for members in by_precision.values() for it in members if id(it) not in chosen_ids]
        order = {id(it): i for i, it in enumerate(items)}
        keep.sort(key=lambda it: order[id(it)])
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # ct.convert runs gc.collect() on every conversion; with tens of
        # thousands of collected items alive that took over a second per test.
        # What exists now lives for the whole session anyway.
        gc.freeze()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        suite_outcomes.start()
        if family(item) is not None:
            _seed_generators(item.nodeid)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> Any:
        report = yield
        fam = family(item)
        if fam is None or item.nodeid in self.seen:
            return report
        if call.when == "call" or (call.when == "setup" and call.excinfo is not None):
            self.seen.add(item.nodeid)
            record = suite_outcomes.current() if call.when == "call" else suite_outcomes.Record()
            category = suite_outcomes.classify(record, _outcome(call))
            if category == "wrong" and _within_fp16_rounding(call, record.has_fp16):
                category = "fp16_rounding"
            elif category == "wrong" and record.compared > 0 and not _from_comparison(call):
                category = "other_assert"
            self.summary.add(item.nodeid, fam, category, record, _failure_text(call))
            self._check_expected(item.nodeid, category, report)
        return report

    def _check_expected(self, nodeid: str, category: str, report: pytest.TestReport) -> None:
        """With --ct-expected the list decides a test that reached prediction:
        a listed test must fail as listed (then it is reported xfailed); a
        listed test that passes or fails otherwise, and an unlisted test that
        fails, fail, whatever xfail mark coremltools gave the test (a mark
        must not hide a wrong value)."""
        if self.config.getoption("--ct-expected") is None or category not in suite_outcomes.REACHED:
            return
        expected = self.expected.get(nodeid)
        if expected is None and category == "passed":
            return
        if category == expected:
            report.outcome = "skipped"
            report.wasxfail = f"expected: {suite_outcomes.HEADERS[category]}"
            return
        if hasattr(report, "wasxfail"):
            del report.wasxfail
        report.outcome = "failed"
        got = suite_outcomes.HEADERS.get(category, category)
        listed = "does not list this test"
        if expected:
            listed = f"lists this test as '{suite_outcomes.HEADERS[expected]}'"
        report.longrepr = (
            f"{self.config.getoption('--ct-expected')} {listed}, but it ended as '{got}': fix it, or "
            f"update the list (--ct-write-expected writes it from a run)\n{report.longreprtext}"
        )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.summary.results:
            return
        write = terminalreporter.write_line
        terminalreporter.section("coremltools op tests through the staticllm interpreter")
        perturb = self.config.getoption("--ct-perturb")
        if perturb:
            write("SELF-CHECK: every predicted output was perturbed; no test that compares values may pass")
        for line in self.summary.table():
            write(line)
        reasons = self.summary.reasons(30)
        if reasons:
            write("most frequent failures (tests, category: op type and reason):")
            for line in reasons:
                write(line)
        if perturb:
            survivors = [r["nodeid"] for r in self.summary.results if r["category"] == "passed"]
            write(f"self-check: {len(survivors)} tests passed with perturbed outputs")
            for nodeid in survivors:
                write(f"  {nodeid}")
        if path := self.config.getoption("--ct-json"):
            self.summary.write_json(Path(path))
        if path := self.config.getoption("--ct-write-expected"):
            self.summary.write_expected(Path(path))


def _seed_generators(nodeid: str) -> None:
    """The tests draw their inputs and weights from numpy's, Python's and
    torch's global generators without seeding them: seeded from the test id,
    every test sees the same data in every run and in any selection."""
    seed = int(_stable_key(nodeid)[:8], 16)
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def _outcome(call: pytest.CallInfo) -> str:
    if call.excinfo is None:
        return "passed"
    if call.excinfo.errisinstance((pytest.skip.Exception, pytest.xfail.Exception)):
        return "skipped"
    return "failed"


_COMPARISONS = {"compare_backend", "compare_shapes", "assert_allclose", "assert_array_equal", "assert_equal"}


def _from_comparison(call: pytest.CallInfo) -> bool:
    """Whether the failure was raised inside a comparison of values."""
    return any(entry.frame.code.name in _COMPARISONS for entry in call.excinfo.traceback)


def _within_fp16_rounding(call: pytest.CallInfo, has_fp16: bool) -> bool:
    """Whether the failed comparison (numpy's assert_allclose, whose operands
    and tolerances are read from its frame) missed only by fp16 rounding."""
    for entry in reversed(call.excinfo.traceback):
        if entry.frame.code.name != "assert_allclose":
            continue
        f = entry.frame.f_locals
        if {"actual", "desired", "rtol", "atol"} <= f.keys():
            return suite_outcomes.fp16_rounding(f["actual"], f["desired"], f["rtol"], f["atol"], has_fp16)
    return False


def _failure_text(call: pytest.CallInfo) -> str:
    """The gist of a failure: its type and the line saying what differed."""
    if call.excinfo is None:
        return ""
    lines = [ln.strip() for ln in str(call.excinfo.value).splitlines() if ln.strip()]
    said = [ln for ln in lines if ln.startswith(("Mismatch", "Not equal", "(shapes"))]
    key = said[0] if said else lines[0] if lines else ""
    return f"{call.excinfo.typename}: {key}"[:300]
