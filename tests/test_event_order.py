"""The event log follows in commit order on every store: a follower never misses an event whose
transaction commits after a later-started one, and seq stays gapless.

The adversarial case: transaction A appends an event and stalls; transaction B appends and
commits; a follower reads; then A commits. On PostgreSQL B's event is visible first, but it must
not be numbered ahead of A's (a follower that moved past A's number would miss it for good); on
SQLite B simply waits for A. Either way the follower then reads A's event and B's, in that order,
with consecutive numbers.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from mcp_tasks import Registry


async def test_a_follower_never_misses_an_event_that_commits_late(db):
    async with Registry(db.store(), agent="a") as ra, Registry(db.store(), agent="b") as rb, \
            Registry(db.store(), agent="follower") as rf:
        ta, tb = (await ra.create_tasks([{"title": "A"}, {"title": "B"}])).ids
        start = await rf.last_seq()
        assert start == 2
        stalled, release = threading.Event(), threading.Event()

        def a_stalls_after_appending(tx: Any) -> None:
            """What the registry's update does (compare-and-set, then the event), then a stall."""
            task, now = tx.get_task(ta), tx.now()
            new = task.model_copy(update={"title": "A, renamed", "version": task.version + 1, "updated_at": now})
            assert tx.update_task(new, task.version, task.state)
            tx.append_event(ta, "updated", None, None, "a", now, {"set": {"title": "A, renamed"}})
            stalled.set()
            assert release.wait(30), "the test never released transaction A"

        a = asyncio.ensure_future(ra.store.write(a_stalls_after_appending))
        try:
            assert await asyncio.to_thread(stalled.wait, 30)
            b = asyncio.ensure_future(rb.update(tb, title="B, renamed"))
            await asyncio.wait({b}, timeout=2)  # PostgreSQL: B commits; SQLite: B waits for A
            seen = [e async for page in rf.event_pages(start) for e in page]
            assert seen == [], "nothing may be delivered ahead of A's event, which is not committed yet"
        finally:
            release.set()
        await a
        await b
        seen = [e async for page in rf.event_pages(start) for e in page]
        assert [(e.task_id, e.seq) for e in seen] == [(ta, start + 1), (tb, start + 2)]
        assert await rf.last_seq() == start + 2
        assert await rf.verify() == []


async def test_numbers_are_gapless_and_each_tasks_events_in_order_under_concurrent_writers(db):
    async with Registry(db.store(), agent="planner") as reg:
        ids = (await reg.create_tasks([{"title": f"t{i}"} for i in range(8)])).ids

        async def work(tid: str, name: str) -> None:
            async with Registry(db.store(), agent=name) as mine:
                for i in range(10):
                    await mine.update(tid, title=f"{name} {i}")

        await asyncio.gather(*(work(tid, f"writer-{n}") for n, tid in enumerate(ids)))
        events = [e async for page in reg.event_pages() for e in page]
        assert [e.seq for e in events] == list(range(1, len(events) + 1)) and len(events) == 8 + 80
        for tid in ids:  # per task, the log replays the changes in the order they were made
            titles = [e.data["set"]["title"] for e in events if e.task_id == tid and e.type == "updated"]
            assert titles == [titles[0].rsplit(" ", 1)[0] + f" {i}" for i in range(10)]
        assert await reg.verify() == []
