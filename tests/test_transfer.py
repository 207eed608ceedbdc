"""Export, import, copy, backup and restore on every store: round trips give back the same bytes,
bad files are refused naming the line, and backups and followed exports taken while agent
processes work hold every acknowledged change and are never seen half-written."""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mcp_tasks import Registry, State
from mcp_tasks.backups import backup, copy, restore
from mcp_tasks.errors import ImportRefused
from mcp_tasks.cli import main
from mcp_tasks.stores import SqliteStore, Store
from mcp_tasks.tokens import Tokens
from mcp_tasks.transfer import export, follow_export, import_file, parse_time, utc_time
from mcp_tasks.verification import verify

from .databases import TestDatabase, new_database
from .fleet import ROOT
from .test_cli import run

WORKER = Path(__file__).parent / "programs" / "claim_worker.py"
# Tasks planned for the agent processes of the backup and follow test (they are stopped after the
# backup: the load must outlast it).
LOAD_TASKS = int(os.environ.get("MCP_TASKS_TRANSFER_TASKS", "400"))
LOAD_PROCS = 2


async def exported(store: Store) -> bytes:
    buf = io.StringIO()
    await export(store, buf)
    return buf.getvalue().encode("utf-8")


async def opened(db: TestDatabase) -> Store:
    store = db.store()
    await store.open()
    return store


async def fill(reg: Registry, clock) -> dict[str, str]:
    """A registry with every state, dependencies, checkpoints, a review, failures and retries,
    usage and unicode; times with fractions. Returns the leases still held, by task id."""
    def tick() -> None:
        clock.advance(0.1234567)

    made = await reg.create_tasks([
        {"key": "spec", "title": "Spéc — 仕様 📐", "description": "line one\nline \"two\"", "tags": ["docs", "v2"],
         "priority": 8},
        {"key": "build", "title": "build", "depends_on": ["spec"], "type": "code", "requires_review": True},
        {"key": "ship", "title": "ship", "depends_on": ["build"]},
        {"key": "flaky", "title": "flaky", "max_retries": 1},
        {"key": "idle", "title": "idle"}, {"key": "later", "title": "later"},
    ])
    ids = made.by_key
    backlog = (await reg.create_tasks([{"title": "someday"}], ready=False)).ids[0]
    held: dict[str, str] = {}
    for key in ("spec", "build"):
        tick()
        claim = await reg.claim(ids[key])
        assert claim is not None
        await reg.start(ids[key], claim.lease)
        tick()
        await reg.checkpoint(ids[key], claim.lease, data={"step": 1, "ratio": 0.1, "naïve": [1, None], "big": 1e16, "huge": [-1.5e300, 2**70]}, note="half",
                             progress=50)
        tick()
        await reg.complete(ids[key], claim.lease, result={"ok": True}, artifacts=["out/ü.txt"],
                           usage={"tokens": 120, "api_calls": 3, "cost": 0.0125})
    tick()
    await reg.review(ids["build"], True, "fine", actor="reviewer")
    for _ in range(2):  # one retry, then dead-lettered
        tick()
        claim = await reg.claim(ids["flaky"])
        assert claim is not None
        await reg.start(ids["flaky"], claim.lease)
        await reg.fail(ids["flaky"], claim.lease, "boom ✗", retryable=True)
        clock.advance(5)
    claim = await reg.claim(ids["ship"])
    assert claim is not None
    await reg.start(ids["ship"], claim.lease)
    await reg.pause(ids["ship"], claim.lease, "waiting")
    held[ids["ship"]] = claim.lease
    claim = await reg.claim(ids["idle"])
    assert claim is not None
    held[ids["idle"]] = claim.lease
    await reg.cancel(ids["later"], "not needed")
    await reg.update(backlog, priority=2, tags=["x"])
    states = {t: (await reg.get(t)).state for t in [*ids.values(), backlog]}
    assert set(states.values()) >= {State.DONE, State.FAILED, State.PAUSED, State.ASSIGNED, State.CANCELLED,
                                    State.BACKLOG}
    return held


