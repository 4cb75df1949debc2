"""The OpenAI wire format: request parsing and checking, response objects,
error objects. Nothing here runs a model.

Requests are checked field by field so every refusal is a 400 that names the
parameter (`param`), as OpenAI's API does; unknown fields are ignored, and
known features this server lacks (tools, logprobs, n > 1, penalties) are
refused only when a request asks for them.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from staticllm.errors import StaticLLMError
from staticllm.generate import stopping

CHAT_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOP_STRINGS = 4
# OpenAI's ranges: temperature [0, 2], top_p [0, 1] (0 means greedy here too).
TEMPERATURE_RANGE = (0.0, 2.0)
DEFAULT_TEMPERATURE = 1.0
FINISH_REASONS = {
    stopping.STOP_TOKEN: "stop",
    stopping.STOP_STRING: "stop",
    stopping.MAX_NEW_TOKENS: "length",
    stopping.CONTEXT_LIMIT: "length",
}


class APIError(Exception):
    """An error answered as an OpenAI error object with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(param: str | None, message: str, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


@dataclass
class ParsedRequest:
    """What a completion request asks the engine to do."""

    kind: str  # "chat" or "completion"
    model: str
    prompt_ids: list[int]
    max_new_tokens: int
    options: dict[str, Any]  # Generator options
    stream: bool = False
    include_usage: bool = False
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))


# ---- field checks -------------------------------------------------------------------------------------


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_request(name, f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise bad_request(name, f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _int(body: dict[str, Any], name: str, low: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise bad_request(name, f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(name, f"{name} must be true or false, got {value!r}")
    return value


def _stop(body: dict[str, Any]) -> list[str]:
    value = body.get("stop")
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list)
        or not all(isinstance(s, str) and s for s in stops)
        or not 1 <= len(stops) <= MAX_STOP_STRINGS
    ):
        raise bad_request(
            "stop",
            f"stop must be a non-empty string or a list of 1 to {MAX_STOP_STRINGS} of them, got {value!r}",
        )
    return stops


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """Features this server does not have, refused only when asked for."""
    n = body.get("n")
    if n is not None and n != 1:
        raise bad_request("n", f"only n = 1 is supported (one model, one generation at a time), got {n!r}")
    for name in ("presence_penalty", "frequency_penalty"):
        value = body.get(name)
        if value not in (None, 0, 0.0):
            raise bad_request(name, f"{name} is not supported; leave it out or set it to 0")
    for name in ("tools", "functions", "logit_bias", "suffix"):
        if body.get(name):
            raise bad_request(name, f"{name} is not supported by this server")
    if body.get("logprobs") not in (None, False, 0) or body.get("top_logprobs"):
        raise bad_request("logprobs", "logprobs are not supported by this server")
    if body.get("echo"):
        raise bad_request("echo", "echo is not supported by this server")
    best_of = body.get("best_of")
    if best_of is not None and best_of != 1:
        raise bad_request("best_of", f"only best_of = 1 is supported, got {best_of!r}")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise bad_request("response_format", "only response_format {'type': 'text'} is supported")


def check_model(body: dict[str, Any], model_id: str) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request(
            "model", "the request needs a 'model' (a string); this server has " + repr(model_id)
        )
    if model != model_id:
        raise APIError(
            404,
            f"the model {model!r} does not exist; this server serves {model_id!r}",
            param="model",
            code="model_not_found",
        )
    return model


def _content(message: dict[str, Any], index: int) -> str:
    content = message.get("content")
    param = f"messages[{index}].content"
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise bad_request(
                    param, "only text content parts ({'type': 'text', 'text': ...}) are supported"
                )
            parts.append(part["text"])
        return "".join(parts)
    raise bad_request(param, f"content must be a string or a list of text parts, got {content!r}")


def chat_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages", "the request needs 'messages', a non-empty list of {role, content}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise bad_request(f"messages[{i}]", f"each message must be an object, got {m!r}")
        role = m.get("role")
        if role not in CHAT_ROLES:
            raise bad_request(
                f"messages[{i}].role", f"role must be one of {sorted(CHAT_ROLES)}, got {role!r}"
            )
        out.append({"role": CHAT_ROLES[role], "content": _content(m, i)})
    return out


def completion_prompt(body: dict[str, Any]) -> str | list[int]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str) and prompt:
        return prompt
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)
    ):
        return prompt
    raise bad_request(
        "prompt", "the request needs 'prompt': one non-empty string or list of token ids (no batches)"
    )


