"""Server-side SVG for the web board: a task's dependency graph and small time-series charts.

Every function returns inline SVG markup as a string (no scripts). Text that comes from data is
XML-escaped. Colours come from CSS classes (`st-<STATE>` for states, `series-<i>` for chart lines)
with fallback attributes for when the page stylesheet is missing. Same input, same bytes.
"""

from __future__ import annotations

import hashlib
import html
import math
import time
from collections.abc import Callable
from typing import NamedTuple

from ..display import short

STATE_FILL: dict[str, str] = {
    "BACKLOG": "#c5cbd3", "PENDING": "#6a7fb5", "ASSIGNED": "#e0a526", "ACTIVE": "#2f7fd8",
    "PAUSED": "#9aa0a6", "REVIEW": "#8e5bc8", "APPROVED": "#1a9c95", "DONE": "#2e9e5b",
    "FAILED": "#d64541", "CANCELLED": "#4b5058",
}
SERIES_COLOURS = ("#2f7fd8", "#e0a526", "#2e9e5b", "#d64541", "#8e5bc8", "#1a9c95")
_OTHER, _INK, _MUTED, _RULE, _EDGE = "#9aa0a6", "#1f2933", "#5f6b7a", "#e3e7ec", "#8893a0"
_FONT = 'font-family="system-ui,-apple-system,Segoe UI,sans-serif"'
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)

# Dependency graph geometry.
NODE_W, NODE_H, COL_GAP, ROW_GAP, PAD, HEAD, BULGE = 210, 46, 64, 12, 12, 24, 36
# Chart margins around the plot area.
_LEFT, _TOP, _RIGHT, _BOTTOM, _LEGEND = 56, 30, 22, 22, 18


class GraphNode(NamedTuple):
    """One task in a dependency graph.

    `depth` 0 is the task in focus; -1 and -2 are its dependencies (1 and 2 hops up);
    +1 and +2 are tasks that depend on it.
    """

    id: str
    title: str
    state: str
    depth: int


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _n(v: float) -> str:
    """A coordinate: at most one decimal, no trailing zeros."""
    text = f"{v:.1f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _state_class(state: str) -> str:
    return "st-" + "".join(c for c in state if c.isalnum() or c in "_-")


def _hhmm(x: float) -> str:
    return time.strftime("%H:%M", time.gmtime(x))


def _svg(w: float, h: float, label: str, body: list[str], kind: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_n(w)} {_n(h)}" width="{_n(w)}" '
        f'height="{_n(h)}" role="img" aria-label="{_e(label)}" class="board-svg {kind}" {_FONT} '
        f'font-size="12" style="max-width:100%;height:auto"><title>{_e(label)}</title>'
        + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, text: str, cls: str, *, anchor: str = "start", size: int = 11, fill: str = _MUTED) -> str:
    a = "" if anchor == "start" else f' text-anchor="{anchor}"'
    return f'<text x="{_n(x)}" y="{_n(y)}" class="{cls}"{a} font-size="{size}" fill="{fill}">{_e(text)}</text>'