async def test_export_import_export_is_byte_identical(db, registry, clock, tmp_path):
    empty = (await exported(registry.store)).decode()
    assert empty == ('{"events":0,"format":"mcp-tasks-export","last_seq":0,"schema_version":1,"tasks":0,"time":null,'
                     '"version":1}\n')
    held = await fill(registry, clock)
    await registry.create_tasks([{"title": "a"}], request_id="r-1")  # a stored answer
    # Equal priority and time: claimed in creation order, which is not their id order.
    same = (await registry.create_tasks([{"title": f"same {i}"} for i in range(6)])).ids
    assert sorted(same) != same
    _, secret = await Tokens(registry).create("bot", "agent")
    first = await exported(registry.store)
    text = first.decode()
    assert secret not in text and "r-1" not in text and '"blocks"' not in text
    header = json.loads(text.splitlines()[0])
    assert header["format"] == "mcp-tasks-export" and header["tasks"] == 14
    assert header["events"] == header["last_seq"] == len(text.splitlines()) - 15
    file = tmp_path / "registry.jsonl"
    file.write_bytes(first)

    target = new_database(db.kind, tmp_path)
    store = await opened(target)
    try:
        summary = await import_file(store, file)
        assert (summary.tasks, summary.last_seq) == (14, header["last_seq"])
        assert await verify(store) == []
        assert await exported(store) == first
        copy_reg = Registry(store, agent="agent-a", clock=clock)
        async with copy_reg:
            # Claim order, leases and numbering carry over.
            ready = [t.id for t in (await registry.list_available()).items]
            assert [t.id for t in (await copy_reg.list_available()).items] == ready and ready[-6:] == same
            tid, lease = next(iter(held.items()))
            await copy_reg.resume(tid, lease)
            new = (await copy_reg.create_tasks([{"title": "after the import"}])).ids[0]
            events = (await copy_reg.event_pages(header["last_seq"]).__anext__())
            assert [(e.seq, e.type) for e in events] == [(header["last_seq"] + 1, "resumed"),
                                                        (header["last_seq"] + 2, "created")]
            assert (await copy_reg.find(limit=1)).items[0].id == new  # placed after the imported tasks
            assert await verify(store) == []
    finally:
        await store.close()
        target.drop()


def test_times_keep_every_digit():
    for t in (1764477439.1234567, 1764477439.0, 0.5, 0.0001, 1800000000.1, 253402300799.99997):
        text = utc_time(t)
        assert isinstance(text, str) and text.endswith("Z") and parse_time(text) == t
    assert utc_time(1764477439.1234567) == "2025-11-30T04:37:19.1234567Z"
    assert utc_time(None) is None and utc_time(3) == 3 and utc_time(1e-07) == 1e-07 and utc_time(1e300) == 1e300


async def test_copy_sqlite_to_postgres_and_back_exports_the_same_bytes(tmp_path, clock):
    """And a SQLite backup restored into PostgreSQL (through an export) holds the same registry."""
    source = new_database("sqlite", tmp_path)
    middle = new_database("postgres", tmp_path)
    back = new_database("sqlite", tmp_path)
    restored = new_database("postgres", tmp_path)
    try:
        async with Registry(source.store(), agent="agent-a", clock=clock, rng=random.Random(3)) as reg:
            await fill(reg, clock)
            before = await exported(reg.store)
        there = await copy(source.location, middle.location)
        again = await copy(middle.location, back.location)
        assert there.identical and again.identical and there.problems == again.problems == []
        taken = await backup(source.location, tmp_path / "backup.db")
        put_back = await restore(tmp_path / "backup.db", restored.location)
        assert (taken.kind, put_back.kind, put_back.problems) == ("sqlite", "export", [])
        for db in (back, restored):
            store = await opened(db)
            try:
                assert await exported(store) == before
            finally:
                await store.close()
    finally:
        middle.drop()
        restored.drop()


def _lines(data: bytes) -> list[dict]:
    return [json.loads(x) for x in data.decode().splitlines()]


