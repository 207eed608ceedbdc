"""Mapping between database rows and domain models, shared by the SQL stores (no SQL here).

Rows are checked as they are read: a column holding something the model cannot be (text in a
number column, JSON that does not parse, an unknown state) raises CorruptRow naming the task and
the column, so one damaged row harms only the operations on that task. Events are never refused
this way: an unreadable event comes back with `error` set and empty data, so whoever follows the
log can record it and move past it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from decimal import Decimal
from math import fsum
from operator import itemgetter
from typing import Any, Callable, Protocol, TypeVar, cast

from pydantic import BaseModel

from ..errors import CorruptRow
from ..models import Event, EventRecord, Task, Usage
from ..states import State
from .records import SeqRun

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_STATES = {s.value: s for s in State}
M = TypeVar("M", bound=BaseModel)


class Row(Protocol):
    """A database row: values by column name (sqlite3.Row, a psycopg dict row, a dict)."""

    def keys(self) -> Any: ...

    def __getitem__(self, key: Any, /) -> Any: ...


# What each task column may hold: (kind, nullable). Kinds: int, num (int or float), text, json
# (any JSON text), strs (JSON array of strings), dicts (JSON array of objects), bool (0 or 1).
TASK_COLUMNS: dict[str, tuple[str, bool]] = {
    "id": ("text", False), "title": ("text", False), "description": ("text", False), "type": ("text", False),
    "priority": ("int", False), "tags": ("strs", False), "state": ("state", False), "assignee": ("text", True),
    "created_at": ("num", False), "assigned_at": ("num", True), "started_at": ("num", True),
    "completed_at": ("num", True), "retry_count": ("int", False), "max_retries": ("int", False),
    "error_log": ("dicts", False), "checkpoint_data": ("json", True), "checkpoint_note": ("text", True),
    "progress": ("int", True), "checkpoint_timestamp": ("num", True), "cycle_time": ("num", True),
    "wait_time": ("num", True), "work_time": ("num", True), "result": ("json", True),
    "artifacts": ("strs", False), "version": ("int", False), "schema_version": ("int", False),
    "created_by": ("text", False), "requires_review": ("bool", False), "reviewer": ("text", True),
    "lease_hash": ("text", True), "lease_expires_at": ("num", True), "lease_seconds": ("num", True),
    "not_before": ("num", True), "unmet_deps": ("int", False), "usage_tokens": ("int", False),
    "usage_api_calls": ("int", False), "usage_cost": ("num", False), "updated_at": ("num", False),
    "lease_end": ("text", True),
}


def dumps(value: Any) -> str:
    """Compact JSON text as the stores keep it. A float of 1e16 or more is written out in full with
    a fraction (1e16 as 10000000000000000.0): PostgreSQL's jsonb holds numbers as decimals and
    prints them without an exponent, so `1e+16` would come back as the integer 10000000000000000."""
    text = _dumps(value)
    return text if "e+" not in text else _with_big_floats_in_full(value)


def _with_big_floats_in_full(value: Any) -> str:
    marker = f"\x00{secrets.token_hex(16)}:"  # stands in for each big float, then is replaced by its digits
    digits: list[str] = []

    def walk(v: Any) -> Any:
        if type(v) is float and abs(v) >= 1e16:  # finite: the encoder refuses NaN and infinities
            digits.append(format(Decimal(repr(v)), "f") + ".0")
            return f"{marker}{len(digits) - 1}"
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        return v

    text = _dumps(walk(value))
    for i, full in enumerate(digits):
        text = text.replace(_dumps(f"{marker}{i}"), full, 1)
    return text


_new_record = tuple.__new__  # an EventRecord from its nine values, without namedtuple's Python-level __new__
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        raise ValueError("is not JSON text")
    try:  # the decoder's scanner alone: as the stores write JSON (no surrounding space), 2-7x json.loads
        value, end = _scan(text, 0)
        if end == len(text):
            return value
    except (StopIteration, ValueError, RecursionError):
        pass
    try:
        return json.loads(text)
    except ValueError:
        raise ValueError("is not valid JSON") from None


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"holds {type(v).__name__}, not text")
    return v


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"holds {type(v).__name__}, not a whole number")
    return v


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise ValueError(f"holds {type(v).__name__}, not a number")
    return v


def _bool(v: Any) -> bool:
    if v not in (0, 1):
        raise ValueError("holds something other than 0 or 1")
    return bool(v)


def _state(v: Any) -> State:
    if v not in _STATES:
        raise ValueError(f"holds {str(v)[:40]!r}, not a state")
    return _STATES[v]


def _strs(v: Any) -> list[str]:
    if v == "[]":
        return []
    value = _json(v)
    if not (isinstance(value, list) and all(isinstance(x, str) for x in value)):
        raise ValueError("is not a JSON array of strings")
    return value


def _dicts(v: Any) -> list[dict[str, Any]]:
    value = _json(v)
    if not (isinstance(value, list) and all(isinstance(x, dict) for x in value)):
        raise ValueError("is not a JSON array of objects")
    return value


# Each column kind's reader: the value as the model holds it, or ValueError saying what is wrong.
_READERS: dict[str, Callable[[Any], Any]] = {
    "text": _text, "int": _int, "num": _num, "bool": _bool, "state": _state, "json": _json, "strs": _strs,
    "dicts": _dicts,
}


def _nullable(read: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else read(v)


# The exact types a value of a plain kind has when it reads as itself (bool is no number, and NaN
# is refused apart); the other kinds convert their value, so their reader runs.
_PLAIN: dict[str, tuple[type, ...]] = {"text": (str,), "int": (int,), "num": (int, float)}
_TASK_VALUES = itemgetter(*TASK_COLUMNS)
_PLAIN_TYPES = [frozenset(_PLAIN[kind] + ((type(None),) if nullable else ())) if kind in _PLAIN else None
                for kind, nullable in TASK_COLUMNS.values()]
_NUMBERS = itemgetter(*[i for i, (kind, _) in enumerate(TASK_COLUMNS.values()) if kind == "num"])
_CONVERTED = [(col, _nullable(_READERS[kind]) if nullable else _READERS[kind])
              for col, (kind, nullable) in TASK_COLUMNS.items() if kind not in _PLAIN]
_READABLE_TYPES: set[tuple[type, ...]] = set()  # the column types of rows whose plain columns all read


def _task_values(row: dict[str, Any]) -> dict[str, Any]:
    """Every task column as the model holds it; ValueError when one cannot be read (or may not:
    read_column then decides, one column at a time). The plain columns are checked by the row's
    tuple of value types, remembered once it has passed."""
    values = _TASK_VALUES(row)
    types = tuple(map(type, values))
    if types not in _READABLE_TYPES:
        if not all(ok is None or t in ok for t, ok in zip(types, _PLAIN_TYPES)):
            raise ValueError("a column holds a value of another type")
        if len(_READABLE_TYPES) < 10_000:
            _READABLE_TYPES.add(types)
    total = fsum(filter(None, _NUMBERS(values)))  # NaN if one is; OverflowError or ValueError on infinities
    if total != total:
        raise ValueError("a number column holds NaN")
    d = dict(zip(TASK_COLUMNS, values))
    for col, read in _CONVERTED:
        d[col] = read(d[col])
    return d


def read_column(row: Row, key: str, task_id: Any = None, column: str | None = None) -> Any:
    """Task column `column` (default: `key`) read from `row[key]` as the model holds it;
    CorruptRow naming the task and the column if it cannot be."""
    col = column or key
    kind, nullable = TASK_COLUMNS[col]
    v = row[key]
    if v is None and nullable:
        return None
    try:
        return _READERS[kind](v)
    except ValueError as exc:
        tid = task_id if isinstance(task_id, str) else None
        raise CorruptRow(
            f"task {tid or '(unknown id)'} cannot be read: its column {col} {exc}. "
            "Run `mcp-tasks verify`, then repair or restore that row",
            task_id=tid, column=col, reason=str(exc),
        ) from None


def task_from_row(row: Row, depends_on: list[str], blocks: list[str] | None = None) -> Task:
    """A Task from a `tasks` row and its dependency lists; CorruptRow if a column is unreadable."""
    if not isinstance(row, dict):  # sqlite3.Row finds a name by comparing it with each column's in turn
        row = dict(zip(row.keys(), cast(Iterable[Any], row)))
    tid = row["id"]
    try:
        d = _task_values(row)
    except (ValueError, OverflowError):
        d = {col: read_column(row, col, tid) for col in TASK_COLUMNS}  # raises, naming the column
    d["usage"] = _USAGE.model_copy(
        update={"tokens": d.pop("usage_tokens"), "api_calls": d.pop("usage_api_calls"), "cost": d.pop("usage_cost")}
    )
    d["depends_on"] = depends_on
    d["blocks"] = blocks or []
    return _TASK.model_copy(update=d)


def _blank(model: type[M]) -> M:
    """An instance with every field present (None). Its copies, every field replaced by a value
    already checked, are what model_construct builds, in a third of the time."""
    return model.model_construct(**dict.fromkeys(model.model_fields))


_TASK, _USAGE, _EVENT = _blank(Task), _blank(Usage), _blank(Event)


def task_params(task: Task) -> dict[str, Any]:
    """Named parameters for insert_task / update_task."""
    return {
        "id": task.id,
        "title": task.title,
        "description": task.description,
        "type": task.type,
        "priority": task.priority,
        "tags": dumps(task.tags),
        "state": task.state.value,
        "assignee": task.assignee,
        "created_at": task.created_at,
        "assigned_at": task.assigned_at,
        "started_at": task.started_at,
        "completed_at": task.completed_at,
        "retry_count": task.retry_count,
        "max_retries": task.max_retries,
        "error_log": dumps(task.error_log),
        "checkpoint_data": None if task.checkpoint_data is None else dumps(task.checkpoint_data),
        "checkpoint_note": task.checkpoint_note,
        "progress": task.progress,
        "checkpoint_timestamp": task.checkpoint_timestamp,
        "cycle_time": task.cycle_time,
        "wait_time": task.wait_time,
        "work_time": task.work_time,
        "result": None if task.result is None else dumps(task.result),
        "artifacts": dumps(task.artifacts),
        "version": task.version,
        "schema_version": task.schema_version,
        "created_by": task.created_by,
        "requires_review": int(task.requires_review),
        "reviewer": task.reviewer,
        "lease_hash": task.lease_hash,
        "lease_expires_at": task.lease_expires_at,
        "lease_seconds": task.lease_seconds,
        "not_before": task.not_before,
        "unmet_deps": task.unmet_deps,
        "usage_tokens": task.usage.tokens,
        "usage_api_calls": task.usage.api_calls,
        "usage_cost": task.usage.cost,
        "updated_at": task.updated_at,
        "lease_end": task.lease_end,
    }


def event_from_row(row: Row) -> Event:
    """An Event from an `events` row. A column it cannot read leaves `error` set (naming the
    column) instead of raising, so one bad event never stops a reader of the log."""
    return _EVENT.model_copy(update=event_record(tuple(row[col] for col in EVENT_COLUMNS))._asdict())


# The columns of an event, in the order event_record takes their values (and events_of_tasks reads them).
EVENT_COLUMNS = ("seq", "task_id", "type", "from_state", "to_state", "actor", "at", "data")


def event_record(values: Sequence[Any]) -> EventRecord:
    """An event's column values, in EVENT_COLUMNS order, as an EventRecord, read as
    event_from_row reads a row."""
    try:
        return _record(values, _json(values[-1]))
    except ValueError:
        return _unreadable_event(dict(zip(EVENT_COLUMNS, values)))


def event_records(rows: Sequence[Sequence[Any]]) -> list[EventRecord]:
    """Events' column values (EVENT_COLUMNS order) as EventRecords, each read as event_record
    reads it. Their data is parsed as one JSON array, which shares the key strings of all of
    them (a fifth less time than one parse each); if that array is not exactly one value per
    event, each is read on its own."""
    try:
        data = _scan("[" + ",".join([r[-1] for r in rows]) + "]", 0)[0]  # TypeError: some data is not text
    except (TypeError, StopIteration, ValueError, RecursionError):
        data = None
    if data is None or len(data) != len(rows):  # a piece that is not one whole value
        return [event_record(r) for r in rows]
    out = []
    for r, d in zip(rows, data):
        try:
            out.append(_record(r, d))
        except ValueError:
            out.append(_unreadable_event(dict(zip(EVENT_COLUMNS, r))))
    return out


def _record(values: Sequence[Any], data: Any) -> EventRecord:
    """The EventRecord of `values` with their data already parsed; ValueError if a column
    cannot be read as _READERS read it. Values are taken by position: verify reads millions."""
    seq, task_id, kind, before, after, actor, at, _ = values
    try:
        if (type(data) is dict and type(task_id) is str and type(kind) is str and type(actor) is str
                and (type(at) is float or type(at) is int) and at == at):
            return _new_record(EventRecord, (seq, task_id, kind, None if before is None else _STATES[before],
                                             None if after is None else _STATES[after], actor, at, data, None))
    except (KeyError, TypeError):
        pass
    raise ValueError("a column cannot be read")


def _unreadable_event(row: dict[str, Any]) -> EventRecord:
    """A row some column of which cannot be read: `error` names every such column."""
    problems: list[str] = []

    def read(col: str, kind: str, nullable: bool = False, default: Any = None) -> Any:
        v = row[col]
        if v is None and nullable:
            return None
        try:
            return _READERS[kind](v)
        except ValueError as exc:
            problems.append(f"column {col} {exc}")
            return default

    data = read("data", "json", default={})
    if not isinstance(data, dict):
        problems.append("column data is not a JSON object")
        data = {}
    return EventRecord(
        seq=row["seq"],
        task_id=read("task_id", "text", default="?"),
        type=read("type", "text", default="?"),
        from_state=read("from_state", "state", nullable=True),
        to_state=read("to_state", "state", nullable=True),
        actor=read("actor", "text", default="?"),
        at=read("at", "num", default=0.0),
        data=data,
        error="; ".join(problems) or None,
    )


def seq_runs(breaks: Iterable[tuple[Any, Any]], last: int, high: int, limit: int) -> list[SeqRun]:
    """The wrong runs of the event sequence, from (previous seq, seq) for each event whose seq is
    not one more than the one before it (previous 0 for the first event, or the seq a check of the
    later events starts after), in seq order; `last` is the highest seq present (or that seq, when
    higher) and `high` the highest ever handed out. At most `limit` runs."""
    runs: list[SeqRun] = []
    for prev, seq in breaks:
        if not isinstance(seq, int) or not isinstance(prev, int):
            continue
        if seq < 1:
            runs.append(SeqRun(seq, seq, "unexpected", 1))
        elif seq == prev:
            if runs and runs[-1].problem == "repeated" and runs[-1].first == seq:
                runs[-1] = runs[-1]._replace(size=runs[-1].size + 1)
            else:
                runs.append(SeqRun(seq, seq, "repeated", 2))
        elif seq > max(prev, 0) + 1:
            low = max(prev, 0) + 1
            runs.append(SeqRun(low, seq - 1, "missing", seq - low))
    if high > last:
        runs.append(SeqRun(last + 1, high, "missing", high - last))
    return runs[:limit]
