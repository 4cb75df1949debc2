"""The Starlette application: OpenAI's routes over one Engine.

    GET  /health               liveness and queue depth
    GET  /v1/models            the one model this server holds
    POST /v1/chat/completions  chat (the bundle's chat template), streaming or not
    POST /v1/completions       plain text completion, streaming or not

Every error is an OpenAI error object; anything unexpected is logged and
answered 500 with a message, never a traceback, and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from staticllm.serving import protocol
from staticllm.serving.engine import Engine, Job, QueueFull
from staticllm.serving.protocol import APIError

DISCONNECT_POLL_S = 0.2  # how often a waiting non-streaming request checks its client


def create_app(generator: Any, model_id: str, max_queue: int = 16, lookahead: bool = False) -> Starlette:
    """`lookahead`: every request decodes with lookahead (single-method bundles)."""
    engine = Engine(generator, max_queue)
    created = int(time.time())

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "model": model_id,
                "active": engine.active,  # running + waiting
                "max_queue": max_queue,
                "finished": dict(engine.counts),
            }
        )

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [protocol.model_card(model_id, created)]})

    async def model(request: Request) -> Response:
        name = request.path_params["model"]
        if name != model_id:
            raise APIError(404, f"the model {name!r} does not exist", param="model", code="model_not_found")
        return JSONResponse(protocol.model_card(model_id, created))

    async def complete(request: Request, kind: str) -> Response:
        req = protocol.parse(await _json_body(request), kind, generator, model_id)
        if lookahead:
            req.options["lookahead"] = True
        try:
            job = engine.submit(req.prompt_ids, req.options)
        except QueueFull:
            raise APIError(
                503,
                f"the server is busy: {max_queue} requests already wait for the model; retry later",
                type="server_error",
                code="queue_full",
            ) from None
        if req.stream:
            return StreamingResponse(_sse(job, req), media_type="text/event-stream")
        return JSONResponse(protocol.response(req, await _result(request, job)))

    async def chat_completions(request: Request) -> Response:
        return await complete(request, "chat")

    async def completions(request: Request) -> Response:
        return await complete(request, "completion")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # The loop still runs: cancel what waits or runs, join the worker off the loop.
        await asyncio.get_running_loop().run_in_executor(None, engine.close)

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/models/{model:path}", model),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
        ],
        exception_handlers={
            APIError: _api_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
        lifespan=lifespan,
    )
    app.state.engine = engine
    return app


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise protocol.bad_request(None, f"the request body is not valid JSON: {exc}") from None


async def _result(request: Request, job: Job) -> Any:
    """Waits for a non-streaming job, cancelling it if the client goes away."""
    try:
        while True:
            try:
                kind, value = await asyncio.wait_for(job.next(), DISCONNECT_POLL_S)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    job.cancel()
                    raise APIError(499, "the client closed the request", code="client_closed") from None
                continue
            if kind == "done":
                return value
            if kind == "error":
                raise _generation_error(value)
    finally:
        job.cancel()  # no-op when finished; stops the generation otherwise


async def _sse(job: Job, req: protocol.ParsedRequest) -> AsyncIterator[str]:
    """Server-sent events ending with `data: [DONE]`; a client that disconnects
    cancels the stream (Starlette cancels this generator), and so the job."""
    try:
        yield _event(protocol.chunk(req, "" if req.kind == "chat" else None, first=True))
        async for kind, value in job.events():
            if kind == "piece":
                yield _event(protocol.chunk(req, value))
            elif kind == "done":
                yield _event(protocol.chunk(req, None, protocol.finish_reason(value.stop_reason)))
                if req.include_usage:
                    yield _event(protocol.usage_chunk(req, value))
            else:
                yield _event(_generation_error(value).body())
        yield "data: [DONE]\n\n"
    finally:
        job.cancel()


def _event(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _generation_error(exc: BaseException) -> APIError:
    if isinstance(exc, asyncio.CancelledError):
        return APIError(
            503,
            "the request was cancelled: the server is shutting down",
            type="server_error",
            code="cancelled",
        )
    from staticllm.errors import ContextOverflowError, InputError

    if isinstance(exc, ContextOverflowError):
        return protocol.bad_request(None, str(exc), code="context_length_exceeded")
    if isinstance(exc, InputError):
        return protocol.bad_request(None, str(exc))
    return APIError(500, f"generation failed: {type(exc).__name__}: {exc}", type="server_error")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = "not_found" if exc.status_code == 404 else None
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return JSONResponse(APIError(exc.status_code, message, code=code).body(), status_code=exc.status_code)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this answer, so uvicorn logs the traceback (to the log, not the client).
    err = APIError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error")
    return JSONResponse(err.body(), status_code=500)
