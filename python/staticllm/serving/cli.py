"""`staticllm serve BUNDLE`: an OpenAI-compatible HTTP server (needs the `serve` extra)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from staticllm.errors import InputError
from staticllm.generate.cli import add_load_args


def register(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="serve a bundle over an OpenAI-compatible HTTP API",
        description="Serve one bundle over OpenAI's HTTP API (/v1/chat/completions, /v1/completions, "
        "/v1/models, /health). One generation runs at a time; concurrent requests wait in a bounded "
        "queue, served in order. A request that extends the previous conversation reuses its cached "
        "prefix. Needs `pip install 'staticllm[serve]'`.",
    )
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory (with an llm section)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--max-queue",
        type=int,
        default=16,
        metavar="N",
        help="requests that may wait behind the running one; more are answered 503 (default 16)",
    )
    p.add_argument(
        "--model-name", default=None, help="model id clients send (default: the bundle's directory name)"
    )
    p.add_argument(
        "--lookahead",
        action="store_true",
        help="lookahead decoding for every request (single-method bundles)",
    )
    add_load_args(p)
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="on SIGTERM/Ctrl-C, seconds the running request may take to finish before it is cancelled",
    )
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from staticllm.serving.app import create_app
    except ImportError as exc:
        raise InputError(
            f"staticllm serve needs the serve extra ({exc.name} is missing): pip install 'staticllm[serve]'"
        ) from None
    from staticllm.generate import Generator

    if args.max_queue < 0:
        raise InputError(f"--max-queue must be >= 0, got {args.max_queue}")
    gen = Generator(args.bundle, backend=args.backend, mmap=not args.no_mmap)
    if args.lookahead:
        gen.lookahead_options()
    model_id = args.model_name or Path(args.bundle).resolve().name
    app = create_app(gen, model_id, args.max_queue, lookahead=args.lookahead)
    print(f"staticllm serve: {model_id} on http://{args.host}:{args.port}/v1", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        # A backstop: the engine itself cancels the running request after --shutdown-timeout.
        timeout_graceful_shutdown=args.shutdown_timeout + _SHUTDOWN_BACKSTOP_S,
    )
    server = _server_class(uvicorn)(config, app.state.engine, args.shutdown_timeout)
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again
    # against the handler it found: a no-op one makes that a clean exit (0).
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


_SHUTDOWN_BACKSTOP_S = 10.0


def _server_class(uvicorn: Any) -> type:
    class Server(uvicorn.Server):  # type: ignore[misc, name-defined]
        """uvicorn's server that also tells the engine when a signal asks it to stop."""

        def __init__(self, config: Any, engine: Any, grace_s: float) -> None:
            super().__init__(config)
            self.engine = engine
            self.grace_s = grace_s

        def handle_exit(self, sig: int, frame: Any) -> None:
            if not self.should_exit:
                # Waiting requests are cancelled now, the running one after the grace period.
                threading.Thread(target=self.engine.shutdown, args=(self.grace_s,), daemon=True).start()
            super().handle_exit(sig, frame)

    return Server
