"""How a server process knows it is healthy: background loops that survive every error and say so.

Every background loop (the lease reaper, the change follower, any later one) runs through
`run_forever`: an error is logged as one line, recorded in `Health`, and retried after a backoff
that doubles up to a cap; the first success afterwards logs the recovery and clears the record.
Nothing a loop meets (a full disk, a damaged row, a lost connection) ends the process.
`/healthz` reports `Health.snapshot()`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio

from .display import iso
from .errors import TaskError

log = logging.getLogger(__name__)


def one_line(exc: BaseException) -> str:
    """An error as one short line for logs and /healthz (a refusal's message, or the exception's)."""
    text = exc.message if isinstance(exc, TaskError) else f"{type(exc).__name__}: {exc}"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first if len(first) <= 300 else first[:299] + "…"


@dataclass
class Problem:
    """Something that keeps failing (or a standing limitation) of one part of the server."""

    source: str
    reason: str
    since: float
    failures: int = 1

    def describe(self) -> str:
        """e.g. `reaper failing since 2026-11-29T16:47:22Z (3 times): database or disk is full`."""
        times = f" ({self.failures} times)" if self.failures > 1 else ""
        return f"{self.source} failing since {iso(self.since, ms=False)}{times}: {self.reason}"


@dataclass
class Health:
    """The problems of this process's background work, by source, and standing notes (a read-only
    database, an unreadable event stepped over). Safe to share within one event loop."""

    clock: Callable[[], float] = time.time
    problems: dict[str, Problem] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    max_notes: int = 20

    def note(self, key: str, text: str) -> bool:
        """Keep a standing note (shown until the process ends); False if it was known already."""
        if key in self.notes or len(self.notes) >= self.max_notes:
            return False
        self.notes[key] = text
        return True

    def failing(self, source: str, reason: str) -> Problem:
        """Record one more failure of `source` (the reason of the latest one is kept)."""
        found = self.problems.get(source)
        if found is None:
            found = self.problems[source] = Problem(source, reason, self.clock())
        else:
            found.failures += 1
            found.reason = reason
        return found

    def recovered(self, source: str) -> Problem | None:
        """`source` works again; returns what it had been failing with, if anything."""
        return self.problems.pop(source, None)

    def snapshot(self) -> dict[str, object]:
        """{"status": "ok"} or {"status": "degraded", "problems": [one line each, failures first]}."""
        lines = [p.describe() for p in self.problems.values()] + list(self.notes.values())
        return {"status": "degraded", "problems": lines} if lines else {"status": "ok"}


async def run_forever(
    name: str,
    step: Callable[[], Awaitable[object]],
    wait: Callable[[float], Awaitable[object]],
    interval: float,
    health: Health,
    *,
    max_backoff: float = 60.0,
) -> None:
    """Call `step`, then `wait(interval)`, forever (cancel to stop). When `step` raises, log one
    line, record it in `health`, and wait twice as long as last time (at most `max_backoff`)
    before trying again; the next success logs the recovery and clears the record."""
    delay = interval
    while True:
        try:
            await step()
        except Exception as exc:  # noqa: BLE001 - the point is that nothing ends the loop
            reason = one_line(exc)
            problem = health.failing(name, reason)
            delay = min(max_backoff, max(delay, interval) * 2)
            log.warning("%s failed (%d in a row, next try in %.1fs): %s", name, problem.failures, delay, reason)
        else:
            gone = health.recovered(name)
            if gone is not None:
                log.warning("%s works again after %d failures (last: %s)", name, gone.failures, gone.reason)
            delay = interval
        await wait(delay)


async def sleep(seconds: float) -> None:
    """The plain `wait` for run_forever."""
    await anyio.sleep(seconds)
