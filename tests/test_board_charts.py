"""The board's charts against a recomputation from the raw event log, on every store: hourly
throughput and queue depth by state, and the same answer folded at once or bit by bit."""

from __future__ import annotations

import random
from collections import Counter

from mcp_tasks import Registry, State
from mcp_tasks.charts import BUCKET

from .helpers import FakeClock


async def random_hours(reg: Registry, clock: FakeClock, rng: random.Random, hours: int) -> None:
    """Create, claim, finish and fail tasks across `hours` hours."""
    for _ in range(hours):
        await reg.create_tasks([{"title": f"t{i}", "max_retries": rng.choice([0, 1])} for i in range(rng.randint(1, 4))])
        for _ in range(rng.randint(0, 4)):
            claim = await reg.claim()
            if claim is None:
                break
            tid = claim.task.id
            await reg.start(tid, claim.lease)
            clock.advance(rng.uniform(1, 250))
            if rng.random() < 0.7:
                await reg.complete(tid, claim.lease)
            else:
                await reg.fail(tid, claim.lease, "broke")
        clock.advance(BUCKET * rng.uniform(0.5, 1.5))


def expected(events: list, hours: list[float]) -> tuple[list[float], dict[str, list[float]]]:
    """Finished per hour, and each state's count at the end of each hour, straight from the log."""
    finished = [float(sum(1 for e in events if h <= e.at < h + BUCKET and e.to_state is State.DONE
                          and e.from_state is not State.DONE)) for h in hours]
    depth: dict[str, list[float]] = {}
    for i, h in enumerate(hours):
        state: dict[str, State] = {}
        for e in events:
            if e.at < h + BUCKET and e.to_state is not None:
                state[e.task_id] = e.to_state
        counts = Counter(s.value for s in state.values())
        for s in State:
            depth.setdefault(s.value, [0.0] * len(hours))[i] = float(counts.get(s.value, 0))
    return finished, {s: v for s, v in depth.items() if any(v)}


async def test_charts_agree_with_the_log_folded_at_once_or_bit_by_bit(registry, clock) -> None:
    rng = random.Random(11)
    await random_hours(registry, clock, rng, 5)
    early = await registry.charts(12)  # folded now, and again below with what follows
    assert early.hours[-1] <= clock() < early.hours[-1] + BUCKET
    await random_hours(registry, clock, rng, 6)
    charts = await registry.charts(12)
    events = [e async for page in registry.event_pages() for e in page]
    finished, depth = expected(events, charts.hours)
    assert charts.finished == finished
    assert charts.depth == depth
    assert sum(charts.finished) > 0 and "FAILED" in charts.depth

    registry.charts_fold = None  # a fresh fold of the whole window reads the same
    again = await registry.charts(12)
    assert (again.finished, again.depth, again.work_p50) == (charts.finished, charts.depth, charts.work_p50)
    works = [w for w in charts.work_p95 if w is not None]
    assert works and all(w >= 1 for w in works)
