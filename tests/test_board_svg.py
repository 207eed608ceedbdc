"""The board's SVG: what a person looking at the graph and the charts relies on."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from mcp_tasks.board.svg import GraphNode, bar_chart, dependency_graph, line_chart, stacked_area

NS = "{http://www.w3.org/2000/svg}"
HOUR = 3600.0


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img" and root.get("aria-label") and root.get("viewBox")
    assert root[0].tag == f"{NS}title"
    return root


def node_groups(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-id", ""): g for g in root.iter(f"{NS}g") if g.get("data-id") is not None}


def edge_paths(root: ET.Element) -> list[ET.Element]:
    return [p for p in root.iter(f"{NS}path") if "edge" in (p.get("class") or "").split()]


def texts(root: ET.Element, cls: str = "") -> list[str]:
    return [t.text or "" for t in root.iter(f"{NS}text") if cls in (t.get("class") or "").split() or not cls]


def neighbourhood() -> tuple[list[GraphNode], list[tuple[str, str]]]:
    nodes = [
        GraphNode("t-up2", "Root dependency", "DONE", -2),
        GraphNode("t-up1", "Direct dependency", "APPROVED", -1),
        GraphNode("t-focus", "The task in focus", "ACTIVE", 0),
        GraphNode("t-down1", "Needs the focus", "PENDING", 1),
        GraphNode("t-down2", "Needs that one", "BACKLOG", 2),
    ]
    edges = [
        ("t-up1", "t-up2"),
        ("t-focus", "t-up1"),
        ("t-down1", "t-focus"),
        ("t-down2", "t-down1"),
        ("t-focus", "t-not-shown"),  # the dependency is not among the nodes
        ("t-elsewhere", "t-focus"),  # nor is the dependent
    ]
    return nodes, edges


def test_graph_links_every_node_but_the_focus() -> None:
    nodes, edges = neighbourhood()
    root = parse(dependency_graph(nodes, edges, "t-focus", href=lambda i: f"/board/tasks/{i}"))
    hrefs = {a.get("href") for a in root.iter(f"{NS}a")}
    assert hrefs == {f"/board/tasks/{n.id}" for n in nodes if n.id != "t-focus"}
    groups = node_groups(root)
    assert set(groups) == {n.id for n in nodes}
    focus_rects = [r for r in groups["t-focus"].iter(f"{NS}rect")]
    assert len(focus_rects) == 1 and "focus" in (focus_rects[0].get("class") or "").split()
    assert "st-ACTIVE" in (focus_rects[0].get("class") or "").split()


def test_graph_escapes_titles_and_ids() -> None:
    nasty_id = 't-a&b"c\'d<e>'
    nodes = [
        GraphNode(nasty_id, "<script>alert(1)</script>", "FAILED", -1),
        GraphNode("t-focus", 'Say "hi" & <b>bye</b>', "REVIEW", 0),
    ]
    svg = dependency_graph(nodes, [("t-focus", nasty_id)], "t-focus")
    assert "<script>" not in svg and "<b>" not in svg
    root = parse(svg)
    assert set(node_groups(root)) == {nasty_id, "t-focus"}
    assert [a.get("href") for a in root.iter(f"{NS}a")] == [f"/tasks/{nasty_id}"]
    assert "<script>alert(1)</script>" in "".join(root.itertext())
    [edge] = edge_paths(root)
    assert edge.get("data-from") == nasty_id and edge.get("data-to") == "t-focus"


def test_graph_draws_one_path_per_edge_between_present_nodes() -> None:
    nodes, edges = neighbourhood()
    svg = dependency_graph(nodes, edges, "t-focus")
    paths = edge_paths(parse(svg))
    assert [(p.get("data-from"), p.get("data-to")) for p in paths] == [
        ("t-up2", "t-up1"), ("t-up1", "t-focus"), ("t-focus", "t-down1"), ("t-down1", "t-down2"),
    ]
    assert all((p.get("d") or "").startswith("M") and " C" in (p.get("d") or "") for p in paths)
    assert all((p.get("marker-end") or "").startswith("url(#") for p in paths)
    assert "t-not-shown" not in svg and "t-elsewhere" not in svg
    assert svg.index('class="edge"') < svg.index('class="node"')  # edges under the nodes


def test_dependencies_sit_left_of_dependents() -> None:
    nodes, edges = neighbourhood()
    groups = node_groups(parse(dependency_graph(nodes, edges, "t-focus")))
    x = {i: float(g.get("data-x") or "nan") for i, g in groups.items()}
    assert x["t-up2"] < x["t-up1"] < x["t-focus"] < x["t-down1"] < x["t-down2"]
    for task, dep in edges[:4]:
        assert x[dep] < x[task]


def test_graph_stacks_a_column_in_the_given_order_and_heads_columns() -> None:
    nodes = [GraphNode("t-focus", "F", "ACTIVE", 0)] + [GraphNode(f"t-d{i}", f"D{i}", "PENDING", 1) for i in range(3)]
    root = parse(dependency_graph(nodes, [], "t-focus"))
    groups = node_groups(root)
    ys = [float(groups[f"t-d{i}"].get("data-y") or "nan") for i in range(3)]
    assert ys == sorted(ys) and len(set(ys)) == 3
    assert len({groups[f"t-d{i}"].get("data-x") for i in range(3)}) == 1
    assert texts(root, "col-head") == ["this task", "needed by"]


def test_long_titles_are_cut_with_the_full_title_in_a_tooltip() -> None:
    title = "A very long task title that goes on and on and on"
    root = parse(dependency_graph([GraphNode("t-focus", title, "PAUSED", 0)], [], "t-focus"))
    shown = texts(root, "node-title")
    assert len(shown) == 1 and shown[0].endswith("…") and len(shown[0]) <= 30
    tips = [t.text or "" for g in node_groups(root).values() for t in g.iter(f"{NS}title")]
    assert any(title in tip for tip in tips)


def test_more_shows_how_many_were_left_out() -> None:
    nodes, edges = neighbourhood()
    root = parse(dependency_graph(nodes, edges, "t-focus", more={1: 3, -1: 0}))
    assert texts(root, "more") == ["+3 more"]


def test_empty_graph_says_so() -> None:
    svg = dependency_graph([], [], "t-focus")
    parse(svg)
    assert "no dependencies" in svg


def test_a_gap_breaks_the_line() -> None:
    xs = [i * HOUR for i in range(5)]
    root = parse(line_chart("Wait", xs, {"p50": [1, 2, None, 3, 4], "p95": [2, 3, 4, 5, 6]}))
    lines = lambda i: [p for p in root.iter(f"{NS}path") if f"series-{i}" in (p.get("class") or "").split()]  # noqa: E731
    assert len(lines(0)) == 2 and len(lines(1)) == 1
    assert all((p.get("d") or "").count("M") == 1 for p in lines(0))
    assert {"p50", "p95"} <= set(texts(root, "legend"))


def test_seconds_read_as_minutes_and_hours() -> None:
    xs = [i * HOUR for i in range(4)]
    root = parse(line_chart("Wait", xs, {"p50": [10, 45, 80, 110]}, unit="s"))
    ticks = texts(root, "y-tick")
    assert ticks[0] == "0" and "2 min" in ticks and 4 <= len(ticks) <= 5
    root = parse(bar_chart("Run time", xs, [600, 3000, 7000, 100], unit="s"))
    assert "1 h" in texts(root, "y-tick")
    ticks = texts(parse(line_chart("Fast", xs, {"a": [0.1, 0.2, 1.4, 0.3]}, unit="s")), "y-tick")
    assert "0.5 s" in ticks or "500 ms" in ticks
    assert texts(parse(bar_chart("Count", xs, [1, 2, 3, 7], unit="tasks")), "y-tick")[1:] == ["2 tasks", "4 tasks", "6 tasks", "8 tasks"]


def test_x_labels_are_at_most_six_and_utc_by_default() -> None:
    xs = [i * HOUR for i in range(24)]
    ticks = texts(parse(line_chart("Day", xs, {"a": [float(i) for i in range(24)]})), "x-tick")
    assert 1 < len(ticks) <= 6 and ticks[0] == "00:00"


def test_bars_have_tooltips() -> None:
    xs = [0.0, HOUR, 2 * HOUR]
    root = parse(bar_chart("Done", xs, [3, 0, 5], unit="s", x_label=lambda x: f"h{int(x // HOUR)}"))
    tips = [t.text for r in root.iter(f"{NS}rect") if r.get("class") == "bar" for t in r.iter(f"{NS}title")]
    assert tips == ["h0: 3 s", "h1: 0", "h2: 5 s"]


def test_stacked_area_uses_state_classes() -> None:
    xs = [0.0, HOUR, 2 * HOUR]
    svg = stacked_area("Queue", xs, {"DONE": [1, 2, 3], "FAILED": [0, 1, 0], "<x>": [1, 1, 1]})
    root = parse(svg)
    areas = [p for p in root.iter(f"{NS}path") if "area" in (p.get("class") or "").split()]
    assert [a.get("class") for a in areas] == ["area st-DONE", "area st-FAILED", "area st-x"]
    assert all(a.get("fill", "").startswith("#") for a in areas)
    assert texts(root, "legend") == ["DONE", "FAILED", "<x>"]


def test_no_data_yet() -> None:
    empty = [
        line_chart("Wait", [], {}),
        line_chart("Wait", [0.0, HOUR], {"p50": [None, None]}),
        bar_chart("Done", [], []),
        stacked_area("Queue", [], {}),
        stacked_area("Queue", [0.0], {}),
    ]
    for svg in empty:
        parse(svg)
        assert "no data yet" in svg


def every_output() -> list[str]:
    nodes, edges = neighbourhood()
    xs = [i * HOUR for i in range(7)]
    return [
        dependency_graph(nodes, edges, "t-focus", more={-2: 1, 1: 3, 5: 2}),
        dependency_graph(nodes + [GraphNode("t-side", "Same column", "DONE", 2)], edges + [("t-side", "t-down2")], "t-focus"),
        dependency_graph([GraphNode("a&b", "<script>alert(1)</script>", "ODD<STATE>", 0)], [], "a&b"),
        dependency_graph([], [], "t-x"),
        line_chart('Wait "p50" & <p95>', xs, {"a<b": [1, None, 3, 4, None, 6, 7], "c&d": [0.5] * 7}, unit="s"),
        line_chart("One point", [0.0], {"a": [2.0]}, unit="req"),
        line_chart("Zeros", xs, {"a": [0.0] * 7}, unit="s"),
        line_chart("Nothing", [], {"a": []}),
        bar_chart("Bars & <things>", xs, [1, 2, 3, 0, 5, 6, 70000], unit="tasks", x_label=lambda x: f"<{x}>"),
        bar_chart("Nothing", [], []),
        stacked_area("States", xs, {"PENDING": [1.0] * 7, "ACTIVE": [2.0] * 7, "DONE": [0, 1, 2, 3, 4, 5, 6]}),
        stacked_area("Nothing", [], {"DONE": []}),
    ]


def test_every_output_parses_and_never_carries_raw_markup() -> None:
    for svg in every_output():
        parse(svg)
        assert "<script>" not in svg


def test_output_is_deterministic() -> None:
    assert every_output() == every_output()