def _write(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    return path


async def test_import_refusals_name_the_line_and_change_nothing(db, registry, clock, tmp_path):
    await fill(registry, clock)
    good = _lines(await exported(registry.store))
    header = good[0]
    tasks, events = good[1:header["tasks"] + 1], good[header["tasks"] + 1:]
    first_event = len(tasks) + 2  # its line number
    target = new_database(db.kind, tmp_path)
    store = await opened(target)
    bad_priority = json.loads(json.dumps(tasks[2]))
    bad_priority["task"]["priority"] = "high"
    stranger = json.loads(json.dumps(events[0]))
    stranger["event"]["task_id"] = "t-nobody0000"
    dangling = json.loads(json.dumps(tasks[3]))
    dangling["task"]["depends_on"] = ["t-nobody0000"]
    cases = {
        "not JSON": ([header, *tasks[:2]], 4, "not a JSON line"),
        "header missing": ([*tasks, *events], 1, "not an mcp-tasks-export file"),
        "newer format": ([{**header, "version": 2}, *tasks, *events], 1, "newer than this mcp-tasks reads"),
        "duplicate ids": ([header, tasks[0], *tasks, *events], 3, "repeats an id"),
        "out of order": ([header, tasks[1], tasks[0], *tasks[2:], *events], 3, "tasks must be in id order"),
        "seq gap": ([header, *tasks, events[0], *events[2:]], first_event + 1, "seq 3 where 2 was expected"),
        "seq repeat": ([header, *tasks, events[0], *events], first_event + 1, "seq 1 where 2 was expected"),
        "truncated": ([header, *tasks, *events[:-3]], len(good) - 2, "truncated"),
        "unknown task": ([header, *tasks, stranger, *events[1:]], first_event, "which the file does not hold"),
        "unknown dependency": ([header, *tasks[:3], dangling, *tasks[4:], *events], 5, "depends on t-nobody0000"),
        "bad value": ([header, *tasks[:2], bad_priority, *tasks[3:], *events], 4, "field priority holds str"),
        "unknown record": ([header, {"comment": "hi"}, *tasks, *events], 2, "not a record of an export"),
    }
    try:
        for name, (lines, line, words) in cases.items():
            path = _write(tmp_path / f"{name}.jsonl", lines)
            if name == "not JSON":
                path.write_text(path.read_text() + "{nope\n")
            with pytest.raises(ImportRefused) as refused:
                await import_file(store, path)
            assert f"line {line}: " in refused.value.message and words in refused.value.message, (name, refused.value)
            assert refused.value.data["line"] == line
        assert await store.read(lambda tx: tx.registry_size().empty)
        with pytest.raises(ImportRefused, match="the target registry is not empty"):
            await import_file(registry.store, _write(tmp_path / "good.jsonl", good))
    finally:
        await store.close()
        target.drop()


async def test_postgres_export_holds_committed_events_the_sequencer_has_not_numbered(tmp_path, clock):
    import psycopg

    db = new_database("postgres", tmp_path)
    try:
        async with Registry(db.store(), agent="agent-a", clock=clock) as reg:
            await reg.create_tasks([{"title": "before"}])
            await reg.store.settle()
            assert db.base is not None
            with psycopg.connect(db.base) as blocker:
                blocker.execute("SELECT pg_current_xact_id()")  # an open transaction below every later one
                await reg.create_tasks([{"title": "after 1"}, {"title": "after 2"}])
                # (more may wait: a transaction anywhere on the server holds the sequencer back)
                assert (await reg.store.read(lambda tx: tx.registry_size())).unnumbered >= 2
                during = await exported(reg.store)
                blocker.rollback()
            assert json.loads(during.decode().splitlines()[0])["last_seq"] == 3
            assert await exported(reg.store) == during  # numbered since, as the export said they would be
    finally:
        db.drop()


def _workers(location: str, logs: list[Path]) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = []
    for i, log in enumerate(logs):
        with log.open("w") as out:
            procs.append(subprocess.Popen([sys.executable, str(WORKER), location, f"worker-{i}", str(i)], stdout=out,
                                          env=env))
    return procs


def _acknowledged(logs: list[Path]) -> set[tuple[str, str]]:
    """(task, worker) of every claim a worker has been told succeeded (complete lines only)."""
    out = set()
    for i, log in enumerate(logs):
        for text in log.read_text().splitlines(keepends=True):
            if text.endswith("\n"):
                out.add((json.loads(text)["task"], f"worker-{i}"))
    return out


def _finish(procs: list[subprocess.Popen], stop: bool = False) -> None:
    """Wait for the workers to run out of work (or stop them now)."""
    for p in procs:
        if stop:
            p.terminate()
        try:
            code = p.wait(timeout=120)
            assert stop or code == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def _read_while(path: Path, stop: threading.Event, seen: list[int], broken: list[str]) -> None:
    """Read `path` over and over: every read must be a whole export (header counts = lines)."""
    while not stop.is_set():
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        lines = data.split(b"\n")
        header = json.loads(lines[0])
        if lines[-1] != b"" or len(lines) - 2 != header["tasks"] + header["events"]:
            broken.append(f"{len(data)} bytes, {len(lines)} lines, header {header}")
        seen.append(header["last_seq"])
        time.sleep(0.005)


async def test_backup_and_followed_export_during_a_multi_process_load(db, tmp_path):
    """Agent processes work while a followed export keeps a file current and a backup is taken: the
    backup (restored and verified) holds every claim acknowledged before it began; the followed
    file is never seen half-written and ends equal to a one-shot export."""
    planner = Registry(db.store(), agent="planner")
    async with planner:
        for start in range(0, LOAD_TASKS, 500):
            await planner.create_tasks([{"title": f"task {i}"} for i in range(start, min(start + 500, LOAD_TASKS))])
        await planner.create_tasks([{"title": "someday"}], ready=False)  # the workers never run out of work
        followed = tmp_path / "plan.jsonl"
        store = await opened(db)
        halt, writes = asyncio.Event(), []
        follower = asyncio.create_task(follow_export(store, followed, debounce=0.1, stop=halt, wrote=writes.append))
        stop, seen, broken = threading.Event(), [], []
        reader = threading.Thread(target=_read_while, args=(followed, stop, seen, broken))
        reader.start()
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:  # the reader has the file before the load starts
            await asyncio.sleep(0.01)
        logs = [tmp_path / f"worker-{i}.out" for i in range(LOAD_PROCS)]
        procs = _workers(db.location, logs)
        feeding = asyncio.Event()

        async def feed() -> None:  # new work arrives while the backup is taken
            while not feeding.is_set():
                await planner.create_tasks([{"title": "more"}])
                await asyncio.sleep(0.005)

        try:
            deadline = time.monotonic() + 60
            while len(_acknowledged(logs)) < LOAD_TASKS // 20 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            before = _acknowledged(logs)
            feeder = asyncio.create_task(feed())
            dest = tmp_path / ("backup.db" if db.kind == "sqlite" else "backup.jsonl")
            taken = await backup(db.location, dest)
            feeding.set()
            await feeder
            assert all(p.poll() is None for p in procs), "the agents work on while the backup is taken"
            _finish(procs, stop=True)
            one_shot = await exported(store)
            deadline = time.monotonic() + 30
            while followed.read_bytes() != one_shot and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert followed.read_bytes() == one_shot
            final = json.loads(one_shot.decode().splitlines()[0])["last_seq"]
            while (len(seen) < 20 or seen[-1] != final) and time.monotonic() < deadline:  # it reads that too
                await asyncio.sleep(0.01)
        finally:
            _finish(procs, stop=True)
            halt.set()
            await follower
            stop.set()
            reader.join()
            await store.close()
    assert len(writes) >= 2 and writes[-1].last_seq == final
    assert broken == [] and len(seen) >= 20 and len(set(seen)) >= 2

    assert taken.problems == [] and taken.tasks > LOAD_TASKS and taken.kind == (
        "sqlite" if db.kind == "sqlite" else "export")
    assert len(before) >= LOAD_TASKS // 20 and taken.last_seq < final, "the backup was taken during the load"
    target = new_database(db.kind, tmp_path)
    try:
        restored = await restore(dest, target.location)
        assert restored.problems == [] and restored.last_seq == taken.last_seq
        store = await opened(target)
        try:
            claims = set()
            seq = 0
            while page := await store.read(lambda tx: tx.events_since(seq, 5000)):
                claims |= {(e.task_id, e.actor) for e in page if e.type == "claimed"}
                seq = page[-1].seq
        finally:
            await store.close()
        assert before <= claims
    finally:
        target.drop()


def test_commands_as_a_person_runs_them(tmp_path):
    """Each command in its own process, with and without --json; the follower stops on SIGTERM."""
    source = tmp_path / "source.db"

    async def plan(titles: list[str]) -> bytes:
        async with Registry(SqliteStore(source), agent="planner") as reg:
            await reg.create_tasks([{"title": t} for t in titles])
            return await exported(reg.store)

    first = asyncio.run(plan(["one", "twö"]))
    exported_file = tmp_path / "registry.jsonl"
    exported_file.write_bytes(first)
    loaded = run("import", str(exported_file), "--db", str(tmp_path / "a.db")).stdout
    assert "imported 2 tasks, 2 events (last seq 2)" in loaded and "it verifies clean" in loaded
    copied = json.loads(run("copy", "--db", str(source), "--to", str(tmp_path / "b.db"), "--json").stdout)
    assert copied["identical"] is True and copied["problems"] == [] and copied["tasks"] == 2
    taken = run("backup", str(tmp_path / "backup.db"), "--db", str(source)).stdout
    assert "(database copy): 2 tasks, 2 events" in taken and (tmp_path / "backup.db").exists()
    restored = json.loads(run("restore", str(tmp_path / "backup.db"), "--db", str(tmp_path / "c.db"), "--json").stdout)
    assert restored["kind"] == "sqlite" and restored["problems"] == [] and restored["last_seq"] == 2

    followed = tmp_path / "followed.jsonl"
    follower = subprocess.Popen([sys.executable, "-m", "mcp_tasks", "export", "--follow", "-o", str(followed),
                                 "--debounce", "0.05", "--json", "--db", str(source)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while not followed.exists() and follower.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        latest = asyncio.run(plan(["three"]))
        while followed.read_bytes() != latest and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert followed.read_bytes() == latest
    assert json.loads(out) | {"seconds": 0} == {"action": "export", "source": str(source), "target": str(followed),
                                                "tasks": 3, "events": 3, "last_seq": 3, "seconds": 0, "writes": 2}


def test_command_refusals_are_one_line_and_change_nothing(tmp_path, capsys):
    source = tmp_path / "source.db"

    async def plan() -> None:
        async with Registry(SqliteStore(source), agent="planner") as reg:
            await reg.create_tasks([{"title": "one"}])

    asyncio.run(plan())
    file = tmp_path / "registry.jsonl"
    assert main(["export", "--db", str(source), "-o", str(file)]) == 0
    assert main(["import", str(file), "--db", str(source)]) == 3
    assert main(["backup", str(file), "--db", str(source)]) == 3
    assert main(["export", "--follow", "--db", str(source)]) == 2
    assert main(["export", "--json", "--db", str(source)]) == 2
    assert main(["import", str(tmp_path / "missing.jsonl"), "--db", str(tmp_path / "new.db")]) == 3
    assert not (tmp_path / "new.db").exists()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 5 and all(line.startswith("error: ") for line in err)
    assert "not empty (1 tasks, 1 events)" in err[0] and "a backup never replaces a file" in err[1]
    assert "--follow needs -o FILE" in err[2] and "--json needs -o FILE" in err[3]
    assert "missing.jsonl: no such export file" in err[4]
