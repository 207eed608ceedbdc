"""Rendering the board's pages: one Jinja environment over the package's templates, and the
filters that turn stored values into what people read (local dates, durations, states)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import partial
from importlib import resources
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from ..display import duration
from . import svg

TEMPLATES = resources.files(__package__) / "templates"


def when(ts: float | None) -> Markup:
    """A time as a <time> element: UTC text, which the page's script shows as a local date."""
    if ts is None:
        return Markup("–")
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    iso = dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Markup(f'<time datetime="{iso}">{dt:%Y-%m-%d %H:%M:%S} UTC</time>')


def pretty(value: Any) -> str:
    """A JSON value for a <pre> block (bounded)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= 20_000 else text[:20_000] + "\n… (cut at 20,000 characters)"


def short_id(task_id: str) -> str:
    """A task id as shown in lists (ids are short already: kept whole)."""
    return task_id


def counted(n: int, noun: str) -> str:
    """`n` and the noun, plural unless n is 1: '1 task', '2,000 tasks'."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def make_environment() -> Environment:
    """The Jinja environment of the board: autoescaping, strict undefined names, our filters."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True, auto_reload=False)
    env.filters.update(when=when, dur=partial(duration, spaced=True), pretty=pretty, short_id=short_id, counted=counted)
    env.globals.update(svg=svg, escape=escape)
    return env
