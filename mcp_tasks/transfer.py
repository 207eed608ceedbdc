"""Export and import: a whole registry as JSON Lines, the same bytes for the same registry.

The file: a header line (`format`, `version`, the tasks' `schema_version`, `last_seq`, counts of
`tasks` and `events`, and `time`, the time of the last event), then `{"task": {...}}` for every task
in id order, then `{"event": {...}}` for every event in seq order. Each line is canonical JSON
(sorted keys, no spaces, UTF-8). Times are ISO 8601 UTC carrying exactly the digits of the stored
float (1764477439.1234567 -> "2025-11-30T04:37:19.1234567Z"), so they come back bit for bit;
durations stay seconds. Bearer tokens and stored request answers are never written.

An export is one read transaction, written as it pages (bounded memory). An import reads the file
once, checking every line as it loads it in one write transaction, and refuses (all of it rolled
back), naming the line, anything that would not give back the registry that was exported.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, NamedTuple

from .errors import CorruptRow, ImportRefused
from .limits import MAX_PRIORITY, MIN_PRIORITY
from .models import SCHEMA_VERSION, Event, Task
from .states import State
from .stores.base import ReadTx, Store, WriteTx
from .stores.records import RegistrySize
from .stores.rows import dumps, task_from_row

FORMAT = "mcp-tasks-export"
VERSION = 1
# Task fields holding a point in time (written as ISO 8601), in task lines and in an event's data.set.
TIME_FIELDS = ("created_at", "assigned_at", "started_at", "completed_at", "checkpoint_timestamp",
               "lease_expires_at", "not_before", "updated_at")
TASK_FIELDS = frozenset(f for f in Task.model_fields if f != "blocks")
EVENT_FIELDS = frozenset(("seq", "task_id", "type", "from_state", "to_state", "actor", "at", "data"))
HEADER_COUNTS = ("last_seq", "tasks", "events")
TASK_PAGE, EVENT_PAGE, BATCH = 500, 5000, 1000
DEBOUNCE_CAP = 4  # a followed export lags at most this many debounce intervals under constant change
_LAST_ISO_SECOND = 253402300800  # 10000-01-01: later times stay numbers
_STATES: dict[str, State | bool] = {s.value: s for s in State}
_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d+)Z$")

_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class Summary(NamedTuple):
    """What an export wrote or an import loaded: counts, the last seq and the last event's time."""

    tasks: int
    events: int
    last_seq: int
    time: float | None


def line(record: dict[str, Any]) -> str:
    """One canonical line (with its newline)."""
    return _canonical(record) + "\n"


def utc_time(t: Any) -> Any:
    """Epoch seconds as ISO 8601 UTC with exactly the float's shortest digits; a value that has no
    such form (not a float, negative, beyond year 9999, None) stays as it is."""
    if not isinstance(t, float) or not 0 <= t < _LAST_ISO_SECOND:
        return t
    whole, _, digits = repr(t).partition(".")
    if not digits.isdigit():
        return t
    return f"{_second(int(whole))}.{digits}Z"


@lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def parse_time(value: Any) -> Any:
    """The epoch seconds `utc_time` wrote (a number or None stays as it is); ValueError if it is neither."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    m = _ISO.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"holds {str(value)[:40]!r}, not a time (YYYY-MM-DDTHH:MM:SS.fZ or epoch seconds)")
    return float(f"{_seconds(m.group(1))}.{m.group(2)}")


@lru_cache(maxsize=4096)
def _seconds(text: str) -> int:
    when = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return int(when.timestamp())


def _times(record: dict[str, Any], convert: Any) -> dict[str, Any]:
    return {k: convert(v) if k in TIME_FIELDS else v for k, v in record.items()}


# ---------------------------------------------------------------- export


def task_record(task: Task) -> dict[str, Any]:
    """A task line's content: every stored field (lease_hash too, so holders keep their leases)."""
    d = task.model_dump(mode="json", exclude={"blocks"})
    d["lease_hash"] = task.lease_hash
    return _times(d, utc_time)


def event_record(ev: Event) -> dict[str, Any]:
    """An event line's content; CorruptRow if the stored event cannot be read."""
    if ev.error:
        raise CorruptRow(f"event {ev.seq} cannot be read ({ev.error}); run `mcp-tasks verify`, then repair or "
                         "restore it", task_id=ev.task_id, column="event")
    data = dict(ev.data)
    if isinstance(data.get("set"), dict):
        data["set"] = _times(data["set"], utc_time)
    return {"seq": ev.seq, "task_id": ev.task_id, "type": ev.type,
            "from_state": None if ev.from_state is None else ev.from_state.value,
            "to_state": None if ev.to_state is None else ev.to_state.value,
            "actor": ev.actor, "at": utc_time(ev.at), "data": data}


