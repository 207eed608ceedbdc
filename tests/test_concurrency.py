"""Races the single SQLite writer hides and PostgreSQL at READ COMMITTED does not: each runs on
both stores, with several registries (each with its own connections) acting at the same moment."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from mcp_tasks import Registry, State
from mcp_tasks.errors import DependencyError, InvalidTransition

ROUNDS = 6


@contextlib.asynccontextmanager
async def registries(db, n: int) -> AsyncIterator[list[Registry]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(Registry(db.store(), agent=f"agent-{i}")) for i in range(n)]


async def finish(reg: Registry, tid: str) -> None:
    claim = await reg.claim(tid)
    assert claim is not None
    await reg.start(tid, claim.lease)
    await reg.complete(tid, claim.lease)


async def test_two_dependencies_finishing_at_once_never_trouble_their_dependent(db):
    """Both decrement the dependent's unmet_deps: neither gets a conflict on a task it never touched."""
    async with registries(db, 2) as (one, two):
        for _ in range(ROUNDS):
            k = (await one.create_tasks([{"key": "a", "title": "a"}, {"key": "b", "title": "b"},
                                         {"key": "c", "title": "c", "depends_on": ["a", "b"]}])).by_key
            a, b = await one.claim(k["a"]), await two.claim(k["b"])
            assert a is not None and b is not None
            await asyncio.gather(one.start(k["a"], a.lease), two.start(k["b"], b.lease))
            await asyncio.gather(one.complete(k["a"], a.lease), two.complete(k["b"], b.lease))
            c = await one.get(k["c"])
            assert c.unmet_deps == 0 and c.state == State.PENDING
        assert await one.verify() == []


async def test_concurrent_claims_never_share_a_task_and_never_fail(db):
    async with registries(db, 6) as regs:
        await regs[0].create_tasks([{"title": f"t{i}"} for i in range(30)])
        claims = await asyncio.gather(*(r.claim() for r in regs for _ in range(6)))
        got = [c.task.id for c in claims if c is not None]
        assert len(got) == 30 and len(set(got)) == 30  # nobody got an error; nothing was claimed twice
        assert await regs[0].verify() == []


async def test_claiming_one_named_task_at_once_one_wins_the_other_hears_why(db):
    async with registries(db, 2) as (one, two):
        for _ in range(ROUNDS):
            (tid,) = (await one.create_tasks([{"title": "wanted"}])).ids
            results = await asyncio.gather(one.claim(tid), two.claim(tid), return_exceptions=True)
            won = [r for r in results if not isinstance(r, BaseException)]
            lost = [r for r in results if isinstance(r, BaseException)]
            assert len(won) == 1 and len(lost) == 1
            assert isinstance(lost[0], InvalidTransition) and lost[0].state == State.ASSIGNED  # not a version conflict


async def test_concurrent_edits_can_never_close_a_dependency_cycle(db):
    """A -> B and C -> D at once, with B -> C and D -> A already there: either edit alone is fine,
    both would close A -> B -> C -> D -> A. The two edits touch no common task."""
    async with registries(db, 2) as (one, two):
        for _ in range(ROUNDS * 2):
            a, b, c, d = (await one.create_tasks([{"title": x} for x in "abcd"])).ids
            await one.update(b, add_depends_on=[c])
            await one.update(d, add_depends_on=[a])
            results = await asyncio.gather(one.update(a, add_depends_on=[b]), two.update(c, add_depends_on=[d]),
                                           return_exceptions=True)
            assert sum(isinstance(r, DependencyError) for r in results) == 1, results
            assert sum(not isinstance(r, BaseException) for r in results) == 1, results
        assert await one.verify() == []


async def test_a_dependency_finishing_while_a_dependent_is_created_is_counted_once(db):
    """The new task's unmet_deps must account for the dependency whichever commits first."""
    async with registries(db, 2) as (one, two):
        for _ in range(ROUNDS):
            (dep,) = (await one.create_tasks([{"title": "dependency"}])).ids
            claim = await one.claim(dep)
            assert claim is not None
            await one.start(dep, claim.lease)
            created, _ = await asyncio.gather(
                two.create_tasks([{"title": "dependent", "depends_on": [dep]}]), one.complete(dep, claim.lease))
            dependent = await two.get(created.ids[0])
            assert dependent.unmet_deps == 0, "the dependency is DONE: the dependent must be ready"
        assert await one.verify() == []
