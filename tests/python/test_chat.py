"""Chat sessions over the tiny random chat bundles: each turn reuses the
cached prefix and gives exactly the tokens a prefill of the whole history
from scratch gives (greedy, plain and lookahead decoding), with caches equal
to rounding; the context policy; and the `staticllm chat` REPL driven through
a pseudo-terminal."""

from __future__ import annotations

import os
import re
import signal
import sys

import numpy as np
import pexpect
import pytest

from staticllm.errors import ContextOverflowError, InputError
from staticllm.generate import Generator

MESSAGES = [
    "hello world!",
    "the quick brown fox jumps over the lazy dog.",
    "prefill reads the prompt, decode writes one token at a time.",
]
LONG = "a static graph runs the same on every device. " * 5
LOOKAHEAD = dict(lookahead=True, ngram=3, window=2, branches=2)  # 1 + (2 + 2) * 2 = 9 rows of 16


def _prompt_kv(gen: Generator, n: int) -> list[np.ndarray]:
    """The cached keys and values of positions 0..n-1 (slots = positions here)."""
    out = []
    for _, cache in gen.runner.caches:
        assert list(cache.slot_pos[:n]) == list(range(n))
        out += [a[:, :, :n] for a in cache.arrays.values()]
    return out


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@pytest.mark.parametrize(
    "kind, extra",
    [("multi", {}), ("single", {}), ("single", LOOKAHEAD)],
    ids=["multi", "single", "lookahead"],
)
def test_turns_reuse_the_cache_and_match_a_prefill_from_scratch(chat_bundles, kind, extra):
    gen = Generator(chat_bundles[kind])
    fresh = Generator(chat_bundles[kind])
    chat = gen.chat(system="be brief.", max_new_tokens=12, **extra)
    previous_prompt: list[int] = []
    for i, message in enumerate(MESSAGES):
        cached = list(gen.runner.history)
        result = chat.send(message)
        ids = gen.encode_messages(chat.conversation()[:-1])
        assert result.prompt_token_ids == ids
        reference = fresh.generate(ids, max_new_tokens=12, **extra)  # the whole history, from scratch
        assert result.token_ids == reference.token_ids and result.text == reference.text
        assert result.stop_reason == reference.stop_reason
        # Not only the tokens: the prompt's keys and values are the scratch
        # prefill's to rounding (summed in another order where chunks start
        # elsewhere or decode wrote them; ChatSession's docstring).
        for a, b in zip(_prompt_kv(gen, len(ids)), _prompt_kv(fresh, len(ids)), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        t = result.timings
        assert t.reused_tokens == min(_common_prefix(cached, ids), len(ids) - 1)
        assert t.reused_tokens + t.prefill_tokens == len(ids)
        if i == 0:
            assert t.reused_tokens == 0
        else:  # at least the whole previous prompt came from the cache
            assert ids[: len(previous_prompt)] == previous_prompt
            assert t.reused_tokens >= len(previous_prompt)
        previous_prompt = ids
    assert [m["role"] for m in chat.messages] == ["user", "assistant"] * len(MESSAGES)
    assert [m["content"] for m in chat.messages[1::2]] == [r.text for r in chat.results]


def test_without_reuse_every_turn_prefills_everything(chat_bundles):
    gen = Generator(chat_bundles["multi"])
    chat = gen.chat(reuse=False, max_new_tokens=6)
    for message in MESSAGES[:2]:
        r = chat.send(message)
        assert r.timings.reused_tokens == 0 and r.timings.prefill_tokens == len(r.prompt_token_ids)


def test_full_context_drops_the_oldest_turns_and_keeps_the_system_prompt(chat_bundles):
    gen = Generator(chat_bundles["single"])  # context 256
    fresh = Generator(chat_bundles["single"])
    limit = gen.spec.context_limit
    chat = gen.chat(system="be brief.", max_new_tokens=40)
    for i in range(6):
        result = chat.send(f"{i}: {LONG}")
        assert len(result.prompt_token_ids) + 40 <= limit
        reference = fresh.generate(result.prompt_token_ids, max_new_tokens=40)
        assert result.token_ids == reference.token_ids
    assert chat.dropped_messages > 0
    assert chat.conversation()[0] == {"role": "system", "content": "be brief."}
    assert chat.messages[0]["role"] == "user" and chat.messages[-2]["content"] == f"5: {LONG}"
    # dropped: the oldest turns, whole
    assert chat.messages[0]["content"] == f"{chat.dropped_messages // 2}: {LONG}"


def test_strict_raises_before_running_and_keeps_the_conversation(chat_bundles):
    gen = Generator(chat_bundles["single"])
    chat = gen.chat(strict=True, max_new_tokens=40)
    with pytest.raises(ContextOverflowError, match=r"exceeds the context limit of 256 tokens"):
        for i in range(6):
            chat.send(f"{i}: {LONG}")
    assert len(chat.messages) % 2 == 0 and chat.messages[-1]["role"] == "assistant"
    assert chat.dropped_messages == 0


def test_message_larger_than_the_context_is_refused(chat_bundles):
    chat = Generator(chat_bundles["single"]).chat(max_new_tokens=8)
    with pytest.raises(ContextOverflowError, match=r"the system prompt and the newest message alone are \d+"):
        chat.send(LONG * 6)
    assert chat.messages == []
    with pytest.raises(InputError, match="non-empty text"):
        chat.send("")
    with pytest.raises(InputError, match=r"sets \['reuse_prefix'\] itself"):
        chat.send("hi", reuse_prefix=False)
    with pytest.raises(InputError, match="unknown generation option"):
        Generator(chat_bundles["single"]).chat(max_tokens=3)


def test_closing_a_reply_early_keeps_it_and_the_next_turn_still_matches(chat_bundles):
    gen = Generator(chat_bundles["multi"])
    fresh = Generator(chat_bundles["multi"])
    chat = gen.chat(max_new_tokens=40)
    stream = chat.stream(MESSAGES[0])
    next(stream)
    stream.close()
    cut = chat.last
    assert cut is not None and cut.stop_reason == "cancelled" and 1 <= len(cut.token_ids) < 40
    assert chat.messages[-1] == {"role": "assistant", "content": cut.text}
    result = chat.send(MESSAGES[1])
    assert result.timings.reused_tokens > 0
    assert result.token_ids == fresh.generate(result.prompt_token_ids, max_new_tokens=40).token_ids


# ---- the REPL ------------------------------------------------------------------------------------------


def _spawn(bundle, *args: str) -> pexpect.spawn:
    cmd = [sys.executable, "-m", "staticllm.cli", "chat", str(bundle), *args]
    # Ctrl-C as a terminal user gets it: a test run started in the background
    # by a non-interactive shell (nohup ... &) has SIGINT ignored, the child
    # would inherit that, and Python keeps an ignored SIGINT ignored.
    child = pexpect.spawn(
        cmd[0],
        cmd[1:],
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    child.expect_exact(">>> ")
    return child


def _finish(child: pexpect.spawn) -> None:
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before


def test_repl_two_turns_stats_and_reset(chat_bundles):
    bundle = chat_bundles["multi"]
    expected = Generator(bundle).chat(system="be brief.", max_new_tokens=8)
    child = _spawn(bundle, "--system", "be brief.", "--max-new-tokens", "8")
    try:
        for message in MESSAGES[:2]:
            want = expected.send(message)
            child.sendline(message)
            child.expect_exact(">>> ")
            echoed, _, reply = child.before.partition("\n")
            assert echoed.strip() == message
            # the pty turns "\n" into "\r\n"
            assert reply.replace("\r\n", "\n").rstrip("\n") == want.text.rstrip("\n")
        child.sendline("/stats")
        child.expect_exact(">>> ")
        stats = child.before
        reused = int(re.search(r"(\d+) reused from the cache", stats).group(1))
        assert reused == expected.last.timings.reused_tokens > 0
        assert "time to first token:" in stats and "decode" in stats
        child.sendline("/reset")
        child.expect_exact("[conversation reset]")
        child.expect_exact(">>> ")
        child.sendline("/nonsense")
        child.expect_exact("unknown command /nonsense")
        child.expect_exact(">>> ")
        _finish(child)
    finally:
        child.terminate(force=True)


def _ctrl_c_mid_reply(child: pexpect.spawn, message: str) -> bool:
    """Sends `message` and presses Ctrl-C while the reply is being written.
    The child is stopped (SIGSTOP) once the reply has started, so it cannot
    finish between the check and the key; False if the reply had already ended
    (a loaded machine can starve this process while the child writes a whole
    2000-token reply into the pty's buffer)."""
    child.sendline(message)
    child.expect_exact(message + "\r\n")  # the echo of the input
    child.expect(r"\S", timeout=60)  # the reply has started
    os.kill(child.pid, signal.SIGSTOP)
    try:
        # Everything written before the stop; a prompt in it means the reply ended.
        ended = child.expect_exact([">>> ", pexpect.TIMEOUT], timeout=3) == 0
        if not ended:
            child.sendintr()  # pending until the child continues
        return not ended
    finally:
        os.kill(child.pid, signal.SIGCONT)


def test_repl_ctrl_c_stops_the_reply_and_returns_to_the_prompt(chat_bundles):
    bundle = chat_bundles["multi"]
    # This message's greedy reply runs 2000 tokens (seconds) without an end token.
    probe = Generator(bundle).generate(
        Generator(bundle).encode_messages([{"role": "user", "content": MESSAGES[0]}]), max_new_tokens=2000
    )
    assert probe.stop_reason == "max_new_tokens", "fixture: the reply must be long"
    child = _spawn(bundle, "--max-new-tokens", "2000")
    try:
        for _ in range(5):
            if _ctrl_c_mid_reply(child, MESSAGES[0]):
                break
            child.sendline("/reset")
            child.expect_exact(">>> ")
        else:
            pytest.fail("every reply ended before Ctrl-C reached it")
        child.expect_exact("[stopped]", timeout=30)
        child.expect_exact(">>> ")
        child.sendline("/stats")
        child.expect_exact("stop: cancelled")
        child.expect_exact(">>> ")
        child.sendintr()  # at the prompt: a fresh prompt, not an exit
        child.expect_exact(">>> ")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
    finally:
        child.terminate(force=True)
