"""Export, import, copy, backup and restore on every store: round trips give back the same bytes,
bad files are refused naming the line, and backups and followed exports taken while agent
processes work hold every acknowledged change and are never seen half-written."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest

from mcp_tasks import Registry, State
from mcp_tasks.backups import copy
from mcp_tasks.errors import ImportRefused
from mcp_tasks.stores import Store
from mcp_tasks.tokens import Tokens
from mcp_tasks.transfer import export, export_to_file, import_file, utc_time, parse_time
from mcp_tasks.verification import verify

from .databases import TestDatabase, new_database


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
        await reg.checkpoint(ids[key], claim.lease, data={"step": 1, "ratio": 0.1, "naïve": [1, None]}, note="half",
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
    held = await fill(registry, clock)
    await registry.create_tasks([{"title": "a"}], request_id="r-1")  # a stored answer
    _, secret = await Tokens(registry).create("bot", "agent")
    first = await exported(registry.store)
    text = first.decode()
    assert secret not in text and "r-1" not in text and '"blocks"' not in text
    header = json.loads(text.splitlines()[0])
    assert header["format"] == "mcp-tasks-export" and header["tasks"] == 8
    assert header["events"] == header["last_seq"] == len(text.splitlines()) - 9
    file = tmp_path / "registry.jsonl"
    file.write_bytes(first)

    target = new_database(db.kind, tmp_path)
    store = await opened(target)
    try:
        summary = await import_file(store, file)
        assert (summary.tasks, summary.last_seq) == (8, header["last_seq"])
        assert await verify(store) == []
        assert await exported(store) == first
        copy_reg = Registry(store, agent="agent-a", clock=clock)
        async with copy_reg:
            # Claim order, leases and numbering carry over.
            assert [t.id for t in (await copy_reg.list_available()).items] == \
                   [t.id for t in (await registry.list_available()).items]
            tid, lease = next(iter(held.items()))
            await copy_reg.resume(tid, lease)
            assert (await copy_reg.event_pages(header["last_seq"]).__anext__())[0].seq == header["last_seq"] + 1
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
    source = new_database("sqlite", tmp_path)
    middle = new_database("postgres", tmp_path)
    back = new_database("sqlite", tmp_path)
    try:
        async with Registry(source.store(), agent="agent-a", clock=clock, rng=random.Random(3)) as reg:
            await fill(reg, clock)
            before = await exported(reg.store)
        there = await copy(source.location, middle.location)
        again = await copy(middle.location, back.location)
        assert there.identical and again.identical and there.problems == again.problems == []
        store = await opened(back)
        try:
            assert await exported(store) == before
        finally:
            await store.close()
    finally:
        middle.drop()


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
