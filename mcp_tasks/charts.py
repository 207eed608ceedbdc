"""Charts from the event log: throughput, wait and work percentiles, queue depth, per hour.

A `ChartFold` reads the log's last WINDOW_HOURS once, grouped by hour in SQL, then only what was
added since each time it is asked; each process keeps its own fold of the shared log, so the
charts show every process's and host's work.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import anyio

from .states import State
from .stores.base import ReadTx, Store

BUCKET = 3600.0  # seconds per point
WINDOW_HOURS = 7 * 24  # the longest span a chart shows
CHUNK = 200_000  # events grouped per read while catching up
SAMPLE = 20_000  # times kept per hour for its percentiles


@dataclass
class Charts:
    """Per-hour series, oldest first: `hours` holds each hour's start (epoch seconds)."""

    hours: list[float]
    finished: list[float]
    failed: list[float]
    wait_p50: list[float | None]
    wait_p95: list[float | None]
    work_p50: list[float | None]
    work_p95: list[float | None]
    depth: dict[str, list[float]]
    last_seq: int


def quantile(values: list[float], q: float) -> float | None:
    """The `q` quantile (0..1) of `values` by linear interpolation between ranks (None when empty)."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _first_seq_at(tx: ReadTx, since: float, last: int) -> int:
    """The seq before the first event recorded at or after `since` (events are numbered in time order)."""
    lo, hi = 0, last  # invariant: event lo is before `since` (0: none), event hi+1.. unknown
    while lo < hi:
        mid = (lo + hi + 1) // 2
        at = tx.event_time(mid)
        if at is not None and at >= since:
            hi = mid - 1
        else:
            lo = mid
    return lo


class ChartFold:
    """Per-hour aggregates of the last WINDOW_HOURS of the log, folded as the log grows."""

    def __init__(self) -> None:
        self.seq: int | None = None
        self.moves: dict[float, Counter[tuple[str | None, str | None]]] = {}
        self.waits: dict[float, list[float]] = {}
        self.works: dict[float, list[float]] = {}
        self.lock = anyio.Lock()

    async def read(self, store: Store, hours: int, clock: Callable[[ReadTx], float]) -> Charts:
        """The charts of the last `hours` hours (at most WINDOW_HOURS); `clock` tells the time."""
        async with self.lock:
            await store.settle()
            now, last, counts = await store.read(lambda tx: (clock(tx), tx.last_seq(), tx.count_by_state()))
            current = math.floor(now / BUCKET) * BUCKET
            oldest = current - (WINDOW_HOURS - 1) * BUCKET
            if self.seq is None or self.seq > last:
                start = oldest
                self.seq = await store.read(lambda tx: _first_seq_at(tx, start, last))
                self.moves, self.waits, self.works = {}, {}, {}
            while self.seq < last:
                after, upto = self.seq, min(last, self.seq + CHUNK)
                moves, times = await store.read(lambda tx: tx.chart_rows(after, upto, BUCKET))
                for m in moves:
                    if m.bucket >= oldest:
                        self.moves.setdefault(m.bucket, Counter())[(m.from_state, m.to_state)] += m.n
                for t in times:
                    if t.bucket >= oldest:
                        if t.wait_time is not None:
                            _keep(self.waits.setdefault(t.bucket, []), t.wait_time)
                        if t.work_time is not None:
                            _keep(self.works.setdefault(t.bucket, []), t.work_time)
                self.seq = upto
            for kept in (self.moves, self.waits, self.works):
                for b in [b for b in kept if b < oldest]:
                    del kept[b]
            return self._charts(current, min(max(hours, 1), WINDOW_HOURS), {s.value: n for s, n in counts.items()}, last)

    def _charts(self, current: float, hours: int, counts: dict[str, int], last: int) -> Charts:
        xs = [current - (hours - 1 - i) * BUCKET for i in range(hours)]
        depth = {s.value: [0.0] * hours for s in State}
        level = {s.value: float(counts.get(s.value, 0)) for s in State}
        # Walk back from now: the depth at the end of an hour is the next hour's end minus what
        # that next hour changed.
        for i in range(hours - 1, -1, -1):
            for s in level:
                depth[s][i] = max(0.0, level[s])
            for (src, dst), n in self.moves.get(xs[i], Counter()).items():
                if dst is None or src == dst:  # an event that left the state as it was
                    continue
                if dst in level:
                    level[dst] -= n
                if src in level:
                    level[src] += n
        waits = [self.waits.get(x, []) for x in xs]
        works = [self.works.get(x, []) for x in xs]

        def arrivals(x: float, state: str) -> float:
            return float(sum(n for (src, dst), n in self.moves.get(x, Counter()).items() if dst == state and src != dst))

        return Charts(
            hours=xs, finished=[arrivals(x, "DONE") for x in xs], failed=[arrivals(x, "FAILED") for x in xs],
            wait_p50=[quantile(w, 0.5) for w in waits], wait_p95=[quantile(w, 0.95) for w in waits],
            work_p50=[quantile(w, 0.5) for w in works], work_p95=[quantile(w, 0.95) for w in works],
            depth={s: v for s, v in depth.items() if any(v)}, last_seq=last,
        )


def _keep(values: list[float], value: float) -> None:
    """Keep `value`, or once SAMPLE are kept, overwrite a slot chosen by the count (a thinned sample)."""
    if len(values) < SAMPLE:
        values.append(value)
    else:
        values[hash(value) % SAMPLE] = value
