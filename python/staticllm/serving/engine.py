"""One model, one generation at a time: a worker thread takes jobs from a
FIFO queue, so concurrent requests are served in the order they came.

The queue is bounded: when `max_queue` requests already wait behind the
running one, `submit` refuses (the app answers 503). Each job streams its text
pieces to the event loop through an asyncio.Queue; cancelling a job (a client
gone, shutdown) stops it at the next piece, or skips it if it has not started.
Every generation asks for prefix reuse, so a request that extends the last
conversation prefills only what is new.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("staticllm.serve")


class QueueFull(Exception):
    pass


class Job:
    """One generation's events: ("piece", text) ... then ("done", result) or ("error", exc)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, prompt_ids: list[int], options: dict[str, Any]
    ) -> None:
        self.loop = loop
        self.prompt_ids = prompt_ids
        self.options = options
        self.cancelled = threading.Event()
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def cancel(self) -> None:
        self.cancelled.set()

    def put(self, kind: str, value: Any) -> None:
        """From the worker thread."""
        try:
            self.loop.call_soon_threadsafe(self._events.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    async def next(self) -> tuple[str, Any]:
        """The next event; safe to cancel (nothing is lost)."""
        return await self._events.get()

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        while True:
            kind, value = await self.next()
            yield kind, value
            if kind != "piece":
                return


class Engine:
    def __init__(self, generator: Any, max_queue: int) -> None:
        self.generator = generator
        self.max_queue = max_queue
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="staticllm-generate")
        self._lock = threading.Lock()
        self._active = 0  # running + waiting
        self._jobs: set[Job] = set()
        self._closed = False

    @property
    def active(self) -> int:
        return self._active

    def submit(self, prompt_ids: list[int], options: dict[str, Any]) -> Job:
        """Queues a generation; raises QueueFull when max_queue requests already wait."""
        job = Job(asyncio.get_running_loop(), prompt_ids, options)
        with self._lock:
            if self._closed or self._active > self.max_queue:
                raise QueueFull()
            self._active += 1
            self._jobs.add(job)
        self._executor.submit(self._run, job)
        return job

    def _run(self, job: Job) -> None:
        try:
            if job.cancelled.is_set() or self._closed:
                job.put("error", asyncio.CancelledError())
                return
            pieces = self.generator.stream(job.prompt_ids, **job.options)
            try:
                for piece in pieces:
                    if job.cancelled.is_set():
                        break
                    job.put("piece", piece)
            finally:
                pieces.close()
            job.put("done", self.generator.last_result)
        except Exception as exc:  # answered as an error object; the worker lives on
            log.exception("generation failed")
            job.put("error", exc)
        finally:
            with self._lock:
                self._active -= 1
                self._jobs.discard(job)

    def close(self) -> None:
        """Cancels the running and waiting jobs and waits for the worker to stop."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        self._executor.shutdown(wait=True)  # waiting jobs see their cancel flag and return
