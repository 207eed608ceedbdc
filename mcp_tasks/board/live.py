"""Live updates: one server-sent-events stream per open page, fed by the server's change follower.

The follower (server/notify.py) reads every process's new events from the log; each stream sends
`change` with the newest seq as its id, at most once per DEBOUNCE, so a burst of changes costs a
page one refresh. A reconnecting browser sends Last-Event-ID and hears at once if it missed any.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

DEBOUNCE = 0.25  # seconds between two change events of one stream
HEARTBEAT = 15.0  # seconds of quiet before a comment line keeps proxies from closing the stream
MAX_STREAMS = 200  # open streams per server process; more get 503


class Pulse:
    """The newest seq the follower has seen, and a way to wait for the next one."""

    def __init__(self) -> None:
        self.seq = 0
        self.streams = 0
        self._changed = anyio.Event()

    def fire(self, seq: int) -> None:
        """The follower read up to `seq`: wake every stream."""
        self.seq = max(self.seq, seq)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait(self, timeout: float) -> None:
        """Until the next fire, or `timeout` seconds."""
        with anyio.move_on_after(timeout):
            await self._changed.wait()


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("since")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def stream_response(request: Request, pulse: Pulse, current: int) -> Response:
    """A text/event-stream of `change` events for one page; `current` is the log's newest seq now."""
    if pulse.streams >= MAX_STREAMS:
        return Response(f"too many live pages are open (at most {MAX_STREAMS}); reload later", status_code=503,
                        headers={"retry-after": "10"}, media_type="text/plain")
    pulse.seq = max(pulse.seq, current)
    seen = _last_event_id(request)

    async def events() -> AsyncIterator[str]:
        nonlocal seen
        pulse.streams += 1
        try:
            yield "retry: 2000\n\n"
            if seen is None:
                seen = pulse.seq
                yield f"id: {seen}\nevent: hello\ndata: {seen}\n\n"
            while True:
                if pulse.seq > seen:
                    seen = pulse.seq
                    yield f"id: {seen}\nevent: change\ndata: {seen}\n\n"
                    await anyio.sleep(DEBOUNCE)
                    continue
                before = pulse.seq
                await pulse.wait(HEARTBEAT)
                if pulse.seq == before:
                    yield ": still here\n\n"
        finally:
            pulse.streams -= 1

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})