# ---- requests -----------------------------------------------------------------------------------------


def parse(body: Any, kind: str, generator: Any, model_id: str) -> ParsedRequest:
    """Checks a chat ("chat") or completions ("completion") body and tokenizes its prompt."""
    if not isinstance(body, dict):
        raise bad_request(None, f"the request body must be a JSON object, got {type(body).__name__}")
    model = check_model(body, model_id)
    _refuse_unsupported(body)
    try:
        if kind == "chat":
            ids = generator.encode_messages(chat_messages(body))
        else:
            ids = generator.encode(completion_prompt(body))
    except StaticLLMError as exc:
        raise bad_request("messages" if kind == "chat" else "prompt", str(exc)) from exc
    max_tokens = _int(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens", 1)
    limit = generator.spec.context_limit
    if len(ids) + (max_tokens or 1) > limit:
        asked = "" if max_tokens is None else f" + max_tokens {max_tokens}"
        raise bad_request(
            "messages" if kind == "chat" else "prompt",
            f"this model's context is {limit} tokens; the prompt is {len(ids)} tokens{asked}. "
            f"Shorten the prompt or ask for fewer tokens",
            code="context_length_exceeded",
        )
    temperature = _number(body, "temperature", DEFAULT_TEMPERATURE, *TEMPERATURE_RANGE)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0.0:
        temperature = 0.0  # only the most likely token is left
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise bad_request("stream_options", f"stream_options must be an object, got {stream_options!r}")
    max_new = max_tokens if max_tokens is not None else limit - len(ids)
    options = dict(
        max_new_tokens=max_new,
        temperature=temperature,
        top_p=top_p if top_p > 0 else 1.0,
        seed=_int(body, "seed", 0),
        stop=_stop(body),
        reuse_prefix=True,
    )
    return ParsedRequest(
        kind=kind,
        model=model,
        prompt_ids=ids,
        max_new_tokens=max_new,
        options=options,
        stream=_bool(body, "stream"),
        include_usage=_bool(stream_options or {}, "include_usage"),
        id=("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex,
    )


# ---- responses ----------------------------------------------------------------------------------------


def finish_reason(stop_reason: str) -> str:
    return FINISH_REASONS.get(stop_reason, "stop")


def usage(result: Any) -> dict[str, Any]:
    prompt = len(result.prompt_token_ids)
    completion = len(result.token_ids)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": result.timings.reused_tokens},
    }


def _envelope(req: ParsedRequest, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": req.id, "object": obj, "created": req.created, "model": req.model, "choices": choices}


def response(req: ParsedRequest, result: Any) -> dict[str, Any]:
    """The whole answer of a non-streaming request."""
    reason = finish_reason(result.stop_reason)
    if req.kind == "chat":
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": result.text},
            "finish_reason": reason,
            "logprobs": None,
        }
        body = _envelope(req, "chat.completion", [choice])
    else:
        choice = {"index": 0, "text": result.text, "finish_reason": reason, "logprobs": None}
        body = _envelope(req, "text_completion", [choice])
    body["usage"] = usage(result)
    return body


def chunk(
    req: ParsedRequest, text: str | None, reason: str | None = None, first: bool = False
) -> dict[str, Any]:
    """One streamed event: a piece of text, or (text None) the finishing one."""
    if req.kind == "chat":
        delta: dict[str, Any] = {}
        if first:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}
        body = _envelope(req, "chat.completion.chunk", [choice])
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": reason, "logprobs": None}
        body = _envelope(req, "text_completion", [choice])
    if req.include_usage:
        body["usage"] = None
    return body


def usage_chunk(req: ParsedRequest, result: Any) -> dict[str, Any]:
    """The last event when stream_options.include_usage: no choices, the usage."""
    obj = "chat.completion.chunk" if req.kind == "chat" else "text_completion"
    body = _envelope(req, obj, [])
    body["usage"] = usage(result)
    return body


def model_card(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "staticllm"}
