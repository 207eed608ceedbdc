"""What people read: display widths of CJK, emoji and combining text, tables that line up in a
terminal, shortening by width, local dates (TZ honoured) and durations."""

from __future__ import annotations

import os
import time

import pytest

from mcp_tasks.display import duration, local, relative, short, table, width

FAMILY = "\U0001F468\u200d\U0001F469\u200d\U0001F467"  # one emoji of three joined by zero-width joiners


@pytest.mark.parametrize(("text", "columns"), [
    ("abc", 3), ("写文档", 6), ("ｆｕｌｌ", 8), ("📝", 2), ("e\u0301", 1), (FAMILY, 2), ("\u2764\ufe0f", 2),
    ("Build 👍 now", 12), ("", 0),
])
def test_display_width(text, columns):
    assert width(text) == columns


def test_tables_line_up_by_display_width():
    rows = [["t-1", "写文档 📝", "docs"], ["t-2", "plain", "code"], ["t-3", f"family {FAMILY}", "e\u0301t\u00e9"]]
    lines = table(rows, ["id", "title", "tag"]).splitlines()
    starts = {width(line[: line.index(tag)]) for line, tag in zip(lines[2:], ["docs", "code", "e\u0301t\u00e9"])}
    assert len(starts) == 1 and width(lines[0][: lines[0].index("tag")]) in starts
    assert lines[1].split() == ["---", "-" * width(f"family {FAMILY}"), "----"]


def test_short_cuts_by_width_and_never_splits_a_character():
    assert short("写文档写文档", 7) == "写文档…" and width(short("写文档写文档", 7)) == 7
    assert short("📝📝📝📝", 4) == "📝…"
    assert short("fits", 4) == "fits" and short("abcdef", 4) == "abc…"


@pytest.mark.parametrize(("seconds", "shown", "spaced"), [
    (None, "-", "–"), (float("nan"), "-", "–"), (-3, "0ms", "0 ms"), (0.0404, "40ms", "40 ms"),
    (4.24, "4.2s", "4.2 s"), (42.9, "42s", "42 s"), (65, "1m 05s", "1 min 5 s"), (7380, "2h 03m", "2 h 3 min"),
    (3 * 86400 + 4 * 3600 + 59, "3d 4h", "3 d 4 h"),
])
def test_durations_for_terminals_and_for_pages(seconds, shown, spaced):
    assert duration(seconds) == shown
    assert duration(seconds, spaced=True) == spaced


def test_local_dates_honour_tz_and_relative_times():
    saved = os.environ.get("TZ")
    try:
        for zone, shown in (("UTC", "2026-11-30 05:12:03"), ("Asia/Tokyo", "2026-11-30 14:12:03")):
            os.environ["TZ"] = zone
            time.tzset()
            assert local(1796015523.4) == shown
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()
    assert local(None) == "-"
    assert relative(1000 + 250, 1000) == "in 4m 10s" and relative(1000 - 12, 1000) == "12s ago"
