"""Whole registries moved at once: copy between stores, online backup, restore.

Each step ends with the target checked (`verify`, and SQLite's own integrity check for a database
file) and a `Report` of what was done. A copy also exports the target and compares the bytes with
the source's export: equal bytes mean every task, event, seq number and time came across.
"""

from __future__ import annotations

import filecmp
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .errors import ImportRefused, InvalidInput
from .stores import Store, make_store
from .stores.sqlite import SqliteStore
from .transfer import Summary, check_file, export_to_file, import_file
from .verification import describe, verify

SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass
class Report:
    """What a copy, backup or restore did (`--json` prints it). `kind`: "sqlite" when a database
    file was copied whole (tokens included), "export" when tasks and events went through an export
    file. `problems`: what the checks of the result found (empty: it verifies clean)."""

    action: str
    source: str
    target: str
    kind: str
    tasks: int
    events: int
    last_seq: int
    seconds: float
    problems: list[str] = field(default_factory=list)
    identical: bool | None = None  # copy: the target exports to the same bytes as the source


S = TypeVar("S", bound=Store)


@asynccontextmanager
async def opened(store: S) -> AsyncIterator[S]:
    """`store`, open for the duration."""
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def checked(store: Store) -> tuple[Summary, list[str]]:
    """The registry's totals and what verify (and, for SQLite, the integrity check) finds wrong."""
    problems = await store.integrity_problems() if isinstance(store, SqliteStore) else []
    problems += [describe(d) for d in await verify(store)]
    size = await store.read(lambda tx: tx.registry_size())
    return Summary(size.tasks, size.events + size.unnumbered, size.last_seq + size.unnumbered, size.last_at), problems


async def copy(source: str, target: str) -> Report:
    """Copy the registry at `source` into the empty registry at `target` (either kind of store),
    keeping ids, seq numbers and times; ImportRefused when the target is not empty."""
    started = time.perf_counter()
    async with opened(make_store(source, create=False)) as src, \
            opened(make_store(target, must_write=True)) as dst:
        with tempfile.TemporaryDirectory(prefix="mcp-tasks-copy-") as tmp:
            before, after = Path(tmp) / "source.jsonl", Path(tmp) / "target.jsonl"
            summary = await export_to_file(src, before)
            await import_file(dst, before)
            _, problems = await checked(dst)
            await export_to_file(dst, after)
            identical = filecmp.cmp(before, after, shallow=False)
    if not identical:
        problems.append("the target does not export to the same bytes as the source")
    return Report("copy", src.location, dst.location, "export", summary.tasks, summary.events, summary.last_seq,
                  time.perf_counter() - started, problems, identical)


async def backup(source: str, dest: str | Path) -> Report:
    """A consistent backup of the registry at `source`, taken while others keep writing: a SQLite
    database becomes a checked copy of its file; a PostgreSQL one an export file. `dest` must not
    exist; nothing is left there unless the backup checked clean."""
    started = time.perf_counter()
    target = Path(dest)
    if target.exists() or target.is_symlink():
        raise InvalidInput(f"{target} exists: a backup never replaces a file; name a new one")
    async with opened(make_store(source, create=False)) as src:
        if not isinstance(src, SqliteStore):
            summary = await export_to_file(src, target)
            try:
                check_file(target)
                problems = []
            except ImportRefused as exc:
                problems = [exc.problem]
            return Report("backup", src.location, str(target), "export", summary.tasks, summary.events,
                          summary.last_seq, time.perf_counter() - started, problems)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            await src.copy_to(tmp)
            async with opened(SqliteStore(tmp, create=False)) as copy_store:
                summary, problems = await checked(copy_store)
            if not problems:
                if target.exists():
                    raise InvalidInput(f"{target} appeared while the backup was taken: it was left alone")
                os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return Report("backup", src.location, str(target), "sqlite", summary.tasks, summary.events, summary.last_seq,
                  time.perf_counter() - started, problems)


async def restore(source: str | Path, target: str) -> Report:
    """Restore a backup (a SQLite database file, or an export file) into the empty registry at
    `target`. A SQLite backup restored to a new SQLite file is copied whole, tokens included;
    everything else goes through an import (tasks and events)."""
    started = time.perf_counter()
    path = Path(source)
    if not path.is_file():
        raise InvalidInput(f"{path}: no such backup file (a SQLite database or an mcp-tasks export)")
    with path.open("rb") as f:
        is_database = f.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    dst = make_store(target, must_write=True)
    if not is_database:
        async with opened(dst):
            await import_file(dst, path)
            summary, problems = await checked(dst)
        return Report("restore", str(path), dst.location, "export", summary.tasks, summary.events, summary.last_seq,
                      time.perf_counter() - started, problems)
    whole = isinstance(dst, SqliteStore) and not Path(dst.path).exists()
    with tempfile.TemporaryDirectory(prefix="mcp-tasks-restore-") as tmp:
        # Never opened in place: opening may bring an older backup's schema up to date.
        copied = Path(dst.location) if whole else Path(tmp) / "backup.db"
        try:
            await SqliteStore(path).copy_to(copied)
            async with opened(dst if whole else SqliteStore(copied, create=False)) as src:
                if whole:
                    summary, problems = await checked(src)
                else:
                    await export_to_file(src, Path(tmp) / "backup.jsonl")
        except BaseException:
            if whole:
                copied.unlink(missing_ok=True)
            raise
        if not whole:
            async with opened(dst):
                await import_file(dst, Path(tmp) / "backup.jsonl")
                summary, problems = await checked(dst)
    return Report("restore", str(path), dst.location, "sqlite" if whole else "export", summary.tasks,
                  summary.events, summary.last_seq, time.perf_counter() - started, problems)
