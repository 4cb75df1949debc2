"""`staticllm serve` end to end: a server process started on a free loopback
port over the tiny random multifunction chat bundle, spoken to with the
official `openai` client and raw HTTP. Answers must equal greedy generation
in this process from scratch; errors must be OpenAI error objects; the server
must keep serving. Every request has a timeout and every server is killed at
the end."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from staticllm.generate import Generator

MODEL = "multi"  # the bundle directory's name
TIMEOUT = 60.0
PROMPTS = [
    "hello world!",
    "the quick brown fox",
    "a static graph runs the same",
    "prefill reads the prompt",
    "decode writes one token",
    "café déjà vu",
    "over the lazy dog",
    "0123456789",
]


class Server:
    """A `staticllm serve` subprocess on a free loopback port."""

    def __init__(self, bundle: Path, log: Path, *args: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log_path = log
        cmd = [sys.executable, "-m", "staticllm.cli", "serve", str(bundle), "--port", str(self.port), *args]
        with open(log, "w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the server did not start:\n{self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text()

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            assert resp.getheader("Content-Type", "").startswith("application/json"), raw
            return resp.status, json.loads(raw)
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, dict]:
        return self.request("GET", path)

    def post(self, path: str, body: object) -> tuple[int, dict]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request("POST", path, raw)

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"http://127.0.0.1:{self.port}/v1", api_key="none", timeout=TIMEOUT, max_retries=0
        )

    def open_stream(self, body: dict) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        body = {**body, "stream": True, "temperature": 0}  # greedy: the long reply of the fixture check
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode())
        resp = conn.getresponse()
        assert resp.status == 200
        return conn, resp

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def bundle(chat_bundles):
    return chat_bundles["multi"]


@pytest.fixture(scope="module")
def gen(bundle):
    """Reference generations in this process, each from scratch."""
    return Generator(bundle)


@pytest.fixture(scope="module")
def server(bundle, tmp_path_factory):
    s = Server(bundle, tmp_path_factory.mktemp("serve") / "server.log", "--max-queue", "8")
    yield s
    assert s.stop() == 0, s.log()
    assert "Traceback" not in s.log(), s.log()


@pytest.fixture(scope="module")
def long_reply(gen):
    """PROMPTS[0]'s greedy reply runs 2000 tokens (seconds) without an end token:
    the busy request of the queue and shutdown tests."""
    reply = chat_reference(gen, user(PROMPTS[0]), 2000)
    assert reply.stop_reason == "max_new_tokens", "fixture: the reply must be long"
    return reply


def chat_reference(gen: Generator, messages: list[dict], max_tokens: int, **options):
    return gen.generate(gen.encode_messages(messages), max_new_tokens=max_tokens, **options)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def sse_events(resp: http.client.HTTPResponse) -> list[str]:
    """The data fields of a whole event stream."""
    text = resp.read().decode()
    assert text.endswith("data: [DONE]\n\n"), text[-200:]
    return [block[len("data: ") :] for block in text.strip().split("\n\n")]


def test_health_and_models(server):
    status, body = server.get("/health")
    assert status == 200 and body["status"] == "ok" and body["model"] == MODEL
    assert [m.id for m in server.client().models.list()] == [MODEL]
    assert server.get(f"/v1/models/{MODEL}") == (200, server.get("/v1/models")[1]["data"][0])
    status, body = server.get("/v1/models/other")
    assert status == 404 and body["error"]["code"] == "model_not_found"


def test_chat_completion_matches_greedy_generation_with_usage(server, gen):
    messages = [{"role": "system", "content": "be brief."}, *user(PROMPTS[0])]
    ref = chat_reference(gen, messages, 12)
    r = server.client().chat.completions.create(model=MODEL, messages=messages, max_tokens=12, temperature=0)
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == ref.text
    assert choice.finish_reason == ("length" if ref.stop_reason == "max_new_tokens" else "stop")
    assert r.object == "chat.completion" and r.model == MODEL and r.id.startswith("chatcmpl-")
    assert r.usage.prompt_tokens == len(ref.prompt_token_ids)
    assert r.usage.completion_tokens == len(ref.token_ids)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_streaming_gives_the_same_text_and_a_usage_chunk(server, gen):
    ref = chat_reference(gen, user(PROMPTS[1]), 12)
    stream = server.client().chat.completions.create(
        model=MODEL,
        messages=user(PROMPTS[1]),
        max_completion_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ref.text
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert reasons == ["length" if ref.stop_reason == "max_new_tokens" else "stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(ref.token_ids)
    assert chunks[-1].usage.prompt_tokens == len(ref.prompt_token_ids)


def test_completions_plain_and_streamed_end_with_done(server, gen):
    ref = gen.generate(PROMPTS[2], max_new_tokens=10)
    r = server.client().completions.create(model=MODEL, prompt=PROMPTS[2], max_tokens=10, temperature=0)
    assert r.object == "text_completion" and r.choices[0].text == ref.text
    assert r.usage.prompt_tokens == len(ref.prompt_token_ids)
    status, body = server.post(
        "/v1/completions",
        {"model": MODEL, "prompt": ref.prompt_token_ids, "max_tokens": 10, "temperature": 0},
    )
    assert status == 200 and body["choices"][0]["text"] == ref.text
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        body = {"model": MODEL, "prompt": PROMPTS[2], "max_tokens": 10, "temperature": 0, "stream": True}
        conn.request("POST", "/v1/completions", body=json.dumps(body))
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
        events = [json.loads(e) for e in sse_events(resp)[:-1]]
    finally:
        conn.close()
    assert "".join(e["choices"][0]["text"] for e in events) == ref.text
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_stop_strings_cut_the_text(server, gen):
    ref = gen.generate(PROMPTS[3], max_new_tokens=16)
    # a two-character stop string from the middle of the greedy text (no replacement character)
    at = next(i for i in range(3, len(ref.text) - 1) if "\ufffd" not in ref.text[i : i + 2])
    stop = ref.text[at : at + 2]
    want = ref.text[: ref.text.find(stop)]
    client = server.client()
    for stops in (stop, ["zzzz", stop]):
        r = client.completions.create(
            model=MODEL, prompt=PROMPTS[3], max_tokens=16, temperature=0, stop=stops
        )
        assert r.choices[0].text == want and r.choices[0].finish_reason == "stop"


def test_finish_reason_length_and_usage(server, gen):
    ref = chat_reference(gen, user(PROMPTS[4]), 5)
    assert ref.stop_reason == "max_new_tokens", "fixture: 5 tokens without an end token"
    r = server.client().chat.completions.create(
        model=MODEL, messages=user(PROMPTS[4]), max_tokens=5, temperature=0
    )
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5


def test_eight_concurrent_clients_get_the_serial_greedy_texts(server, gen):
    refs = [chat_reference(gen, user(p), 16).text for p in PROMPTS]
    client = server.client()

    def ask(prompt: str) -> str:
        r = client.chat.completions.create(model=MODEL, messages=user(prompt), max_tokens=16, temperature=0)
        return r.choices[0].message.content

    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        texts = list(pool.map(ask, PROMPTS))
    assert texts == refs


def test_second_turn_reuses_the_cached_prefix(server, gen):
    client = server.client()
    first = [{"role": "system", "content": "be brief."}, *user(PROMPTS[5])]
    r1 = client.chat.completions.create(model=MODEL, messages=first, max_tokens=10, temperature=0)
    second = [*first, {"role": "assistant", "content": r1.choices[0].message.content}, *user(PROMPTS[6])]
    r2 = client.chat.completions.create(model=MODEL, messages=second, max_tokens=10, temperature=0)
    ref = chat_reference(gen, second, 10)  # the whole conversation from scratch
    assert r2.choices[0].message.content == ref.text
    assert r2.usage.prompt_tokens == len(ref.prompt_token_ids)
    assert r2.usage.prompt_tokens_details.cached_tokens >= r1.usage.prompt_tokens


CHAT = "/v1/chat/completions"
HI = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    "path, body, status, param, code",
    [
        (CHAT, b"{not json", 400, None, None),
        (CHAT, b"[1, 2]", 400, None, None),
        (CHAT, {"model": MODEL}, 400, "messages", None),
        (CHAT, {"messages": HI["messages"]}, 400, "model", None),
        (CHAT, {**HI, "model": "gpt-4"}, 404, "model", "model_not_found"),
        (CHAT, {**HI, "n": 2}, 400, "n", None),
        (CHAT, {**HI, "temperature": 3}, 400, "temperature", None),
        (CHAT, {**HI, "top_p": -1}, 400, "top_p", None),
        (CHAT, {**HI, "max_tokens": 0}, 400, "max_tokens", None),
        (CHAT, {**HI, "seed": "x"}, 400, "seed", None),
        (CHAT, {**HI, "stop": ["a"] * 5}, 400, "stop", None),
        (CHAT, {**HI, "stream": "yes"}, 400, "stream", None),
        (CHAT, {**HI, "messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0].role", None),
        (CHAT, {**HI, "messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content", None),
        (CHAT, {**HI, "max_tokens": 5000}, 400, "messages", "context_length_exceeded"),
        ("/v1/completions", {"model": MODEL, "prompt": ["a", "b"]}, 400, "prompt", None),
        ("/v1/completions", {"model": MODEL, "prompt": [1, 99999]}, 400, "prompt", None),
        (
            "/v1/completions",
            {"model": MODEL, "prompt": "hi " * 3000},
            400,
            "prompt",
            "context_length_exceeded",
        ),
    ],
)
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(server, path, body, status, param, code):
    got, answer = server.post(path, body)
    assert got == status, answer
    error = answer["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param and error["code"] == code
    assert "Traceback" not in error["message"]
    assert server.post("/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": 2})[0] == 200


def test_unknown_routes_and_methods_are_error_objects(server):
    status, body = server.get("/v1/nothing")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = server.get("/v1/chat/completions")
    assert status == 405 and "error" in body


def test_queue_overflow_503_and_a_disconnected_stream_does_not_block(bundle, gen, long_reply, tmp_path):
    server = Server(bundle, tmp_path / "busy.log", "--max-queue", "1")
    try:
        conn, resp = server.open_stream({"model": MODEL, "messages": user(PROMPTS[0]), "max_tokens": 2000})
        assert resp.readline().startswith(b"data: ")  # running
        waiting: dict = {}

        def wait_in_queue() -> None:
            body = {"model": MODEL, "messages": user(PROMPTS[1]), "max_tokens": 4, "temperature": 0}
            waiting["answer"] = server.post("/v1/chat/completions", body)

        thread = threading.Thread(target=wait_in_queue)
        thread.start()
        deadline = time.monotonic() + TIMEOUT
        while (health := server.get("/health")[1])["active"] < 2:
            assert time.monotonic() < deadline, f"the second request never queued: {health} {waiting}"
            time.sleep(0.05)
        status, body = server.post(
            "/v1/chat/completions", {"model": MODEL, "messages": user(PROMPTS[2]), "max_tokens": 4}
        )
        assert status == 503 and body["error"]["code"] == "queue_full"
        assert body["error"]["type"] == "server_error"
        conn.close()  # the streaming client goes away mid-reply
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "the queued request was never served"
        status, body = waiting["answer"]
        assert status == 200
        assert body["choices"][0]["message"]["content"] == chat_reference(gen, user(PROMPTS[1]), 4).text
        finished = server.get("/health")[1]["finished"]
        assert finished == {"completed": 1, "cancelled": 1, "failed": 0}
    finally:
        assert server.stop() == 0, server.log()


def test_sigterm_cancels_the_running_stream_and_exits_cleanly(bundle, long_reply, tmp_path):
    server = Server(bundle, tmp_path / "term.log", "--shutdown-timeout", "1")
    try:
        conn, resp = server.open_stream({"model": MODEL, "messages": user(PROMPTS[0]), "max_tokens": 2000})
        assert resp.readline().startswith(b"data: ")
        server.proc.send_signal(signal.SIGTERM)
        # SIGTERM finishes or cancels the running request: a reply still running after the
        # 1 s grace period is cut with an error event; one that ends within it (a fast
        # machine reaches the context limit) ends normally. Either way the stream is closed.
        events = sse_events(resp)
        conn.close()
        assert events[-1] == "[DONE]", events[-3:]
        last = json.loads(events[-2])
        cancelled = last.get("error", {}).get("code") == "cancelled"
        finished = last.get("choices", [{}])[0].get("finish_reason") in ("length", "stop")
        assert cancelled or finished, events[-3:]
        assert server.proc.wait(timeout=TIMEOUT) == 0, server.log()
        assert "Traceback" not in server.log(), server.log()
        with pytest.raises(OSError):
            server.get("/health")
    finally:
        server.stop()