def dependency_graph(nodes: list[GraphNode], edges: list[tuple[str, str]], focus: str, *,
                     href: Callable[[str], str] = lambda i: f"/tasks/{i}",
                     more: dict[int, int] | None = None) -> str:
    """A task's neighbourhood as SVG: columns by depth, dependencies on the left, dependents right.

    `edges` are (task_id, depends_on) pairs; each is drawn as an arrow from the dependency to the
    dependent, and skipped unless both ends are among `nodes`. Every node except `focus` links to
    `href(id)`; the focus node has a thicker outline (class `focus`). `more` maps a depth to the
    number of nodes left out of that column, shown as "+N more" below it. Each node group carries
    `data-id`, `data-depth`, `data-x` and `data-y`.
    """
    if not nodes:
        empty = _text(90, 24, "no dependencies", "empty", anchor="middle", size=12)
        return _svg(180, 40, "no dependencies", [empty], "dep-graph")
    extra = {d: n for d, n in sorted((more or {}).items()) if n > 0}
    depths = sorted({n.depth for n in nodes} | set(extra))
    col_x = {d: PAD + i * (NODE_W + COL_GAP) for i, d in enumerate(depths)}
    rows = dict.fromkeys(depths, 0)
    pos: dict[str, tuple[float, float]] = {}
    placed: list[tuple[GraphNode, float, float]] = []
    for node in nodes:
        if node.id in pos:
            continue  # the same task twice: draw it once
        cx, cy = float(col_x[node.depth]), float(PAD + HEAD + rows[node.depth] * (NODE_H + ROW_GAP))
        rows[node.depth] += 1
        pos[node.id] = (cx, cy)
        placed.append((node, cx, cy))

    arrow = "dep-arrow-" + hashlib.sha1(focus.encode()).hexdigest()[:8]
    body = [f'<defs><marker id="{arrow}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
            f'orient="auto"><path d="M0,0L10,5L0,10z" fill="{_EDGE}"/></marker></defs>']
    bulge, seen = False, set()
    for task, dep in edges:
        if task not in pos or dep not in pos or task == dep or (task, dep) in seen:
            continue
        seen.add((task, dep))
        (fx, fy), (tx, ty) = pos[dep], pos[task]
        y1, y2 = fy + NODE_H / 2, ty + NODE_H / 2
        if fx < tx:  # the usual case: left to right
            x1, x2 = fx + NODE_W, tx
            c1, c2 = x1 + max(24.0, (x2 - x1) / 2), x2 - max(24.0, (x2 - x1) / 2)
        elif fx == tx:  # same column: loop out to the right
            x1 = x2 = fx + NODE_W
            c1 = c2 = x1 + BULGE
            bulge = bulge or fx == col_x[depths[-1]]
        else:
            x1, x2 = fx, tx + NODE_W
            c1, c2 = x1 - max(24.0, (x1 - x2) / 2), x2 + max(24.0, (x1 - x2) / 2)
        body.append(
            f'<path class="edge" data-from="{_e(dep)}" data-to="{_e(task)}" d="M{_n(x1)},{_n(y1)} '
            f'C{_n(c1)},{_n(y1)} {_n(c2)},{_n(y2)} {_n(x2)},{_n(y2)}" fill="none" stroke="{_EDGE}" '
            f'stroke-width="1.5" marker-end="url(#{arrow})"/>'
        )

    for d in depths:
        head = "this task" if d == 0 else "depends on" if d < 0 else "needed by"
        body.append(_text(col_x[d] + NODE_W / 2, PAD + 12, head, "col-head", anchor="middle"))
        if d in extra:
            below = PAD + HEAD + rows[d] * (NODE_H + ROW_GAP) + 8
            body.append(_text(col_x[d] + NODE_W / 2, below, f"+{extra[d]} more", "more", anchor="middle"))
    for node, x, y in placed:
        colour, is_focus = STATE_FILL.get(node.state, _OTHER), node.id == focus
        cls = _state_class(node.state) + (" focus" if is_focus else "")
        shown_id = node.id if len(node.id) <= 16 else short(node.id, 16)
        inner = (
            f'<rect x="{_n(x)}" y="{_n(y)}" width="{NODE_W}" height="{NODE_H}" rx="6" class="{cls}" '
            f'fill="{colour}" fill-opacity="0.18" stroke="{colour}" stroke-width="{3 if is_focus else 1.2}"/>'
            + _text(x + 10, y + 17, shown_id, "node-id", size=10)
            + _text(x + NODE_W - 10, y + 17, node.state, "node-state", anchor="end", size=10)
            + _text(x + 10, y + 35, short(node.title, 28), "node-title", size=12, fill=_INK)
        )
        if not is_focus:
            inner = f'<a href="{_e(href(node.id))}">{inner}</a>'
        body.append(
            f'<g class="node" data-id="{_e(node.id)}" data-depth="{node.depth}" data-x="{_n(x)}" '
            f'data-y="{_n(y)}"><title>{_e(f"{node.id}: {node.title} ({node.state})")}</title>{inner}</g>'
        )
    width = 2 * PAD + len(depths) * NODE_W + (len(depths) - 1) * COL_GAP + (BULGE if bulge else 0)
    tallest = max(rows[d] * (NODE_H + ROW_GAP) + (16 if d in extra else 0) for d in depths)
    return _svg(width, PAD + HEAD + tallest + PAD, f"dependencies of {focus}", body, "dep-graph")


