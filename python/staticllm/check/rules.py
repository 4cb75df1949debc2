"""The Neural Engine rules `staticllm check` applies, and the chips it knows.

Each rule is defined here once, with the document (and section) it comes
from; the checks in `ane.py` refer to rules by id, and the README's rule table
is generated from `RULES` (tests/python/test_ane_check.py keeps the two equal).
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR, WARNING = "error", "warning"

# Where the rules come from. Apple's documents are the model-authoring skill
# of the public repository apple/coreai-models; the rest are reports of what
# Core ML exporters ran into, cited by repository and issue number.
APPLE_NE_RULES = "apple/coreai-models skills/skills/model-authoring/references/neural_engine_rules.md"
APPLE_COMMON_ISSUES = "apple/coreai-models skills/skills/model-authoring/references/common_issues.md"
APPLE_GUIDANCE = "apple/coreai-models skills/skills/working-with-coreai/references/guidance.md"


@dataclass(frozen=True)
class Target:
    """A chip the check can be asked about. `max_dim` is the largest extent
    the Neural Engine compiler accepts on any axis; `platform` decides the
    rules that differ between iOS and macOS deployments."""

    name: str
    chip: str
    max_dim: int
    platform: str


_SMALL_DIM, _LARGE_DIM = 16_384, 65_536
TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("ane-a14", "A14", _SMALL_DIM, "iOS"),
        Target("ane-a15", "A15", _SMALL_DIM, "iOS"),
        Target("ane-a16", "A16", _LARGE_DIM, "iOS"),
        Target("ane-a17", "A17 Pro", _LARGE_DIM, "iOS"),
        Target("ane-a18", "A18", _LARGE_DIM, "iOS"),
    )
}
# The strictest target is the default: a bundle that passes it passes all.
DEFAULT_TARGET = "ane-a14"


@dataclass(frozen=True)
class Rule:
    id: str
    level: str
    title: str
    text: str  # what the rule requires, and why
    sources: tuple[str, ...]


# Thresholds the checks use, named once.
MIN_IO_LAST_AXIS_BYTES = 64  # 32 fp16 elements
STATE_MULTIPLE = 32
MAX_GATHER_ROWS = 65_535  # the largest row index 16 bits hold
MAX_RANK = 5
FP16_MAX = 65_504.0
LARGE_REDUCTION = 256  # axis length past which a sum of fp16 squares overflows at rms > 16


RULES: dict[str, Rule] = {
    r.id: r
    for r in (
        Rule(
            "ane-fp32-op",
            ERROR,
            "fp32 compute",
            "Every op computes in fp16 (or int8/int16): an fp32 op or constant cannot run on the "
            "Neural Engine and moves that part of the graph to the GPU or CPU.",
            (
                f"{APPLE_NE_RULES} § Neural Engine Programming Constraints; § Float32 intermediates",
                f"{APPLE_COMMON_ISSUES} § General rules (Float32 constants)",
            ),
        ),
        Rule(
            "ane-fp32-io",
            ERROR,
            "fp32 inputs, outputs or states",
            "Inputs, outputs and states are fp16 (or integer): an fp32 feature puts a conversion "
            "off the Neural Engine at the graph's edge.",
            (f"{APPLE_NE_RULES} § Neural Engine Programming Constraints (Supported dtypes)",),
        ),
        Rule(
            "ane-rank",
            ERROR,
            "rank above 5",
            f"No tensor has more than {MAX_RANK} dimensions; the Neural Engine rejects rank-6 and "
            "higher intermediates.",
            (f"{APPLE_NE_RULES} § Neural Engine Programming Constraints (Max tensor rank: 5)",),
        ),
        Rule(
            "ane-max-dim",
            ERROR,
            "dimension above the chip's limit",
            "No tensor dimension exceeds the chip's limit: 16,384 elements on A14 and A15, 65,536 on "
            "A16 and later (--target); larger tensors, such as a whole-vocabulary LM head or "
            "embedding table, must be split.",
            (
                "apple/coremltools#1003 (models with a dimension above 16,384 fail to load) and "
                "microsoft/onnxruntime CoreML execution provider (rejects inputs with a dimension "
                "above 16,384, citing it)",
                "reverse-engineered Neural Engine validator limits: transpose extent at most 16,384 "
                "on A13-A15 and 65,536 on A16",
            ),
        ),
        Rule(
            "ane-io-last-axis",
            WARNING,
            "I/O last axis under 64 bytes",
            f"The last axis of every input and output spans at least {MIN_IO_LAST_AXIS_BYTES} bytes "
            "(32 fp16 elements); a narrower one is padded to 64 bytes (32x the memory for a "
            "singleton fp16 axis).",
            (f"{APPLE_NE_RULES} § Data Layout & Alignment (Tensor memory alignment)",),
        ),
        Rule(
            "ane-inf-const",
            ERROR,
            "infinite or NaN constant",
            "No constant holds -inf, +inf or NaN: the Neural Engine does not handle IEEE -inf "
            "correctly in softmax; mask with a finite value such as -40000 (exp of it is 0 in fp16).",
            (
                f"{APPLE_NE_RULES} § Causal mask",
                f"{APPLE_COMMON_ISSUES} § Neural Engine causal mask with float('-inf')",
            ),
        ),
        Rule(
            "ane-fp16-overflow-const",
            ERROR,
            "constant outside the fp16 range",
            f"No floating-point constant exceeds the fp16 range (|x| <= {FP16_MAX:,.0f}); on the "
            "fp16 datapath it becomes infinite.",
            (
                f"{APPLE_NE_RULES} § Neural Engine Programming Constraints (Supported dtypes: fp16)",
                f"{APPLE_COMMON_ISSUES} § General rules (cast constants to float16)",
            ),
        ),
        Rule(
            "ane-gather-rows",
            ERROR,
            "gather over more than 65,535 rows",
            f"A gather with runtime indices reads from at most {MAX_GATHER_ROWS:,} rows (a 16-bit "
            "index): split larger tables, such as the embedding of a vocabulary above 65,535.",
            (
                "apple/coremltools#2365 (int32 token ids are cast inside the graph, which keeps "
                "that part off the Neural Engine; ids fit 16 bits only for vocabularies up to 65,535)",
                "issue 12 of this project (ExecuTorch's note that the Neural Engine reads token ids "
                "as 16-bit)",
            ),
        ),
        Rule(
            "ane-blockwise-quant",
            ERROR,
            "blockwise linear quantization on iOS",
            "On iOS, weights are quantized per channel (int8/int4) or palettized (per tensor or "
            "per grouped channel); per-block linear quantization is the macOS/GPU representation.",
            (
                f"{APPLE_GUIDANCE} § Platform guidance, Compression and optimization (iOS; macOS)",
                "pytorch/executorch examples/apple/coreml/llama/export_static_llm_coreml.py "
                "(--linear_quantize: 'The ANE requires channelwise')",
            ),
        ),
        Rule(
            "ane-linear",
            WARNING,
            "linear instead of 1x1 conv",
            "Projections are 1x1 conv on (B, C, 1, S) data: `linear` (or matmul by a constant) "
            "is decomposed into less efficient ops that may fall back to the CPU.",
            (f"{APPLE_NE_RULES} § Conv2d instead of Linear; § BC1S format",),
        ),
        Rule(
            "ane-dynamic-shape",
            ERROR,
            "flexible or dynamic shapes",
            "Every shape is static: no flexible inputs (ranges or enumerated shapes) and no "
            "unknown dimension in the program; export one function per shape.",
            (
                f"{APPLE_NE_RULES} § Neural Engine Programming Constraints (Fully static shapes)",
                "apple/coremltools#2370 (flexible input shapes run partly or not at all on the "
                "Neural Engine)",
            ),
        ),
        Rule(
            "ane-state-32",
            ERROR,
            "state last axis not a multiple of 32",
            f"The last axis (width) of every state is a multiple of {STATE_MULTIPLE}: stateful "
            "models whose state width is not fail on the Neural Engine (270 fails, 256 runs).",
            (
                "apple/coremltools#2631 (stateful model fails on the ANE when a state dimension is "
                "not a multiple of 32)",
            ),
        ),
        Rule(
            "ane-fp16-reduction",
            WARNING,
            "fp16 sum of squares over a large axis",
            f"An fp16 sum or mean of squares over an axis of {LARGE_REDUCTION} or more elements "
            "(an RMSNorm done by hand) overflows once the activations' rms exceeds "
            f"sqrt({FP16_MAX:,.0f}/n); scale the input by its max magnitude first, or use "
            "x·sqrt(d)/max(‖x‖, eps) (reduce_l2_norm).",
            (
                "apple/coremltools#2585 and apple/coremltools#2821 (the default RMSNorm overflows "
                "fp16 on the ANE; the converter rescales by max|x|)",
                "pytorch/executorch#19523 (CoreML-stable RMSNorm as x·sqrt(d)/vector_norm(x))",
            ),
        ),
    )
}


# Short names of Apple's documents in the README table (the report prints the full paths).
_SHORT_NAMES = {
    APPLE_NE_RULES: "Apple NE rules",
    APPLE_COMMON_ISSUES: "Apple common issues",
    APPLE_GUIDANCE: "Apple guidance",
}


def rules_markdown() -> str:
    """The README's rule table (generated here; a test keeps the README equal)."""
    lines = ["| id | level | rule | sources |", "|---|---|---|---|"]
    for r in RULES.values():
        text = _cell(r.text)
        sources = "<br>".join(_cell(_shorten(s)) for s in r.sources)
        lines.append(f"| `{r.id}` | {r.level} | **{r.title}.** {text} | {sources} |")
    lines.append("")
    lines += [f"- {short}: `{full}`" for full, short in _SHORT_NAMES.items()]
    targets = ", ".join(f"`{t.name}` ({t.chip}, {t.max_dim:,})" for t in TARGETS.values())
    lines += [f"- Targets (chip, largest dimension): {targets}; default `{DEFAULT_TARGET}`."]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _shorten(source: str) -> str:
    for full, short in _SHORT_NAMES.items():
        source = source.replace(full, short)
    return source


if __name__ == "__main__":  # python -m staticllm.check.rules: the README table
    print(rules_markdown(), end="")
