"""The one thread that owns the pipeline: it loads the model once and runs model calls in arrival order.

The pipeline is thread-compatible but not concurrent, so every model call goes through this worker.
Its queue is bounded (a full queue is refused at once, not buffered without limit) and each call has a
deadline covering its wait and its run; a call that misses it is dropped if it has not started yet.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class QueueFull(Exception):
    """Every slot of the queue is taken."""


class ModelWorker:
    """`await worker.run(fn, timeout)` calls `fn(pipeline)` on the worker thread."""

    def __init__(self, factory: Callable[[], Any], queue_size: int):
        self._factory = factory
        self._jobs: queue.Queue = queue.Queue(maxsize=queue_size)
        self._ready: Future = Future()
        self._thread = threading.Thread(target=self._loop, name="star-model", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> Any:
        """Block until the pipeline is loaded; re-raises the loading error."""
        return self._ready.result(timeout)

    @property
    def pipeline(self) -> Any:
        return self._ready.result() if self._ready.done() and not self._ready.exception() else None

    @property
    def waiting(self) -> int:
        return self._jobs.qsize()

    def submit(self, fn: Callable[[Any], Any]) -> Future:
        future: Future = Future()
        try:
            self._jobs.put_nowait((fn, future))
        except queue.Full:
            raise QueueFull from None
        return future

    async def run(self, fn: Callable[[Any], Any], timeout: float) -> Any:
        """Raises QueueFull at once, TimeoutError when the deadline passes (the job is cancelled if queued)."""
        future = self.submit(fn)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        finally:
            future.cancel()  # no-op once finished or running

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel queued jobs, let the running one finish (up to `timeout`), end the thread."""
        while True:
            try:
                _, future = self._jobs.get_nowait()
                future.cancel()
            except queue.Empty:
                break
        try:
            self._jobs.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _loop(self) -> None:
        try:
            self._ready.set_result(self._factory())
        except Exception as exc:  # noqa: BLE001 - handed to wait_ready, which re-raises it in the caller
            self._ready.set_exception(exc)
            return
        pipeline = self._ready.result()
        while (job := self._jobs.get()) is not None:
            fn, future = job
            if not future.set_running_or_notify_cancel():
                continue  # its request already gave up
            try:
                future.set_result(fn(pipeline))
            except Exception as exc:  # noqa: BLE001 - re-raised in the request that submitted the job
                future.set_exception(exc)