def _num(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return _num(v / 1e6) + "M"
    if a >= 1e4:
        return _num(v / 1e3) + "k"
    text = f"{v:.{3 if a < 1 else 2 if a < 10 else 1 if a < 100 else 0}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text == "-0" else text


def _fmt(v: float, unit: str) -> str:
    """A value for a label: seconds as ms/s/min/h, other units as a number with the unit."""
    if v == 0 or unit != "s":
        return f"{_num(v)} {unit}".rstrip() if v else "0"
    a = abs(v)
    scale, unit = (1000, "ms") if a < 1 else (1, "s") if a < 60 else (1 / 60, "min") if a < 3600 else (1 / 3600, "h")
    return f"{_num(v * scale)} {unit}"


def _nice_step(top: float, seconds: bool) -> float:
    raw = (top if top > 0 and math.isfinite(top) else 1.0) / 4
    if seconds and 1 <= raw <= 86400:
        return float(next(s for s in _TIME_STEPS if s >= raw))
    if seconds and raw > 86400:
        return 3600 * _nice_step(raw * 4 / 3600, False)
    mag = 10.0 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))


def _box(width: int, height: int, legend: bool) -> tuple[float, float, float, float]:
    bottom = _BOTTOM + (_LEGEND if legend else 0)
    return _LEFT, _TOP, max(width - _LEFT - _RIGHT, 10.0), max(height - _TOP - bottom, 10.0)


def _chart(title: str, width: int, height: int, parts: list[str]) -> str:
    head = _text(_LEFT, 18, title, "chart-title", size=13, fill=_INK)
    return _svg(width, height, title, [head, *parts], "chart")


def _no_data(title: str, width: int, height: int) -> str:
    l, t, w, h = _box(width, height, False)
    frame = f'<rect class="frame" x="{_n(l)}" y="{_n(t)}" width="{_n(w)}" height="{_n(h)}" fill="none" stroke="{_RULE}"/>'
    note = _text(l + w / 2, t + h / 2 + 4, "no data yet", "empty", anchor="middle", size=12)
    return _chart(title, width, height, [frame, note])


def _axes(box: tuple[float, float, float, float], ymax: float, unit: str, px: list[float],
          xs: list[float], x_label: Callable[[float], str], whole: bool = False) -> tuple[list[str], float]:
    """Grid lines with y labels from 0, a baseline, up to six x labels; returns them and the top value.

    `whole`: the values are counts, so ticks are whole numbers.
    """
    l, t, w, h = box
    step = _nice_step(ymax, unit == "s")
    step = max(step, 1.0) if whole else step
    n = max(1, math.ceil(ymax / step - 1e-9))
    top, parts = n * step, []
    for i in range(n + 1):
        y = t + h - i / n * h
        parts.append(f'<line class="grid" x1="{_n(l)}" x2="{_n(l + w)}" y1="{_n(y)}" y2="{_n(y)}" stroke="{_RULE}"/>')
        parts.append(_text(l - 6, y + 4, _fmt(i * step, unit), "tick y-tick", anchor="end", size=10))
    parts.append(f'<line class="axis" x1="{_n(l)}" x2="{_n(l + w)}" y1="{_n(t + h)}" y2="{_n(t + h)}" stroke="{_MUTED}"/>')
    for i in range(0, len(xs), max(1, math.ceil(len(xs) / 6))):
        parts.append(_text(px[i], t + h + 14, x_label(xs[i]), "tick x-tick", anchor="middle", size=10))
    return parts, top


def _spread(xs: list[float], l: float, w: float) -> list[float]:
    """x positions: by value when the xs span a range, else evenly (one point: centred)."""
    span = xs[-1] - xs[0] if xs else 0
    if span > 0:
        return [l + (x - xs[0]) / span * w for x in xs]
    return [l + (i / (len(xs) - 1) * w if len(xs) > 1 else w / 2) for i in range(len(xs))]


def _legend(items: list[tuple[str, str]], l: float, y: float) -> list[str]:
    """(swatch markup with {x}, {x2}, {y}, {top} placeholders, label) pairs laid out left to right."""
    parts, x = [], l
    for swatch, label in items:
        parts.append(swatch.format(x=_n(x), x2=_n(x + 12), y=_n(y - 4), top=_n(y - 9)))
        parts.append(_text(x + 16, y, label, "legend", size=10))
        x += 30 + 6 * len(label)
    return parts


