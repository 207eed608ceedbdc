"""Rendering values for people and agents: timestamps, local dates, durations, shortened text,
plain-text tables aligned by display width (CJK, emoji), and JSON documents.

The CLI, the demo and the board use this one module, so a value looks the same everywhere.
"""

from __future__ import annotations

import json
import sys
import time
import unicodedata
from datetime import datetime, timezone
from typing import Any

from pydantic_core import to_jsonable_python

ZERO_WIDTH_JOINER = "\u200d"
EMOJI_PRESENTATION = "\ufe0f"  # variation selector 16: show the character before it as an emoji


def iso(ts: float | None, *, ms: bool = True) -> str | None:
    """Epoch seconds as ISO 8601 UTC (`Z`), with milliseconds unless `ms=False`; None stays None."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds" if ms else "seconds")
    return text.replace("+00:00", "Z")


def local(ts: float | None) -> str:
    """Epoch seconds as a date and time in the local zone (`TZ` honoured), such as
    "2026-11-30 05:12:03"; "-" for none."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def duration(seconds: float | None, *, spaced: bool = False) -> str:
    """A length of time in its two largest units, for terminals ("850ms", "4.2s", "42s", "1m 05s",
    "2h 03m", "3d 4h"; "-" for none) or `spaced` for pages ("850 ms", "4.2 s", "42 s", "1 min 5 s",
    "2 h 3 min", "3 d 4 h"; "–" for none). A negative length shows as 0."""
    if seconds is None or seconds != seconds:
        return "–" if spaced else "-"
    s = max(0.0, seconds)
    sep, minutes = (" ", " min") if spaced else ("", "m")
    if s < 1:
        return f"{s * 1000:.0f}{sep}ms"
    if s < 10:
        return f"{s:.1f}{sep}s"
    whole = int(s)
    if whole < 60:
        return f"{whole}{sep}s"
    pad = "" if spaced else "02"
    if whole < 3600:
        return f"{whole // 60}{minutes} {whole % 60:{pad}d}{sep}s"
    if whole < 86400:
        return f"{whole // 3600}{sep}h {whole % 3600 // 60:{pad}d}{minutes}"
    return f"{whole // 86400}{sep}d {whole % 86400 // 3600}{sep}h"


def relative(ts: float | None, now: float) -> str:
    """When `ts` is from `now`'s point of view: "in 4m 10s", "12s ago"; "-" for none."""
    if ts is None:
        return "-"
    return f"in {duration(ts - now)}" if ts >= now else f"{duration(now - ts)} ago"


def char_width(ch: str) -> int:
    """Columns a terminal gives one character: 2 for East Asian wide and fullwidth ones (most
    emoji among them), 0 for combining marks, joiners and other format or control characters, else 1."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf", "Cc"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _widths(text: str) -> list[int]:
    """Each character's share of the text's display width: a character joined to the one before
    it by a zero-width joiner adds nothing (one emoji sequence), and the emoji selector widens a
    narrow character before it to 2."""
    out: list[int] = []
    for i, ch in enumerate(text):
        if i and text[i - 1] == ZERO_WIDTH_JOINER:
            out.append(0)
        elif ch == EMOJI_PRESENTATION and out and out[-1] == 1 and text[i - 1] != ZERO_WIDTH_JOINER:
            out.append(1)
        else:
            out.append(char_width(ch))
    return out


def width(text: str) -> int:
    """Columns `text` takes in a terminal."""
    return sum(_widths(text))


def short(text: str, n: int = 48) -> str:
    """`text` cut to at most `n` columns of display width, with an ellipsis when cut."""
    widths = _widths(text)
    if sum(widths) <= n:
        return text
    used, end = 0, 0
    for end, w in enumerate(widths):
        if used + w > n - 1:
            break
        used += w
    return text[:end] + "…"


def pad(text: str, columns: int) -> str:
    """`text` followed by spaces up to `columns` of display width."""
    return text + " " * max(0, columns - width(text))


def table(rows: list[list[Any]], headers: list[str], indent: str = "", widths: list[int] | None = None) -> str:
    """Rows as left-aligned columns under a header and a rule, each line prefixed by `indent`;
    columns line up in a terminal also when cells hold wide characters. `widths`: the columns'
    widths so far (pages of one listing), widened in place to fit these rows."""
    cells = [headers, *([str(x) for x in r] for r in rows)]
    fit = [max(width(x) for x in col) for col in zip(*cells)]
    if widths is None:
        widths = fit
    else:
        widths[:] = [max(w, f) for w, f in zip(widths, fit)] if widths else fit
    lines = [cells[0], ["-" * w for w in widths], *cells[1:]]
    return "\n".join(indent + "  ".join(pad(x, w) for x, w in zip(line, widths)).rstrip() for line in lines)


def print_json(value: Any, *, line: bool = False) -> None:
    """Print `value` (models, lists, dicts of them) as one JSON document with the models' field
    names and JSON values; `line=True` prints it on one line, for JSON Lines streams."""
    doc = to_jsonable_python(value)
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":")) if line else json.dumps(doc, ensure_ascii=False, indent=2)
    print(text, file=sys.stdout, flush=line)
