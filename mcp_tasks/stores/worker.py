"""A thread that owns one blocking database connection and runs whole transactions on it.

Each `run(fn)` is one thread hop, however many statements `fn` executes: the registry's hot
paths (claim, start, checkpoint, complete) cost one hop each. A generic per-statement async
driver would cost one hop per statement.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")
_STOP = object()


def _resolve(fut: asyncio.Future, ok: bool, value: Any) -> None:
    if fut.cancelled():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class ThreadWorker:
    """Runs callables one at a time on a dedicated thread, with `resource` as their argument."""

    def __init__(self, name: str, connect: Callable[[], Any], close: Callable[[Any], None]) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._connect = connect
        self._close = close
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._resource: Any = None

    def start(self) -> None:
        """Start the thread and open the resource on it; re-raises an opening error."""
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        try:
            self._resource = self._connect()
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            loop, fut, fn = item
            try:
                value, ok = fn(self._resource), True
            except BaseException as exc:
                value, ok = exc, False
            try:
                loop.call_soon_threadsafe(_resolve, fut, ok, value)
            except RuntimeError:  # the loop closed while we worked
                pass
        try:
            self._close(self._resource)
        finally:
            self._resource = None

    async def run(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(resource)` on the worker thread and await its result.

        Cancelling the awaiting task does not stop `fn`: a transaction that started runs to its
        end (committed or rolled back); only its answer is dropped.
        """
        if not self._thread.is_alive():
            raise RuntimeError("database worker is not running (store closed)")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((loop, fut, fn))
        return await fut

    def stop(self) -> None:
        """Finish queued work, close the resource and end the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
