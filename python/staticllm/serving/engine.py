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

from staticllm.generate import stopping

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
        self._running: Job | None = None
        self._idle = threading.Event()  # set while no job runs
        self._idle.set()
        self.counts = {"completed": 0, "cancelled": 0, "failed": 0}  # finished jobs, for /health

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
        outcome = "cancelled"
        with self._lock:
            self._running = job
            self._idle.clear()
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
            result = self.generator.last_result
            if job.cancelled.is_set() and result.stop_reason == stopping.CANCELLED:
                job.put("error", asyncio.CancelledError())
            else:
                outcome = "completed"
                job.put("done", result)
        except Exception as exc:  # answered as an error object; the worker lives on
            log.exception("generation failed")
            outcome = "failed"
            job.put("error", exc)
        finally:
            self.counts[outcome] += 1
            with self._lock:
                self._active -= 1
                self._jobs.discard(job)
                self._running = None
                self._idle.set()

    def shutdown(self, grace_s: float) -> None:
        """Stops taking jobs and cancels the waiting ones; the running one
        gets grace_s seconds to finish, then is cancelled. Blocks: call it
        from a thread of its own (a signal handler must not wait for the lock)."""
        with self._lock:
            self._closed = True
            waiting = [job for job in self._jobs if job is not self._running]
        for job in waiting:
            job.cancel()
        if not self._idle.wait(grace_s):
            with self._lock:
                running = self._running
            if running is not None:
                running.cancel()

    def close(self) -> None:
        """Cancels the running and waiting jobs and waits for the worker to stop."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        self._executor.shutdown(wait=True)  # waiting jobs see their cancel flag and return