def write_export(tx: ReadTx, out: IO[str]) -> Summary:
    """Write the whole registry as seen by `tx` to `out`, paging (run it inside `Store.read`).

    Committed events the store has not numbered yet (PostgreSQL's sequencer) follow the numbered
    ones with the numbers they will get, so the export holds every committed change."""
    if out.seekable():  # a store may run this again after a lost connection: start afresh
        out.seek(0)
        out.truncate()
    size = tx.registry_size()
    total = size.events + size.unnumbered
    last_seq = size.last_seq + size.unnumbered
    out.write(line({"format": FORMAT, "version": VERSION, "schema_version": SCHEMA_VERSION, "last_seq": last_seq,
                    "tasks": size.tasks, "events": total, "time": utc_time(size.last_at)}))
    tasks, after = 0, ""
    while page := tx.tasks_by_id(after, TASK_PAGE):
        out.writelines(line({"task": task_record(t)}) for t in page)
        tasks, after = tasks + len(page), page[-1].id
    events, seq = 0, 0
    while page_events := tx.events_since(seq, EVENT_PAGE):
        out.writelines(line({"event": event_record(e)}) for e in page_events)
        events, seq = events + len(page_events), page_events[-1].seq
    pos = 0
    while unnumbered := tx.unnumbered_events(pos, EVENT_PAGE):
        for pos, ev in unnumbered:
            seq += 1
            out.write(line({"event": event_record(ev.model_copy(update={"seq": seq}))}))
            events += 1
    if (tasks, events) != (size.tasks, total):
        raise CorruptRow(f"the export read {tasks} tasks and {events} events where the registry counts {size.tasks} "
                         f"and {total}; run `mcp-tasks verify`")
    return Summary(tasks, events, last_seq, size.last_at)


async def export(store: Store, out: IO[str]) -> Summary:
    """Export `store` to the open text file `out` from one read snapshot."""
    await store.settle()
    return await store.read(lambda tx: write_export(tx, out))


async def export_to_file(store: Store, path: str | Path) -> Summary:
    """Export `store` to `path` atomically: a temporary file beside it, synced, then renamed over it,
    so a reader of `path` sees the previous export or the new one, never part of one."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as out:
            summary = await export(store, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return summary


# ---------------------------------------------------------------- import


class Edge(NamedTuple):
    """A dependency edge as an import reads it."""

    task_id: str
    depends_on: str


class _Refuse(Exception):
    """A problem with the line being read (turned into ImportRefused naming it)."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _lines(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                yield n, json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
            except (UnicodeDecodeError, ValueError) as exc:
                raise ImportRefused(f"{path}: line {n}: not a JSON line ({exc})", line=n) from None


