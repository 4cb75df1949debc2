"""Merging converted functions into one multifunction package.

coremltools' save_multifunction works from saved packages: it re-reads each
one from disk and parses it back into a MIL program. The converted models
still hold their MIL programs in memory, so the merge here takes them from
there and only does what must be done: put the functions side by side,
de-duplicate equal constants across them (so weight.bin stores each weight
once), and serialize once. Models without an in-memory program fall back to
save_multifunction.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def _function_description(mlmodel: Any, name: str) -> Any:
    from coremltools.proto import Model_pb2

    d = mlmodel.get_spec().description
    return Model_pb2.FunctionDescription(
        name=name,
        input=d.input,
        output=d.output,
        state=d.state,
        predictedFeatureName=d.predictedFeatureName,
        predictedProbabilitiesName=d.predictedProbabilitiesName,
    )


def merge_functions(models: dict[str, Any], default: str, dest: Path) -> None:
    """Write `models` (function name -> single-function MLModel) as one package."""
    if any(getattr(m, "_mil_program", None) is None for m in models.values()):
        return _merge_from_disk(models, default, dest)
    import coremltools as ct
    from coremltools.converters.mil.converter import mil_convert
    from coremltools.converters.mil.mil import Program
    from coremltools.proto import Model_pb2

    prog = Program()
    descriptions = []
    spec_version = 0
    for name, model in models.items():
        prog.add_function(name, model._mil_program.functions["main"])
        descriptions.append(_function_description(model, name))
        spec_version = max(spec_version, model.get_spec().specificationVersion)
    share_equal_constants(prog)
    prog.default_function_name = default
    prog.skip_all_passes = True  # each function was optimized when it was converted
    prog.export_as_multifunction = True
    with _validated_already():
        merged = mil_convert(
            prog,
            convert_to="mlprogram",
            convert_from="milinternal",
            specification_version=max(
                spec_version, ct._SPECIFICATION_VERSION_IOS_18
            ),  # multifunction needs iOS18
            compute_units=ct.ComputeUnit.CPU_ONLY,
            model_description=Model_pb2.ModelDescription(functions=descriptions, defaultFunctionName=default),
            skip_model_load=True,
        )
    merged.save(str(dest))


def share_equal_constants(prog: Any) -> int:
    """Gives equal constants of different functions one weight id, so the
    serializer writes a single blob for them; returns how many are shared.

    Candidates are paired by dtype, shape and a digest of their bytes (not by
    name: a weight the converter folded, such as the ane target's conv
    kernels, is named after the op that made it, which differs between
    functions) and confirmed with an exact comparison (a memcmp, much
    cheaper than coremltools' allclose over hashed candidates).
    """
    groups: dict[tuple, list[tuple[str, Any]]] = {}
    for name, func in prog.functions.items():
        for op in func.operations:
            if op.op_type != "const" or op.weight_id is not None:
                continue
            val = op.outputs[0].val
            if isinstance(val, np.ndarray) and val.size > 0:
                digest = hashlib.blake2b(np.ascontiguousarray(val).data, digest_size=16).digest()
                groups.setdefault((str(val.dtype), val.shape, digest), []).append((name, op))
    shared = 0
    for members in groups.values():
        first = members[0][1].outputs[0].val
        by_function: dict[str, list[Any]] = {}
        for name, op in members:
            if op is members[0][1] or np.array_equal(op.outputs[0].val, first):
                by_function.setdefault(name, []).append(op)
        # the i-th equal constant of each function shares one blob: copies
        # within a function stay apart, as each function alone stores them
        for i in range(max(len(ops) for ops in by_function.values())):
            paired = [ops[i] for ops in by_function.values() if i < len(ops)]
            if len(paired) > 1:
                for op in paired:
                    op.weight_id = f"shared_{shared}"
                shared += 1
    return shared


@contextlib.contextmanager
def _validated_already() -> Iterator[None]:
    """Each function was validated after every pass of its own conversion;
    the backend pipeline would validate the merged program again after every
    pass, which costs more than the rest of the merge."""
    from coremltools.converters.mil.mil.program import Program

    original = Program.validate, Program.__str__
    Program.validate = lambda self, *args, **kwargs: None
    # the pipeline formats the whole program for debug logs even when unused
    Program.__str__ = lambda self: "<program>"
    try:
        yield
    finally:
        Program.validate, Program.__str__ = original


def _merge_from_disk(models: dict[str, Any], default: str, dest: Path) -> None:
    import coremltools as ct

    with tempfile.TemporaryDirectory(prefix="staticllm-merge-") as work:
        desc = ct.utils.MultiFunctionDescriptor()
        for name, model in models.items():
            path = Path(work) / f"{name}.mlpackage"
            model.save(str(path))
            desc.add_function(str(path), src_function_name="main", target_function_name=name)
        desc.default_function_name = default
        ct.utils.save_multifunction(desc, str(dest))
