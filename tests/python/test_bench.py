"""`staticllm bench` on the tiny chat bundles: the figures it reports are
consistent (median within min..max, every trial timed), the prompt shrinks to
fit the context and says so, and bad options fail clearly."""

from __future__ import annotations

import json

from staticllm import _core
from staticllm.cli import main


def test_bench_json_reports_trials_memory_and_machine(chat_bundles, capsys):
    code = main(
        [
            "bench",
            str(chat_bundles["multi"]),
            "--prompt-tokens",
            "40",
            "--gen-tokens",
            "8",
            "--trials",
            "2",
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    r = json.loads(out)
    assert (r["prompt_tokens"], r["gen_tokens"], r["trials"], r["notes"]) == (40, 8, 2, [])
    assert r["methods"] == {"prefill": "prefill", "decode": "decode"} and r["backend"] == "mil"
    for key in ("ttft_ms", "prefill_tokens_per_s", "decode_tokens_per_s"):
        s = r[key]
        assert 0 < s["min"] <= s["median"] <= s["max"], (key, s)
    assert r["load_s"] > 0 and r["peak_rss_mb"] > 10
    assert r["machine"]["simd"] == _core.simd_level() and r["machine"]["threads"] >= 1


def test_bench_fits_the_prompt_to_the_context_and_prints_a_table(chat_bundles, capsys):
    code = main(
        [
            "bench",
            str(chat_bundles["single"]),
            "--gen-tokens",
            "16",
            "--trials",
            "1",
            "--warmup",
            "0",
            "--no-mmap",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "240 prompt tokens, 16 generated, 1 trials" in out  # context 256: 512 did not fit
    assert "note: prompt tokens lowered from 512 to 240 to fit the context" in out
    for label in ("time to first token ms", "prefill tokens/s", "decode tokens/s", "peak RSS:", "SIMD"):
        assert label in out


def test_bench_bad_options(chat_bundles, capsys):
    assert main(["bench", str(chat_bundles["single"]), "--trials", "0"]) == 2
    assert "--trials must be >= 1, got 0" in capsys.readouterr().err
    assert main(["bench", str(chat_bundles["single"]), "--gen-tokens", "300"]) == 2
    assert "leaves no room for a prompt in the context of 256 tokens" in capsys.readouterr().err