def _header(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise _Refuse(f"this is not an {FORMAT} file: its first line must be the header "
                      f'{{"format":"{FORMAT}","version":{VERSION},...}}')
    for key, newest in (("version", VERSION), ("schema_version", SCHEMA_VERSION)):
        v = value.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise _Refuse(f"the header's {key} must be a whole number from 1, not {v!r}")
        if v > newest:
            raise _Refuse(f"the file has {key} {v}, newer than this mcp-tasks reads ({newest}): upgrade mcp-tasks")
    for key in HEADER_COUNTS:
        v = value.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise _Refuse(f"the header's {key} must be a whole number, not {v!r}")
    try:
        return {**value, "time": parse_time(value.get("time"))}
    except ValueError as exc:
        raise _Refuse(f"the header's time {exc}") from None


def _fields(what: str, value: Any, expected: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Refuse(f"a {what} must be a JSON object")
    missing, unknown = sorted(expected - value.keys()), sorted(value.keys() - expected)
    if missing or unknown:
        raise _Refuse(f"the {what} " + "; ".join(
            ([f"lacks {', '.join(missing)}"] if missing else []) + ([f"has unknown {', '.join(unknown)}"] if unknown else [])))
    return value


def _task(value: Any) -> Task:
    rec = _fields("task", value, TASK_FIELDS)
    tid = rec["id"]
    if not isinstance(tid, str) or not tid:
        raise _Refuse(f"a task id must be text, not {tid!r}")
    try:
        row: dict[str, Any] = _times(rec, parse_time)
    except ValueError as exc:
        raise _Refuse(f"task {tid}: a time field {exc}") from None
    usage = rec["usage"]
    if not isinstance(usage, dict) or set(usage) != {"tokens", "api_calls", "cost"}:
        raise _Refuse(f"task {tid}: usage must hold tokens, api_calls and cost")
    row.update({f"usage_{k}": v for k, v in usage.items()})
    for key in ("tags", "error_log", "artifacts"):
        row[key] = dumps(rec[key])
    for key in ("checkpoint_data", "result"):
        row[key] = None if rec[key] is None else dumps(rec[key])
    row["requires_review"] = int(rec["requires_review"]) if isinstance(rec["requires_review"], bool) else None
    deps = rec["depends_on"]
    if not (isinstance(deps, list) and all(isinstance(d, str) for d in deps)) or len(set(deps)) != len(deps) or tid in deps:
        raise _Refuse(f"task {tid}: depends_on must list other tasks' ids, each once")
    try:
        task = task_from_row(row, deps)
    except CorruptRow as exc:
        raise _Refuse(f"task {tid}: field {exc.data.get('column')} {exc.data.get('reason')}") from None
    if not MIN_PRIORITY <= task.priority <= MAX_PRIORITY or task.unmet_deps < 0:
        raise _Refuse(f"task {tid}: priority must be {MIN_PRIORITY}-{MAX_PRIORITY} and unmet_deps not negative")
    return task


def _event(value: Any, expected_seq: int, known: dict[str, int]) -> Event:
    rec = _fields("event", value, EVENT_FIELDS)
    seq = rec["seq"]
    if seq != expected_seq or isinstance(seq, bool):
        raise _Refuse(f"event seq {seq!r} where {expected_seq} was expected (seq runs 1, 2, 3 ... without gaps or "
                      "repeats)")
    data = rec["data"]
    try:
        at = parse_time(rec["at"])
        if isinstance(data, dict) and isinstance(data.get("set"), dict):
            data = {**data, "set": _times(data["set"], parse_time)}
    except ValueError as exc:
        raise _Refuse(f"event {seq}: a time {exc}") from None
    for key in ("task_id", "type", "actor"):
        if not isinstance(rec[key], str):
            raise _Refuse(f"event {seq}: {key} must be text, not {rec[key]!r}")
    states = [_STATES.get(rec[key], False) if rec[key] is not None else None for key in ("from_state", "to_state")]
    if False in states or at is None or not isinstance(data, dict):
        raise _Refuse(f"event {seq}: from_state and to_state must be states or null, at a time, data an object")
    if rec["task_id"] not in known:
        raise _Refuse(f"event {seq} names task {rec['task_id']}, which the file does not hold")
    return Event.model_construct(seq=seq, task_id=rec["task_id"], type=rec["type"], from_state=states[0],
                                 to_state=states[1], actor=rec["actor"], at=at, data=data, error=None)


def _records(path: Path, num: dict[str, int]) -> Iterator[tuple[int, Summary | Task | Event | Edge]]:
    """Every record of the file, checked: the header (a Summary), tasks, then each dependency edge
    once every task is known, then events. Tasks go into `num` (id -> 0) as they are read."""
    head: dict[str, Any] | None = None
    tasks = events = n = 0
    edges: list[tuple[int, str, str]] = []
    last_id = ""
    for n, value in _lines(path):
        try:
            if head is None:
                head = _header(value)
                yield n, Summary(head["tasks"], head["events"], head["last_seq"], head["time"])
            elif isinstance(value, dict) and value.keys() == {"task"}:
                if events:
                    raise _Refuse("a task after the events: every task comes before the first event")
                task = _task(value["task"])
                if task.id <= last_id:
                    raise _Refuse(f"task {task.id} " + ("repeats an id" if task.id == last_id else
                                                        f"comes after {last_id}: tasks must be in id order"))
                last_id, tasks, num[task.id] = task.id, tasks + 1, 0
                edges += [(n, task.id, d) for d in task.depends_on]
                yield n, task
            elif isinstance(value, dict) and value.keys() == {"event"}:
                if not events:
                    yield from _edges(path, edges, num)
                events += 1
                yield n, _event(value["event"], events, num)
            else:
                raise _Refuse('not a record of an export: expected {"task": {...}} or {"event": {...}}')
        except _Refuse as exc:
            raise ImportRefused(f"{path}: line {n}: {exc}", line=n) from None
    if head is None:
        raise ImportRefused(f"{path}: the file is empty: it holds no header", line=1)
    if not events:
        yield from _edges(path, edges, num)
    found = {"tasks": tasks, "events": events, "last_seq": events}
    wrong = [f"{k} {head[k]} but the file holds {found[k]}" for k in HEADER_COUNTS if head[k] != found[k]]
    if wrong:
        raise ImportRefused(f"{path}: line {n + 1}: the file ends here, yet its header (line 1) says "
                            f"{'; '.join(wrong)}: it is truncated or was edited", line=n + 1)


def _edges(path: Path, edges: list[tuple[int, str, str]], known: dict[str, int]
           ) -> Iterator[tuple[int, Edge]]:
    for n, task_id, dep in edges:
        if dep not in known:
            raise ImportRefused(f"{path}: line {n}: task {task_id} depends on {dep}, which the file does not hold", line=n)
        yield n, Edge(task_id, dep)


def check_file(path: str | Path) -> Summary:
    """Read the whole file, checking every line as an import would; ImportRefused naming the first
    bad one. Its header's totals."""
    summary: Summary | None = None
    for _, record in _records(Path(path), {}):
        if isinstance(record, Summary):
            summary = record
    assert summary is not None
    return summary


def load_file(tx: WriteTx, path: str | Path) -> Summary:
    """Load the export at `path` into the empty registry of `tx`, checking every line (run it inside
    `Store.write`, which rolls everything back when a line is refused; it reads the file from its
    start, so the store may run it again).

    Tasks come in id order, so each is inserted at a placeholder place; once the events have given
    the order of the tasks' `created` events, every task is moved to its place in that order
    (tasks without one after them, in id order)."""
    size = tx.registry_size()
    if not size.empty:
        raise _not_empty(size)
    known: dict[str, int] = {}
    summary: Summary | None = None
    tasks: list[tuple[int, Task]] = []
    edges: list[Edge] = []
    events: list[Event] = []
    place: dict[str, int] = {}
    for _, record in _records(Path(path), known):
        if isinstance(record, Summary):
            summary = record
        elif isinstance(record, Task):
            tasks.append((-len(known), record))  # below every real place: no collision when moved
        elif isinstance(record, Edge):
            if tasks:  # every task row before the first edge that may name it
                tx.import_tasks(tasks)
                tasks.clear()
            edges.append(record)
        elif isinstance(record, Event):
            events.append(record)
            if record.type == "created" and record.task_id not in place:
                place[record.task_id] = len(place) + 1
        if len(tasks) >= BATCH:
            tx.import_tasks(tasks)
            tasks.clear()
        if len(edges) >= BATCH:
            tx.import_deps(edges)
            edges.clear()
        if len(events) >= BATCH:
            tx.import_events(events)
            events.clear()
    tx.import_tasks(tasks)
    tx.import_deps(edges)
    tx.import_events(events)
    for task_id in sorted(known.keys() - place.keys()):  # no created event: verify reports it
        place[task_id] = len(place) + 1
    moves = list(place.items())
    for start in range(0, len(moves), BATCH):
        tx.import_places(moves[start:start + BATCH])
    assert summary is not None
    tx.import_counters(summary.last_seq)
    return summary


async def import_file(store: Store, path: str | Path) -> Summary:
    """Import the export at `path` into the empty registry `store`, all or nothing; ImportRefused
    (naming the line) changes nothing. Verify afterwards."""
    size = await store.read(lambda tx: tx.registry_size())
    if not size.empty:  # said before reading a large file; load_file checks again, in its transaction
        raise _not_empty(size)
    return await store.write(lambda tx: load_file(tx, path))


def _not_empty(size: RegistrySize) -> ImportRefused:
    return ImportRefused(f"the target registry is not empty ({size.tasks} tasks, {size.events + size.unnumbered} "
                         "events): import only into a new database")


# ---------------------------------------------------------------- a followed export


async def follow_export(store: Store, path: str | Path, *, debounce: float, stop: asyncio.Event,
                        wrote: Callable[[Summary], None]) -> int:
    """Keep `path` an up-to-date export of `store` until `stop` is set; how many times it was written.

    Written at once, then whenever the log has advanced: once it has been quiet for `debounce`
    seconds, or `DEBOUNCE_CAP` times that after the first change not yet written under constant
    change. Every write is atomic (`export_to_file`); a change seen when stopping is written before
    returning. `wrote` is told of each write."""

    async def head() -> int:
        await store.settle()
        return await store.read(lambda tx: tx.last_seq())

    async def write() -> int:
        seen = await head()  # read before the snapshot: a change after it shows up as a new head
        wrote(await export_to_file(store, path))
        return seen

    poll = min(0.5, max(0.05, debounce / 4))
    written, writes = await write(), 1
    while not stop.is_set():
        first = last_change = None
        current = written
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), poll)
            except asyncio.TimeoutError:
                pass
            now, latest = time.monotonic(), await head()
            if latest != current:
                current, last_change = latest, now
                first = first or now
            if first is not None and last_change is not None and (
                    now - last_change >= debounce or now - first >= DEBOUNCE_CAP * debounce):
                break
        if stop.is_set():
            current = await head()
        if current != written:
            written, writes = await write(), writes + 1
    return writes
