"""`staticllm check`: each Neural Engine rule on a small MIL program built to
break it, one program that passes every rule on every target, the CLI's exit
codes and JSON document, and bad input."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mil_fixtures import bundle_from_program, convert_program
from staticllm import cli
from staticllm.check import RULES, TARGETS, check_package, check_program, error_summary, has_errors
from staticllm.check.ane import resolve_target
from staticllm.check.program import Program
from staticllm.check.rules import rules_markdown
from staticllm.errors import BundleError, InputError

README = Path(__file__).resolve().parents[2] / "README.md"


def _mil() -> tuple[Any, Any, Any]:
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    return ct, mb, types


def _convert(prog: Any, path: Path) -> Path:
    return convert_program(prog, path, optimize=False)


def _spec(*shapes: tuple[int, ...], dtype: str = "fp16") -> list[Any]:
    _, mb, types = _mil()
    return [mb.TensorSpec(shape=s, dtype=getattr(types, dtype)) for s in shapes]


# --- programs ------------------------------------------------------------------------------------


def clean_program() -> Any:
    """What the ANE profile is meant to look like: fp16 throughout, BC1S data,
    a 1x1 conv with per-channel int8 weights, an overflow-safe RMSNorm, a
    finite mask, a gather over 1,000 rows, a state 64 wide, static shapes."""
    ct, mb, types = _mil()
    rng = np.random.default_rng(0)

    @mb.program(
        input_specs=[
            *_spec((1, 256, 1, 32)),
            mb.TensorSpec(shape=(1, 32), dtype=types.int32),
            mb.StateTensorSpec(shape=(1, 256, 1, 64), dtype=types.fp16),
        ],
        opset_version=ct.target.iOS18,
    )
    def prog(x: Any, ids: Any, kv: Any) -> Any:
        table = rng.standard_normal((1000, 256)).astype(np.float16)
        emb = mb.gather(x=table, indices=ids, axis=0, validate_indices=False)  # [1, 32, 256]
        emb = mb.expand_dims(x=mb.transpose(x=emb, perm=[0, 2, 1]), axes=[2])  # [1, 256, 1, 32]
        h = mb.add(x=x, y=emb)
        peak = mb.maximum(x=mb.reduce_max(x=mb.abs(x=h), axes=[1], keep_dims=True), y=np.float16(1.0))
        u = mb.real_div(x=h, y=peak)
        ms = mb.reduce_mean(x=mb.mul(x=u, y=u), axes=[1], keep_dims=True)
        normed = mb.mul(x=u, y=mb.rsqrt(x=mb.add(x=ms, y=np.float16(1e-3))))
        data = rng.integers(-127, 128, size=(256, 256, 1, 1)).astype(np.int8)
        scale = np.full((256, 1, 1, 1), 0.01, np.float16)  # one scale per output channel
        weight = mb.constexpr_blockwise_shift_scale(data=data, scale=scale)
        y = mb.conv(x=normed, weight=weight)
        mask = np.where(np.arange(32) > 16, -40000.0, 0.0).astype(np.float16).reshape(1, 1, 1, 32)
        y = mb.softmax(x=mb.add(x=y, y=mask), axis=1, name="y")
        mb.coreml_update_state(state=kv, value=mb.mul(x=mb.read_state(input=kv), y=np.float16(0.5)))
        return y

    return prog


def fp32_op_program() -> Any:
    ct, mb, _ = _mil()

    @mb.program(input_specs=_spec((1, 64)), opset_version=ct.target.iOS18)
    def prog(x: Any) -> Any:
        wide = mb.exp(x=mb.cast(x=x, dtype="fp32", name="to_fp32"), name="exp32")
        return mb.cast(x=wide, dtype="fp16", name="y")

    return prog


def relu_program(shape: tuple[int, ...], dtype: str = "fp16") -> Any:
    ct, mb, _ = _mil()

    @mb.program(input_specs=_spec(shape, dtype=dtype), opset_version=ct.target.iOS18)
    def prog(x: Any) -> Any:
        return mb.relu(x=x, name="y")

    return prog


def inf_mask_program() -> Any:
    ct, mb, _ = _mil()

    @mb.program(input_specs=_spec((1, 1, 32, 32)), opset_version=ct.target.iOS18)
    def prog(scores: Any) -> Any:
        mask = np.triu(np.full((32, 32), -np.inf, np.float16), k=1).reshape(1, 1, 32, 32)
        return mb.softmax(x=mb.add(x=scores, y=mb.const(val=mask, name="causal_mask")), axis=-1, name="y")

    return prog


def overflow_const_program() -> Any:
    ct, mb, _ = _mil()

    @mb.program(input_specs=_spec((1, 64), dtype="fp32"), opset_version=ct.target.iOS18)
    def prog(x: Any) -> Any:
        big = mb.const(val=np.full((1, 64), 1.0e6, np.float32), name="big")
        return mb.mul(x=x, y=big, name="y")

    return prog


def big_gather_program(rows: int) -> Any:
    ct, mb, types = _mil()

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 32), dtype=types.int32)], opset_version=ct.target.iOS18)
    def prog(ids: Any) -> Any:
        table = np.zeros((rows, 32), np.float16)
        return mb.gather(x=table, indices=ids, axis=0, validate_indices=False, name="embed")

    return prog


def quantized_linear_program(scale_shape: tuple[int, int]) -> Any:
    ct, mb, types = _mil()

    @mb.program(input_specs=_spec((1, 64)), opset_version=ct.target.iOS18)
    def prog(x: Any) -> Any:
        data = np.random.default_rng(1).integers(-8, 8, size=(64, 64)).astype(types.np_int4_dtype)
        scale = np.full(scale_shape, 0.01, np.float16)
        w = mb.constexpr_blockwise_shift_scale(data=data, scale=scale, name="w_q4")
        return mb.linear(x=x, weight=w, name="y")

    return prog


def linear_program() -> Any:
    ct, mb, _ = _mil()

    @mb.program(input_specs=_spec((1, 64)), opset_version=ct.target.iOS18)
    def prog(x: Any) -> Any:
        return mb.linear(x=x, weight=np.eye(64, dtype=np.float16), name="y")

    return prog


def const_matmul_program() -> Any:
    ct, mb, _ = _mil()

    @mb.program(input_specs=_spec((1, 64)), opset_version=ct.target.iOS18)
    def prog(x: Any) -> Any:
        return mb.matmul(x=x, y=mb.const(val=np.eye(64, dtype=np.float16), name="w"), name="y")

    return prog


def dynamic_program() -> Any:
    ct, mb, types = _mil()
    from coremltools.converters.mil.mil import get_new_symbol

    @mb.program(
        input_specs=[mb.TensorSpec(shape=(1, get_new_symbol()), dtype=types.fp16)],
        opset_version=ct.target.iOS18,
    )
    def prog(x: Any) -> Any:
        return mb.relu(x=x, name="y")

    return prog


def narrow_state_program() -> Any:
    ct, mb, types = _mil()

    @mb.program(
        input_specs=[*_spec((1, 64)), mb.StateTensorSpec(shape=(1, 48), dtype=types.fp16)],
        opset_version=ct.target.iOS18,
    )
    def prog(x: Any, cache: Any) -> Any:
        mb.coreml_update_state(state=cache, value=mb.slice_by_size(x=x, begin=[0, 0], size=[1, 48]))
        return mb.relu(x=x, name="y")

    return prog


def rms_norm_program(op: str) -> Any:
    """A hand-written fp16 RMSNorm over 576 channels: sum or mean of x*x, or reduce_sum_square."""
    ct, mb, _ = _mil()

    @mb.program(input_specs=_spec((1, 8, 576)), opset_version=ct.target.iOS18)
    def prog(x: Any) -> Any:
        if op == "reduce_sum_square":
            ss = mb.reduce_sum_square(x=x, axes=[-1], keep_dims=True, name="ss")
        else:
            ss = getattr(mb, op)(x=mb.mul(x=x, y=x), axes=[-1], keep_dims=True, name="ss")
        return mb.mul(x=x, y=mb.rsqrt(x=mb.add(x=ss, y=np.float16(1e-3))), name="y")

    return prog


# --- every rule broken ---------------------------------------------------------------------------

# (builder, rule it breaks, the function/op (or feature) flagged, every rule the program breaks)
BROKEN = {
    "fp32-op": (fp32_op_program, "ane-fp32-op", "exp32", {"ane-fp32-op"}),
    "fp32-io": (lambda: relu_program((1, 64), "fp32"), "ane-fp32-io", "x", {"ane-fp32-io", "ane-fp32-op"}),
    # 20,000 wide: above the A14/A15 limit, within the A16+ one
    "max-dim": (lambda: relu_program((1, 20_000)), "ane-max-dim", "x", {"ane-max-dim"}),
    "io-last-axis": (lambda: relu_program((64, 8)), "ane-io-last-axis", "x", {"ane-io-last-axis"}),
    "inf-const": (inf_mask_program, "ane-inf-const", "causal_mask", {"ane-inf-const"}),
    "overflow-const": (
        overflow_const_program,
        "ane-fp16-overflow-const",
        "big",
        {"ane-fp16-overflow-const", "ane-fp32-op", "ane-fp32-io"},
    ),
    "gather-rows": (
        lambda: big_gather_program(70_000),
        "ane-gather-rows",
        "embed",
        {"ane-gather-rows", "ane-max-dim"},
    ),
    "blockwise-quant": (
        lambda: quantized_linear_program((64, 2)),
        "ane-blockwise-quant",
        "w_q4",
        {"ane-blockwise-quant", "ane-linear"},
    ),
    "linear": (linear_program, "ane-linear", "y", {"ane-linear"}),
    "const-matmul": (const_matmul_program, "ane-linear", "y", {"ane-linear"}),
    "dynamic-shape": (dynamic_program, "ane-dynamic-shape", "x", {"ane-dynamic-shape", "ane-io-last-axis"}),
    "state-32": (narrow_state_program, "ane-state-32", "cache", {"ane-state-32"}),
    "fp16-reduction-mean": (
        lambda: rms_norm_program("reduce_mean"),
        "ane-fp16-reduction",
        "ss",
        {"ane-fp16-reduction"},
    ),
    "fp16-reduction-sum": (
        lambda: rms_norm_program("reduce_sum"),
        "ane-fp16-reduction",
        "ss",
        {"ane-fp16-reduction"},
    ),
    "fp16-reduction-sum-square": (
        lambda: rms_norm_program("reduce_sum_square"),
        "ane-fp16-reduction",
        "ss",
        {"ane-fp16-reduction"},
    ),
}


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("ane_check")
    out = {name: _convert(build(), tmp / f"{name}.mlpackage") for name, (build, *_) in BROKEN.items()}
    out["clean"] = _convert(clean_program(), tmp / "clean.mlpackage")
    return out


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_rule_is_found_on_a_program_that_breaks_it(packages, case):
    _, rule, flagged, expected_rules = BROKEN[case]
    findings = check_package(packages[case], "ane-a14")
    assert {f.rule for f in findings} == expected_rules
    hits = [f for f in findings if f.rule == rule]
    assert ("main", flagged) in [(f.function, f.op) for f in hits], hits
    assert all(f.level == RULES[rule].level for f in hits)


def test_clean_program_passes_every_rule_on_every_target(packages):
    for target in TARGETS:
        assert check_package(packages["clean"], target) == [], target


def test_dimension_limit_is_per_chip(packages):
    """20,000 elements: an error on A14/A15 (16,384), fine on A16 and later (65,536)."""
    for target, t in TARGETS.items():
        found = [f for f in check_package(packages["max-dim"], target) if f.rule == "ane-max-dim"]
        assert bool(found) == (t.max_dim < 20_000), target
        if found:
            assert [(f.op, f.op_type) for f in found] == [("x", "input"), ("y", "output"), ("y", "relu")]


def test_gather_row_limit_is_65535_rows(tmp_path):
    """On A16 (no dimension error below 65,536) the gather rule alone decides."""
    for rows, flagged in ((65_535, False), (65_536, True)):
        pkg = _convert(big_gather_program(rows), tmp_path / f"g{rows}.mlpackage")
        found = [f for f in check_package(pkg, "ane-a16") if f.rule == "ane-gather-rows"]
        assert bool(found) == flagged, rows
        if flagged:
            assert f"{rows:,} rows" in found[0].detail


def test_per_channel_quantization_is_not_blockwise(tmp_path):
    pkg = _convert(quantized_linear_program((64, 1)), tmp_path / "per_channel.mlpackage")
    assert {f.rule for f in check_package(pkg)} == {"ane-linear"}


def test_rank_above_five(tmp_path, packages):
    """coremltools refuses to write rank-6 tensors, but other tools' packages
    may hold them: the check reads the rank from the spec, edited here."""
    import coremltools as ct

    pkg = packages["fp32-op"]
    spec = ct.utils.load_spec(str(pkg))
    fn = spec.mlProgram.functions["main"]
    op = next(o for o in fn.block_specializations[fn.opset].operations if o.outputs[0].name == "exp32")
    t = op.outputs[0].type.tensorType
    for size in (1, 1, 1, 1):
        t.dimensions.add().constant.size = size
    t.rank = len(t.dimensions)
    findings = check_program(Program(spec, None, "edited"))
    assert [(f.op, f.detail) for f in findings if f.rule == "ane-rank"] == [
        ("exp32", "output 'exp32' has rank 6: fp32 [1, 64, 1, 1, 1, 1]"),
        ("y", "input x 'exp32' has rank 6: fp32 [1, 64, 1, 1, 1, 1]"),
    ]


def test_error_summary_for_exporters(packages):
    findings = check_package(packages["gather-rows"], "ane-a14")
    assert has_errors(findings) and not has_errors(check_package(packages["linear"]))
    assert error_summary(findings, TARGETS["ane-a14"], limit=1).splitlines() == [
        "2 Neural Engine rule error(s) for ane-a14",
        "  ane-max-dim in main: embed (gather): input x 'embed_x_0' is fp16 [70000, 32]",
        "  ... and 1 more",
    ]


def test_findings_name_rule_text_and_sources(packages):
    (finding,) = [f for f in check_package(packages["inf-const"]) if f.rule == "ane-inf-const"]
    doc = finding.to_dict()
    assert doc["level"] == "error" and doc["op_type"] == "const"
    assert "-inf (496 elements)" in doc["detail"]
    assert "neural_engine_rules.md § Causal mask" in doc["sources"][0]


# --- the command line ----------------------------------------------------------------------------


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["check", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_exit_codes(capsys, packages):
    assert _run(capsys, str(packages["clean"]))[0] == 0
    code, out, _ = _run(capsys, str(packages["linear"]))  # warnings only
    assert code == 0 and "WARNING ane-linear" in out and "0 error(s), 1 warning(s)" in out
    code, out, _ = _run(capsys, str(packages["inf-const"]))
    assert code == 1 and "ERROR ane-inf-const" in out and "main: causal_mask (const)" in out
    assert _run(capsys, str(packages["max-dim"]), "--target", "ane-a14")[0] == 1
    assert _run(capsys, str(packages["max-dim"]), "--target", "ane-a17")[0] == 0


def test_json_document(capsys, packages):
    code, out, _ = _run(capsys, str(packages["gather-rows"]), "--json", "--target", "ane-a15")
    doc = json.loads(out)
    assert code == 1
    assert set(doc) == {
        "format",
        "path",
        "kind",
        "target",
        "errors",
        "warnings",
        "rules_checked",
        "findings",
    }
    assert doc["kind"] == "package" and doc["target"] == {
        "name": "ane-a15",
        "chip": "A15",
        "max_dim": 16384,
        "platform": "iOS",
    }
    assert doc["rules_checked"] == list(RULES)
    assert (doc["errors"], doc["warnings"]) == (2, 0)
    keys = {"rule", "level", "function", "op", "op_type", "detail", "title", "text", "sources"}
    assert all(set(f) == keys for f in doc["findings"])
    assert sorted(f["rule"] for f in doc["findings"]) == ["ane-gather-rows", "ane-max-dim"]


def test_listing_is_limited_per_rule(capsys, tmp_path):
    ct, mb, _ = _mil()

    @mb.program(input_specs=_spec((1, 64)), opset_version=ct.target.iOS18)
    def prog(x: Any) -> Any:
        for _ in range(5):
            x = mb.linear(x=x, weight=np.eye(64, dtype=np.float16))
        return mb.relu(x=x, name="y")

    pkg = _convert(prog, tmp_path / "five.mlpackage")
    out = _run(capsys, str(pkg), "--limit", "2")[1]
    assert out.count("(linear): weight") == 2 and "... and 3 more" in out
    assert _run(capsys, str(pkg), "--all")[1].count("(linear): weight") == 5


def test_checks_a_bundle_through_its_package(capsys, tmp_path):
    bundle = bundle_from_program(inf_mask_program(), tmp_path, "masked", fp16=True)
    code, out, _ = _run(capsys, str(bundle), "--json")
    doc = json.loads(out)
    assert code == 1 and doc["kind"] == "bundle"
    assert [f["rule"] for f in doc["findings"]] == ["ane-inf-const"]


def test_bad_input(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, str(tmp_path / "empty"))
    assert code == 2
    assert "is neither a staticllm bundle (no metadata.json) nor a Core ML package (no Manifest.json)" in err
    (tmp_path / "model.mlmodel").write_bytes(b"\0")
    code, _, err = _run(capsys, str(tmp_path / "model.mlmodel"))
    assert code == 2 and "is a file; give a staticllm bundle directory or a .mlpackage directory" in err
    code, _, err = _run(capsys, str(tmp_path / "missing"))
    assert code == 2 and "missing: no such file or directory" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_text("{}")
    code, _, err = _run(capsys, str(broken))
    assert code == 2 and "bundle has no model.mlpackage/Manifest.json" in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["check", str(tmp_path), "--target", "ane-a99"])
    assert exc.value.code == 2 and "invalid choice: 'ane-a99'" in capsys.readouterr().err
    with pytest.raises(InputError, match=r"unknown Neural Engine target 'a16'; expected one of \['ane-a14'"):
        resolve_target("a16")
    with pytest.raises(BundleError, match="not a Core ML package"):
        check_package(tmp_path / "empty")


def test_missing_or_truncated_weights_are_errors(capsys, tmp_path, packages):
    """A constant the check cannot read is an error, never a silent pass."""
    import shutil

    pkg = shutil.copytree(packages["inf-const"], tmp_path / "masked.mlpackage")
    weights = pkg / "Data/com.apple.CoreML/weights/weight.bin"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(BundleError, match="cannot read the constant at offset 64 of .*weight.bin"):
        check_package(pkg)
    weights.unlink()
    code, _, err = _run(capsys, str(pkg))
    assert code == 2 and "weight.bin is missing (the program's constants live there)" in err


def test_readme_lists_the_rules_table():
    text = README.read_text()
    m = re.search(r"<!-- ane-rules:begin -->\n(.*?)<!-- ane-rules:end -->", text, re.S)
    assert m is not None, "README has no generated Neural Engine rule table"
    assert m.group(1) == rules_markdown(), "regenerate with: python -m staticllm.check.rules"


@pytest.mark.parametrize(
    "config, blockwise",
    [
        ({"mode": "linear_symmetric", "dtype": "int4", "granularity": "per_block", "block_size": 32}, True),
        ({"mode": "linear_symmetric", "dtype": "int4", "granularity": "per_channel"}, False),
        ({"mode": "linear_symmetric", "dtype": "int8", "granularity": "per_channel"}, False),
    ],
)
def test_blockwise_rule_on_coremltools_compression(tmp_path, config, blockwise):
    """What coremltools' weight compression (the export's --quantize int4/int8) writes."""
    import coremltools.optimize.coreml as cto

    ct, mb, _ = _mil()

    @mb.program(input_specs=_spec((1, 1, 1, 128)), opset_version=ct.target.iOS18)
    def prog(x: Any) -> Any:
        w = np.random.default_rng(2).standard_normal((128, 128)).astype(np.float16)
        return mb.linear(x=x, weight=w, name="y")

    model = ct.models.MLModel(
        str(convert_program(prog, tmp_path / "f.mlpackage", fp16=True)), skip_model_load=True
    )
    op_config = cto.OpLinearQuantizerConfig(weight_threshold=0, **config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compressed = cto.linear_quantize_weights(model, cto.OptimizationConfig(global_config=op_config))
    compressed.save(str(tmp_path / "q.mlpackage"))
    rules = {f.rule for f in check_package(tmp_path / "q.mlpackage")}
    assert rules == ({"ane-blockwise-quant", "ane-linear"} if blockwise else {"ane-linear"})
