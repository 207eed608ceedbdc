"""Rendering timestamps (epoch seconds) for people and agents."""

from __future__ import annotations

from datetime import datetime, timezone


def iso(ts: float | None, *, ms: bool = True) -> str | None:
    """Epoch seconds as ISO 8601 UTC (`Z`), with milliseconds unless `ms=False`; None stays None."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds" if ms else "seconds")
    return text.replace("+00:00", "Z")