def line_chart(title: str, xs: list[float], series: dict[str, list[float | None]], *, unit: str = "",
               x_label: Callable[[float], str] = _hhmm, width: int = 640, height: int = 200) -> str:
    """Lines over `xs` (ascending), one per series (values aligned with xs; None breaks the line).

    Y ticks start at 0 and are labelled with `unit` ("s" reads as ms/s/min/h); x ticks use
    `x_label` (default UTC "HH:MM"). Every value None, or no xs: a frame saying "no data yet".
    """
    clean = {name: [v if v is not None and math.isfinite(v) else None for v in (list(vals) + [None] * len(xs))[: len(xs)]]
             for name, vals in series.items()}
    values = [v for vals in clean.values() for v in vals if v is not None]
    if not values:
        return _no_data(title, width, height)
    box = l, t, w, h = _box(width, height, True)
    px = _spread(xs, l, w)
    parts, top = _axes(box, max(max(values), 0.0), unit, px, xs, x_label)
    legend = []
    for i, (name, vals) in enumerate(clean.items()):
        colour, segment = SERIES_COLOURS[i % len(SERIES_COLOURS)], []
        for x, v in [*zip(px, vals), (0.0, None)]:
            if v is not None:
                segment.append(f"{_n(x)},{_n(t + h - v / top * h)}")
            elif segment:
                d = "M" + " L".join(segment) if len(segment) > 1 else f"M{segment[0]}h0"
                parts.append(f'<path class="line series-{i}" d="{d}" fill="none" stroke="{colour}" '
                             'stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>')
                segment = []
        legend.append((f'<line class="series-{i}" x1="{{x}}" x2="{{x2}}" y1="{{y}}" y2="{{y}}" '
                       f'stroke="{colour}" stroke-width="3"/>', name))
    return _chart(title, width, height, parts + _legend(legend, l, height - 6))


def bar_chart(title: str, xs: list[float], values: list[float], *, unit: str = "",
              x_label: Callable[[float], str] = _hhmm, width: int = 640, height: int = 200) -> str:
    """Vertical bars, one per x, each with a tooltip giving its x label and value.

    Axes as in `line_chart`; no values: a frame saying "no data yet".
    """
    n = min(len(xs), len(values))
    if n == 0:
        return _no_data(title, width, height)
    vals = [v if math.isfinite(v) else 0.0 for v in values[:n]]
    box = l, t, w, h = _box(width, height, False)
    band = w / n
    px = [l + band * (i + 0.5) for i in range(n)]
    parts, top = _axes(box, max(max(vals), 0.0), unit, px, xs[:n], x_label)
    bar_w = max(1.0, band * 0.7)
    for x, c, v in zip(xs, px, vals):
        bh = max(0.0, v) / top * h
        parts.append(f'<rect class="bar" x="{_n(c - bar_w / 2)}" y="{_n(t + h - bh)}" width="{_n(bar_w)}" '
                     f'height="{_n(bh)}" fill="{SERIES_COLOURS[0]}"><title>{_e(x_label(x))}: '
                     f'{_e(_fmt(v, unit))}</title></rect>')
    return _chart(title, width, height, parts)


def stacked_area(title: str, xs: list[float], layers: dict[str, list[float]], *,
                 x_label: Callable[[float], str] = _hhmm, width: int = 640, height: int = 200) -> str:
    """Counts per state as areas stacked in the dict's order (first at the bottom), with a legend.

    Keys are state names; each area has the class `st-<NAME>`. Y ticks are whole numbers from 0.
    No xs or no layers: a frame saying "no data yet".
    """
    n = len(xs)
    if n == 0 or not layers:
        return _no_data(title, width, height)
    box = l, t, w, h = _box(width, height, True)
    px = _spread(xs, l, w)
    below, stacks = [0.0] * n, []
    for name, vals in layers.items():
        row = [max(0.0, v) if math.isfinite(v) else 0.0 for v in (list(vals) + [0.0] * n)[:n]]
        above = [a + b for a, b in zip(below, row)]
        stacks.append((name, below, above))
        below = above
    parts, top = _axes(box, max(below), "", px, xs, x_label, whole=True)
    legend = []
    for name, lower, upper in stacks:
        cls, colour = _state_class(name), STATE_FILL.get(name, _OTHER)
        pts = [f"{_n(x)},{_n(t + h - v / top * h)}" for x, v in zip(px, upper)]
        pts += [f"{_n(x)},{_n(t + h - v / top * h)}" for x, v in reversed(list(zip(px, lower)))]
        parts.append(f'<path class="area {cls}" d="M{" L".join(pts)}Z" fill="{colour}"><title>{_e(name)}'
                     '</title></path>')
        legend.append((f'<rect class="{cls}" x="{{x}}" y="{{top}}" width="12" height="10" rx="2" '
                       f'fill="{colour}"/>', name))
    return _chart(title, width, height, parts + _legend(legend, l, height - 6))
