"""Rendering values for people and agents: timestamps, shortened text, plain-text tables."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def iso(ts: float | None, *, ms: bool = True) -> str | None:
    """Epoch seconds as ISO 8601 UTC (`Z`), with milliseconds unless `ms=False`; None stays None."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds" if ms else "seconds")
    return text.replace("+00:00", "Z")


def short(text: str, n: int = 48) -> str:
    """`text` cut to at most `n` characters, with an ellipsis when cut."""
    return text if len(text) <= n else text[: n - 1] + "…"


def table(rows: list[list[Any]], headers: list[str], indent: str = "") -> str:
    """Rows as left-aligned columns under a header and a rule, each line prefixed by `indent`."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(indent + line.rstrip() for line in lines)
