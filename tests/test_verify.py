"""verify finds every kind of tampering, by task id (or by seq), and never crashes, on every store.

Databases are built through the registry, then changed behind its back the way a person at the
database shell or a broken tool would: foreign keys off, the append-only triggers dropped
(SQLite) or disabled (PostgreSQL, `session_replication_role = replica`). Each case is checked
through the registry and through the CLI (`mcp-tasks verify`: exit 1, the task id on stdout, no
traceback). Where PostgreSQL's column types rule a damage out (text in an integer column, JSON
that does not parse), its case damages the same column in a way the types allow.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from mcp_tasks import Registry, State
from mcp_tasks.errors import DamagedHistory, TaskError, TaskNotFound
from mcp_tasks.models import Difference
from mcp_tasks.stores import make_store
from mcp_tasks.verification import describe, summary

from .databases import TestDatabase
from .helpers import FakeClock, drive_to

ROOT = Path(__file__).resolve().parent.parent
Named = dict[str, Any]
Statement = str | tuple[str, tuple[Any, ...]]

NO_DELETE = "DROP TRIGGER events_no_delete"
NO_UPDATE = "DROP TRIGGER events_no_update"


def tamper(db: TestDatabase, *statements: Statement) -> None:
    """Run `statements` (SQLite's placeholders) on the database as a careless tool would: foreign
    keys and CHECK constraints (SQLite) or triggers (PostgreSQL) off."""
    if db.kind == "postgres":
        statements = tuple(
            (st[0].replace("?", "%s"), st[1]) if isinstance(st, tuple) else st
            for st in statements if st not in (NO_DELETE, NO_UPDATE)  # the triggers are off already
        )
    db.sql(*statements)


def where(d: Difference) -> str:
    """What a problem is reported under: the task id, or `seq N` / `seq N..M`."""
    return describe(d).split("  ", 1)[0]


async def seq_of(reg: Registry, task_id: str, event_type: str) -> int:
    return next(e.seq for e in await reg.events(task_id) if e.type == event_type)


async def pending(reg: Registry, title: str, depends_on: list[str] | None = None) -> str:
    return (await reg.create_tasks([{"title": title, "depends_on": depends_on or []}])).ids[0]


@dataclass
class Case:
    """One way to tamper: build a database, change it, and what verify must report.

    `expect` gives (where, field) pairs; field None means any field. The places reported must be
    exactly those expected (no other task is accused); `says` are texts some line must contain."""

    name: str
    build: Callable[[Registry], Awaitable[Named]]
    tamper: Callable[[Named], list[Statement]]
    expect: Callable[[Named], list[tuple[str, str | None]]]
    says: Callable[[Named], list[str]] = field(default=lambda n: [])
    # PostgreSQL's own way to do this damage, and what it says, where its types rule out SQLite's
    pg_tamper: Callable[[Named], list[Statement]] | None = None
    pg_says: Callable[[Named], list[str]] | None = None

    def statements(self, kind: str, named: Named) -> list[Statement]:
        return (self.pg_tamper if kind == "postgres" and self.pg_tamper else self.tamper)(named)

    def texts(self, kind: str, named: Named) -> list[str]:
        return (self.pg_says if kind == "postgres" and self.pg_says else self.says)(named)


async def _done(reg: Registry) -> Named:
    done, _ = await drive_to(reg, State.DONE, title="finished")
    bystander, _ = await drive_to(reg, State.ACTIVE, title="bystander")
    return {"done": done, "bystander": bystander}


async def _pending_with_dependency(reg: Registry) -> Named:
    dep = await pending(reg, "dependency")
    waiting = await pending(reg, "waiting", [dep])
    return {"dep": dep, "waiting": waiting}


async def _active_with_dependent(reg: Registry) -> Named:
    active, _ = await drive_to(reg, State.ACTIVE, title="running")
    dependent = await pending(reg, "after the running one", [active])
    return {"active": active, "dependent": dependent}


async def _assigned_then_more(reg: Registry) -> Named:
    await pending(reg, "earlier")
    task, _ = await drive_to(reg, State.ASSIGNED, title="claimed")
    later = await pending(reg, "later")
    return {"task": task, "later": later, "created": await seq_of(reg, task, "created"),
            "claimed": await seq_of(reg, task, "claimed")}


async def _two_independent(reg: Registry) -> Named:
    return {"a": await pending(reg, "a"), "b": await pending(reg, "b")}


async def _active_first(reg: Registry) -> Named:
    first, _ = await drive_to(reg, State.ACTIVE, title="first")
    assert await seq_of(reg, first, "created") == 1
    return {"first": first, "second": await pending(reg, "second")}


async def _done_last(reg: Registry) -> Named:
    await pending(reg, "earlier")
    task, _ = await drive_to(reg, State.DONE, title="finished last")
    return {"task": task, "last": await reg.last_seq()}


async def _active_plus(reg: Registry) -> Named:
    task, _ = await drive_to(reg, State.ACTIVE, title="working")
    bystander = await pending(reg, "bystander")
    return {"task": task, "bystander": bystander, "started": await seq_of(reg, task, "started"),
            "created": await seq_of(reg, task, "created"), "claimed": await seq_of(reg, task, "claimed")}


async def _pending_pair(reg: Registry) -> Named:
    task = await pending(reg, "to be damaged")
    return {"task": task, "bystander": await pending(reg, "bystander")}


async def _three(reg: Registry) -> Named:
    ids = [await pending(reg, f"t{i}") for i in range(3)]
    return {"ids": ids, "last": await reg.last_seq()}


CASES = [
    Case("deleted DONE row", _done,
         lambda n: [("DELETE FROM tasks WHERE id = ?", (n["done"],))],
         lambda n: [(n["done"], "row")],
         lambda n: [f"{n['done']}  row: no task row, but 4 events (seq 1..4): the row was deleted"]),
    Case("deleted PENDING row", _pending_with_dependency,
         lambda n: [("DELETE FROM tasks WHERE id = ?", (n["waiting"],))],
         lambda n: [(n["waiting"], "row"), (n["waiting"], "depends_on")],
         lambda n: [f"edge to {n['dep']}, but this task has no row"]),
    Case("deleted ACTIVE row with a dependent", _active_with_dependent,
         lambda n: [("DELETE FROM tasks WHERE id = ?", (n["active"],))],
         lambda n: [(n["active"], "row"), (n["dependent"], "depends_on"), (n["dependent"], "unmet_deps(counted)")],
         lambda n: [f"edge to {n['active']}, but its dependency has no row"]),
    Case("deleted created event", _assigned_then_more,
         lambda n: [NO_DELETE, ("DELETE FROM events WHERE seq = ?", (n["created"],))],
         lambda n: [(n["task"], "created"), (f"seq {n['created']}", "missing")],
         lambda n: [f"the first is seq {n['claimed']} (claimed)"]),
    Case("inserted dependency edges", _two_independent,
         lambda n: ["INSERT INTO deps VALUES ('%s', '%s')" % (n["b"], n["a"]),
                    "INSERT INTO deps VALUES ('%s', 't-ghostghost')" % n["a"],
                    "INSERT INTO deps VALUES ('t-gone000001', 't-gone000002')"],
         lambda n: [(n["b"], "depends_on"), (n["b"], "unmet_deps(counted)"), (n["a"], "depends_on"),
                    ("t-gone000001", "depends_on")],
         lambda n: ["edge to t-ghostghost, but its dependency has no row",
                    "t-gone000001  depends_on: edge to t-gone000002, but neither task has a row"]),
    Case("deleted event in the middle", _assigned_then_more,
         lambda n: [NO_DELETE, ("DELETE FROM events WHERE seq = ?", (n["claimed"],))],
         lambda n: [(n["task"], None), (f"seq {n['claimed']}", "missing")]),
    Case("deleted first event", _active_first,
         lambda n: [NO_DELETE, "DELETE FROM events WHERE seq = 1"],
         lambda n: [("seq 1", "missing"), (n["first"], "created")]),
    Case("deleted last event", _done_last,
         lambda n: [NO_DELETE, ("DELETE FROM events WHERE seq = ?", (n["last"],))],
         lambda n: [(f"seq {n['last']}", "missing"), (n["task"], "state")]),
    Case("emptied event log", _three,
         lambda n: [NO_DELETE, "DELETE FROM events"],
         lambda n: [(f"seq 1..{n['last']}", "missing")] + [(t, "created") for t in n["ids"]],
         lambda n: ["the row has no events at all"]),
    Case("event data not JSON", _active_plus,
         lambda n: [NO_UPDATE, ("UPDATE events SET data = '{\"set\": ' WHERE seq = ?", (n["started"],))],
         lambda n: [(n["task"], "event")],
         lambda n: [f"seq {n['started']} cannot be read: column data is not valid JSON"],
         lambda n: [("UPDATE events SET data = '[1, 2]' WHERE seq = ?", (n["started"],))],
         lambda n: [f"seq {n['started']} cannot be read: column data is not a JSON object"]),
    Case("copied created event", _active_plus,
         lambda n: [("INSERT INTO events (task_id, type, from_state, to_state, actor, at, data) "
                     "SELECT task_id, type, from_state, to_state, actor, at, data FROM events WHERE seq = ?",
                     (n["created"],))],
         lambda n: [(n["task"], "replay")],
         lambda n: ["is a second 'created' event"]),
    # As many rows as numbers: only knowing that seq can no longer repeat reveals the hole.
    Case("hole and repeat in a rebuilt events table", _active_plus,
         lambda n: ["CREATE TABLE events_copy AS SELECT * FROM events", "DROP TABLE events",
                    "ALTER TABLE events_copy RENAME TO events",
                    ("INSERT INTO events SELECT * FROM events WHERE seq = ?", (n["started"],)),
                    ("DELETE FROM events WHERE seq = ?", (n["claimed"],))],
         lambda n: [(f"seq {n['claimed']}", "missing"), (f"seq {n['started']}", "repeated"), (n["task"], None)],
         lambda n: ["2 events share this number"]),
    Case("error_log not JSON", _pending_pair,
         lambda n: [("UPDATE tasks SET error_log = 'not json' WHERE id = ?", (n["task"],))],
         lambda n: [(n["task"], "row")],
         lambda n: [f"{n['task']}  row: cannot be read: column error_log is not valid JSON"],
         lambda n: [("UPDATE tasks SET error_log = '{\"not\": \"a list\"}' WHERE id = ?", (n["task"],))],
         lambda n: [f"{n['task']}  row: cannot be read: column error_log is not a JSON array of objects"]),
    Case("priority holds text", _pending_pair,
         lambda n: [("UPDATE tasks SET priority = 'high' WHERE id = ?", (n["task"],))],
         lambda n: [(n["task"], "row")],
         lambda n: [f"{n['task']}  row: cannot be read: column priority holds str, not a whole number"],
         lambda n: [("UPDATE tasks SET tags = '\"high\"' WHERE id = ?", (n["task"],))],
         lambda n: [f"{n['task']}  row: cannot be read: column tags is not a JSON array of strings"]),
]


def check(case: Case, kind: str, named: Named, problems: list[Difference]) -> None:
    lines = [describe(d) for d in problems]
    expected = case.expect(named)
    assert {where(d) for d in problems} == {w for w, _ in expected}, lines
    for w, f in expected:
        assert any(where(d) == w and (f is None or d.field == f) for d in problems), (w, f, lines)
    for text in case.texts(kind, named):
        assert any(text in line for line in lines), (text, lines)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_verify_reports_each_kind_of_tampering(registry, db, case):
    named = await case.build(registry)
    assert await registry.verify() == []  # the problems below come from the tampering alone
    tamper(db, *case.statements(db.kind, named))
    check(case, db.kind, named, await registry.verify())


TOGETHER = ["deleted DONE row", "deleted ACTIVE row with a dependent", "inserted dependency edges",
            "deleted event in the middle", "event data not JSON", "copied created event", "error_log not JSON",
            "priority holds text"]  # damages that can be done to one database side by side


async def test_processes_find_what_one_process_finds(registry, db):
    """`jobs`: the task rows replayed in several processes, a slice each (rows of every kind of
    damage falling in different slices, pages of one row), give the same problems in the same
    order and the same count of tasks checked; so does `mcp-tasks verify --jobs N --json`."""
    cases = [c for c in CASES if c.name in TOGETHER]
    built = [(case, await case.build(registry)) for case in cases]
    for case, named in built:
        tamper(db, *case.statements(db.kind, named))
    alone = await registry.verify()
    assert {where(d) for case, named in built for d in alone} >= {w for case, named in built for w, _ in case.expect(named)}
    for jobs, batch in ((2, 250), (3, 1)):
        together = await registry.verify(jobs=jobs, batch=batch)
        assert [describe(d) for d in together] == [describe(d) for d in alone], jobs
        assert together.tasks == alone.tasks and together.since is None and (alone.jobs, together.jobs) == (1, jobs)
    out = cli("verify", "--db", db.location, "--jobs", "2", "--json")
    assert out.returncode == 1, out.stderr
    answer = json.loads(out.stdout)
    assert answer["tasks"] == alone.tasks and len(answer["problems"]) == len(alone) and answer["jobs"] == 2


def test_a_program_without_a_main_guard_still_gets_the_answer_in_one_process(tmp_path):
    """Processes are spawned: a script calling verify(jobs=2) at import level cannot start them,
    and verify then checks the rows itself (same answer, jobs 1)."""
    db = tmp_path / "tasks.db"

    async def build() -> None:
        async with Registry(make_store(str(db)), agent="builder") as reg:
            await reg.create_tasks([{"title": f"t{i}"} for i in range(5)])

    asyncio.run(build())
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import asyncio, json\n"
        "from mcp_tasks import Registry\n"
        "from mcp_tasks.stores import make_store\n"
        "async def main():\n"
        f"    async with Registry(make_store({str(db)!r}), agent='x') as reg:\n"
        "        found = await reg.verify(jobs=2)\n"
        "        print(json.dumps([len(found), found.tasks, found.jobs]))\n"
        "asyncio.run(main())\n", encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.splitlines()[-1]) == [0, 5, 1]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "mcp_tasks", *args], capture_output=True, text=True, env=env)


def built(db: TestDatabase, make: Callable[[Registry], Awaitable[Named]]) -> Named:
    async def build() -> Named:
        async with Registry(db.store(), agent="builder", clock=FakeClock()) as reg:
            return await make(reg)

    return asyncio.run(build())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_verify_reports_each_kind_of_tampering(db, case):
    named = built(db, case.build)
    tamper(db, *case.statements(db.kind, named))
    out = cli("verify", "--db", db.location)
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    assert out.returncode == 1, (out.stdout, out.stderr)
    lines = out.stdout.splitlines()
    for w, f in case.expect(named):
        assert any(line.startswith(f"{w}  {f + ':' if f else ''}") for line in lines), (w, f, out.stdout)
    for text in case.texts(db.kind, named):
        assert text in out.stdout
    assert "problem" in lines[-1] and "found" in lines[-1], lines[-1]


async def _everything(reg: Registry, clock: FakeClock) -> list[str]:
    """A little of every kind of work: dependencies, review, retries, dead letters, cancels."""
    k = (await reg.create_tasks([
        {"key": "a", "title": "a"}, {"key": "b", "title": "b", "depends_on": ["a"], "requires_review": True},
        {"key": "c", "title": "c", "max_retries": 0}, {"key": "d", "title": "d", "depends_on": ["c"]},
    ])).by_key
    c = await reg.claim(k["a"])
    await reg.start(k["a"], c.lease)
    await reg.checkpoint(k["a"], c.lease, data={"step": 1}, progress=50)
    await reg.complete(k["a"], c.lease, result="ok")
    c = await reg.claim(k["b"])
    await reg.start(k["b"], c.lease)
    await reg.complete(k["b"], c.lease, result="draft")
    await reg.review(k["b"], True, actor="reviewer")
    c = await reg.claim(k["c"])
    await reg.start(k["c"], c.lease)
    await reg.fail(k["c"], c.lease, "broken", retryable=False)
    await reg.cancel(k["d"], "its dependency died")
    backlog = (await reg.create_tasks([{"title": "later"}], ready=False)).ids[0]
    await reg.update(backlog, priority=9, add_depends_on=[k["a"]])
    clock.advance(10)
    return [*k.values(), backlog]


async def test_a_clean_database_verifies(registry, clock):
    await _everything(registry, clock)
    assert await registry.verify() == []


def test_cli_verify_of_a_clean_database_exits_0(db):
    async def build() -> None:
        clock = FakeClock()
        async with Registry(db.store(), agent="builder", clock=clock) as reg:
            await _everything(reg, clock)

    asyncio.run(build())
    out = cli("verify", "--db", db.location)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("ok: 5 tasks") and "Traceback" not in out.stderr


async def test_bad_rows_do_not_stop_verify_at_any_page_boundary(registry, db):
    first = await pending(registry, "bad error_log")
    second = await pending(registry, "bad tags")
    third = await pending(registry, "forged title")
    bad_log, bad_tags = ("'['", "'x'") if db.kind == "sqlite" else ("'{}'", "'[1]'")  # what each store's types allow
    tamper(db,
           (f"UPDATE tasks SET error_log = {bad_log} WHERE id = ?", (first,)),
           (f"UPDATE tasks SET tags = {bad_tags} WHERE id = ?", (second,)),
           ("UPDATE tasks SET title = 'forged' WHERE id = ?", (third,)))
    for batch in (1, 2, 500):
        found = {(d.task_id, d.field) for d in await registry.verify(batch=batch)}
        assert found == {(first, "row"), (second, "row"), (third, "title")}, batch


async def test_replay_of_a_damaged_history_is_a_clear_task_error(registry, db):
    named = await _active_plus(registry)
    tamper(db, NO_UPDATE, ("UPDATE events SET to_state = 'LOST' WHERE seq = ?", (named["started"],)))
    with pytest.raises(DamagedHistory, match=f"event {named['started']} cannot be read") as info:
        await registry.replay(named["task"])
    assert isinstance(info.value, TaskError) and info.value.task_id == named["task"]
    tamper(db, NO_DELETE, ("DELETE FROM events WHERE seq = ?", (named["created"],)))
    with pytest.raises(DamagedHistory, match="is not 'created': earlier events are missing"):
        await registry.replay(named["task"])
    tamper(db, ("DELETE FROM events WHERE task_id = ?", (named["bystander"],)))
    with pytest.raises(TaskNotFound):
        await registry.replay(named["bystander"])


def test_cli_replay_reports_damaged_or_incomplete_histories(db):
    named = built(db, _assigned_then_more)
    tamper(db, ("DELETE FROM tasks WHERE id = ?", (named["later"],)))
    out = cli("replay", named["later"], "--db", db.location)
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr, out.stderr
    assert '"title": "later"' in out.stdout and f"{named['later']}  row: no task row, but 1 event" in out.stderr

    tamper(db, NO_DELETE, ("DELETE FROM events WHERE seq = ?", (named["created"],)))
    out = cli("replay", named["task"], "--db", db.location)
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr, out.stderr
    assert f"{named['task']}  created: no 'created' event" in out.stderr

    bad = "'x'" if db.kind == "sqlite" else "'[]'"
    tamper(db, NO_UPDATE, (f"UPDATE events SET data = {bad} WHERE seq = ?", (named["claimed"],)))
    out = cli("replay", named["task"], "--db", db.location)
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr, out.stderr
    assert f"{named['task']}  event: seq {named['claimed']} cannot be read" in out.stderr


def test_sequence_runs_from_breaks():
    from mcp_tasks.stores.records import SeqRun
    from mcp_tasks.stores.rows import seq_runs

    # seqs present: -1, 2, 3, 3, 3, 7; the store handed out up to 9
    breaks = [(0, -1), (-1, 2), (3, 3), (3, 3), (3, 7)]
    assert seq_runs(breaks, 7, 9, 10) == [
        SeqRun(-1, -1, "unexpected", 1), SeqRun(1, 1, "missing", 1), SeqRun(3, 3, "repeated", 3),
        SeqRun(4, 6, "missing", 3), SeqRun(8, 9, "missing", 2),
    ]
    assert seq_runs([], 5, 5, 10) == [] and seq_runs([], 0, 3, 10) == [SeqRun(1, 3, "missing", 3)]
    assert len(seq_runs(breaks, 7, 9, 2)) == 2


async def test_a_shredded_log_lists_a_bounded_number_of_holes(registry, db):
    from mcp_tasks.verification import LIMIT

    for _ in range(5):
        await registry.create_tasks([{"title": f"t{i}"} for i in range(500)])
    last = await registry.last_seq()
    assert last > 2 * LIMIT + 2
    tamper(db, NO_DELETE, "DELETE FROM events WHERE seq % 2 = 0")
    problems = await registry.verify()
    holes = [d for d in problems if d.field == "missing"]
    assert len(holes) == LIMIT and holes[0].seq == 2 and holes[-1].seq == 2 * LIMIT
    assert [d.field for d in problems if d.task_id is None][-1] == "unlisted"
    assert sum(1 for d in problems if d.field == "created") == last // 2


async def _changed_after_a_mark(reg: Registry) -> Named:
    """Tasks finished before the mark (one later damaged), the mark, then tasks changed after it."""
    old, _ = await drive_to(reg, State.DONE, title="finished before the mark")
    untouched = await pending(reg, "untouched since the mark")
    resumed, lease = await drive_to(reg, State.ASSIGNED, title="claimed before, started after the mark")
    mark = await reg.last_seq()
    await reg.start(resumed, lease or "")
    new = await pending(reg, "created after the mark")
    gone = await pending(reg, "created after the mark, row deleted")
    return {"old": old, "untouched": untouched, "resumed": resumed, "new": new, "gone": gone, "mark": mark,
            "started": await seq_of(reg, resumed, "started")}


def _damage_before_and_after(db: TestDatabase, n: Named) -> None:
    tamper(db, ("UPDATE tasks SET title = 'forged' WHERE id = ?", (n["old"],)),
           ("UPDATE tasks SET priority = 9 WHERE id = ?", (n["resumed"],)),
           ("DELETE FROM tasks WHERE id = ?", (n["gone"],)))


async def test_since_checks_whole_only_the_tasks_changed_after_it(registry, db):
    n = await _changed_after_a_mark(registry)
    found = await registry.verify(since=n["mark"])
    assert found == [] and (found.tasks, found.since) == (3, n["mark"])
    assert summary(found) == (f"ok: 3 tasks touched after seq {n['mark']}, each equals the replay of its events, "
                              f"and the event log after seq {n['mark']} is whole")  # verify --since's last line
    _damage_before_and_after(db, n)
    tamper(db, NO_DELETE, "DELETE FROM events WHERE seq = 1")  # the first task's created event

    found = await registry.verify(since=n["mark"])
    assert {(where(d), d.field) for d in found} == {(n["resumed"], "priority"), (n["gone"], "row")}, found
    assert found.tasks == 3  # resumed (its events before the mark replayed too), new, gone
    everything = {where(d) for d in await registry.verify()}
    assert {n["old"], "seq 1", n["resumed"], n["gone"]} <= everything  # the damage before the mark is there

    tamper(db, ("DELETE FROM events WHERE seq = ?", (n["started"],)))
    found = await registry.verify(since=n["mark"])
    assert (f"seq {n['started']}", "missing") in {(where(d), d.field) for d in found}
    assert await registry.verify(since=await registry.last_seq()) == []


async def test_since_reads_the_changes_page_by_page(registry):
    ids = (await registry.create_tasks([{"title": f"t{i}"} for i in range(7)])).ids
    mark = await registry.last_seq()
    for tid in reversed(ids[2:]):
        await registry.update(tid, priority=2)
        await registry.update(tid, priority=3)
    for batch in (1, 3, 100):
        found = await registry.verify(since=mark, batch=batch)
        assert found == [] and found.tasks == 5, batch
    with pytest.raises(TaskError, match="since"):
        await registry.verify(since=-1)


def test_cli_verify_since(db):
    n = built(db, _changed_after_a_mark)
    _damage_before_and_after(db, n)
    out = cli("verify", "--db", db.location, "--since", str(n["mark"]))
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines[:-1]] == sorted([n["resumed"], n["gone"]]), lines
    assert lines[-1] == f"2 problems found, in 2 tasks (checked: 3 tasks touched after seq {n['mark']})"
