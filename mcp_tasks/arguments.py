"""Checking and normalising registry arguments: everything a caller passes goes through here."""

from __future__ import annotations

import base64
import json
from typing import Any

from pydantic import BaseModel, ValidationError

from . import limits
from .errors import InvalidInput
from .models import NewTask, Task, Usage

UPDATABLE = ("title", "description", "type", "priority", "tags", "requires_review", "max_retries")


def cursor_encode(kind: str, key: tuple[Any, ...]) -> str:
    raw = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(kind: str, cursor: str | None, size: int) -> tuple[Any, ...] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        if not isinstance(data, list) or data[0] != kind or len(data) != size + 1:
            raise ValueError
        for v in data[1:]:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError
        return tuple(data[1:])
    except (ValueError, TypeError, UnicodeDecodeError, IndexError):
        raise InvalidInput("cursor is not valid here; pass back the next_cursor of the previous page unchanged") from None


def validation_message(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "value"
        parts.append(f"{where}.{loc}: {err['msg']}")
    return "; ".join(parts)


def lease(lease: Any) -> str:
    # Tokens are printable ASCII; anything else (a lone surrogate would not even hash) is not one.
    if (not isinstance(lease, str) or not lease or len(lease) > limits.MAX_LEASE_TOKEN
            or not lease.isascii() or not lease.isprintable()):
        raise InvalidInput("lease must be the lease token string returned by claim")
    return lease


def usage(usage: Any) -> Usage | None:
    if usage is None:
        return None
    try:
        u = usage if isinstance(usage, Usage) else Usage.model_validate(usage, strict=False)
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc, "usage")) from None
    limits.integer("usage.tokens", u.tokens, 0, limits.MAX_USAGE_TOKENS)
    limits.integer("usage.api_calls", u.api_calls, 0, limits.MAX_USAGE_CALLS)
    limits.number("usage.cost", u.cost, 0, limits.MAX_USAGE_COST)
    return u


def fields(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in fields.items():
        if k == "title":
            out[k] = limits.text("title", v, limits.MAX_TITLE, required=True)
        elif k == "description":
            out[k] = limits.text("description", v, limits.MAX_DESCRIPTION) or ""
        elif k == "type":
            out[k] = limits.name("type", v)
        elif k == "priority":
            out[k] = limits.integer("priority", v, limits.MIN_PRIORITY, limits.MAX_PRIORITY)
        elif k == "tags":
            out[k] = limits.names("tags", v, limits.MAX_TAGS)
        elif k == "requires_review":
            if not isinstance(v, bool):
                raise InvalidInput("requires_review must be true or false")
            out[k] = v
        elif k == "max_retries":
            out[k] = limits.integer("max_retries", v, 0, limits.MAX_RETRIES)
    return out


def batch(tasks: Any) -> list[NewTask]:
    if not isinstance(tasks, list) or not tasks:
        raise InvalidInput("tasks must be a non-empty list")
    if len(tasks) > limits.MAX_BATCH:
        raise InvalidInput(f"tasks has {len(tasks)} items; at most {limits.MAX_BATCH} per call")
    specs: list[NewTask] = []
    keys: set[str] = set()
    for i, raw in enumerate(tasks):
        where = f"tasks[{i}]"
        if isinstance(raw, NewTask):
            raw = raw.model_dump()
        if not isinstance(raw, dict):
            raise InvalidInput(f"{where} must be an object with at least a title")
        extra = sorted(set(raw) - set(NewTask.model_fields))
        if extra:
            raise InvalidInput(f"{where} has unknown fields {extra}; allowed: {', '.join(NewTask.model_fields)}")
        try:
            spec = NewTask.model_validate(raw)
        except ValidationError as exc:
            raise InvalidInput(validation_message(exc, where)) from None
        checked = fields({k: getattr(spec, k) for k in UPDATABLE})
        key = None
        if spec.key is not None:
            key = limits.name(f"{where}.key", spec.key)
            if key in keys:
                raise InvalidInput(f"{where}.key {key!r} is used twice in this batch; keys must be unique")
            keys.add(key)
        deps = spec.depends_on
        if not isinstance(deps, list) or len(deps) > limits.MAX_DEPENDS:
            raise InvalidInput(f"{where}.depends_on must be a list of at most {limits.MAX_DEPENDS} ids or keys")
        for d in deps:
            limits.name(f"{where}.depends_on item", d)
        specs.append(NewTask(key=key, depends_on=list(dict.fromkeys(deps)), **checked))
    for i, spec in enumerate(specs):
        for d in spec.depends_on:
            if d not in keys:
                limits.task_id(f"tasks[{i}].depends_on item (neither a key of this batch nor a task id)", d)
    return specs


def task_list(value: Any) -> list[Task]:
    return [Task.model_validate(v) for v in value]


def canon(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot hash {type(value).__name__}")


def encode(result: Any) -> str:
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    if isinstance(result, list):
        return "[" + ",".join(r.model_dump_json() for r in result) + "]"
    return json.dumps(result)
