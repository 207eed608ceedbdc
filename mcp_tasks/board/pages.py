"""The board's pages: parse the query, ask the registry, render a template. Nothing here decides
what a task's state means: the registry (overview.py) reads, the templates show."""

from __future__ import annotations

import functools
import time
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..errors import InvalidInput, TaskError, TaskNotFound
from ..overview import AGENT_SAMPLE, lease_left
from ..server.app import AppState
from ..states import State
from . import svg
from .people import Person, person_of, safe_next
from .render import make_environment

ENV = make_environment()
EVENT_TYPES = ("created", "updated", "scheduled", "claimed", "started", "checkpoint", "paused", "resumed",
               "completed", "failed", "released", "lease_expired", "retried", "cancelled", "reviewed",
               "force_released")
STATUS = {"not_found": 404, "invalid_input": 400, "forbidden": 403, "role_required": 403, "rate_limited": 429,
          "busy": 503, "unavailable": 503, "read_only": 409}
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def status_of(exc: TaskError) -> int:
    """The HTTP status a refusal is answered with (409 for a change the task's state does not allow)."""
    return STATUS.get(exc.code, 409)


def render(template: str, request: Request, person: Person | None, *, status: int = 200, **context: Any) -> HTMLResponse:
    """A page, with the security headers and its render time (Server-Timing) when its route is a `page`."""
    notice = request.query_params.get("notice")
    html = ENV.get_template(template).render(person=person, notice=notice[:300] if notice else None, states=State,
                                             lease_left=lease_left, **context)
    headers = dict(SECURITY_HEADERS)
    started = getattr(request.state, "started", None)
    if started is not None:
        headers["server-timing"] = f"render;dur={(time.perf_counter() - started) * 1000:.1f}"
    return HTMLResponse(html, status_code=status, headers=headers)


def error_page(request: Request, person: Person | None, status: int, message: str, back: str = "/") -> HTMLResponse:
    """A page that says what was wrong, with a way back."""
    heading = {400: "That cannot be shown", 403: "Not allowed", 404: "Not found"}.get(status, "That did not work")
    return render("error.html", request, person, status=status, title=heading, heading=heading, message=message,
                  back=back)


def page(handler: Callable[[Pages, Request, Person], Awaitable[Response]]) -> Callable[[Pages, Request], Awaitable[Response]]:
    """A GET route for a signed-in (or local) person, timed from here for its Server-Timing; a
    person who must sign in first is sent to /login and back."""

    @functools.wraps(handler)
    async def route(self: Pages, request: Request) -> Response:
        request.state.started = time.perf_counter()
        person = await person_of(request, self.app)
        if person is None:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': here})}", status_code=303)
        return await handler(self, request, person)

    return route


class Pages:
    """GET routes of the board over one server's AppState."""

    def __init__(self, app: AppState) -> None:
        self.app = app

    @page
    async def board(self, request: Request, person: Person) -> Response:
        """/ : counts, ready queue, held work, review, dead letters, blocked work, recent events."""
        view = await self.app.registry.board()
        return render("board.html", request, person, title="Board", nav="Board", view=view,
                      last_seq=view.last_seq)

    @page
    async def tasks(self, request: Request, person: Person) -> Response:
        """/tasks : search by state, agent, type, tag and text, paged, with the number found."""
        q = request.query_params
        f = {k: (q.get(k) or "").strip() or None for k in ("state", "agent", "type", "tag", "q", "cursor")}
        try:
            view = await self.app.registry.search(state=f["state"], agent=f["agent"], type=f["type"], tag=f["tag"],
                                                  text=f["q"], cursor=f["cursor"])
            last = await self.app.registry.last_seq()
        except InvalidInput as exc:
            return error_page(request, person, 400, f"bad filter: {exc}", "/tasks")
        keep = {k: v for k, v in f.items() if v and k != "cursor"}
        next_href = f"/tasks?{urlencode({**keep, 'cursor': view.next_cursor})}" if view.next_cursor else None
        batch = any(person.may(op) for op in ("retry", "cancel", "update_task"))
        return render("tasks.html", request, person, title="Tasks", nav="Tasks", view=view, f=f,
                      next_href=next_href, here=safe_next(str(request.url.path) + "?" + str(request.url.query)),
                      batch=batch, last_seq=last)

    @page
    async def task(self, request: Request, person: Person) -> Response:
        """/tasks/{id} : one task, its readiness, progress, timeline and dependency graph."""
        tid = request.path_params["task_id"]
        try:
            view = await self.app.registry.task_view(tid)
        except (TaskNotFound, InvalidInput):
            return error_page(request, person, 404, f"no task has id {tid[:80]!r}", "/tasks")
        nodes = [svg.GraphNode(i, title, st, d) for i, title, st, d in view.graph.nodes]
        graph = svg.dependency_graph(nodes, view.graph.edges, view.task.id, more=view.graph.more or None)
        return render("task.html", request, person, title=view.task.title, nav="Tasks", view=view,
                      graph_svg=graph, last_seq=view.last_seq)

    @page
    async def agents(self, request: Request, person: Person) -> Response:
        """/agents : who holds what, done, failed, success rate, wait and work percentiles, last seen."""
        rows = await self.app.registry.agents()
        return render("agents.html", request, person, title="Agents", nav="Agents", rows=rows,
                      now=time.time(), sample=AGENT_SAMPLE, last_seq=await self.app.registry.last_seq())

    @page
    async def agent(self, request: Request, person: Person) -> Response:
        """/agents/{name} : one agent's tasks and events."""
        name = request.path_params["name"]
        try:
            row, tasks, events = await self.app.registry.agent_view(name)
        except InvalidInput as exc:
            return error_page(request, person, 404, str(exc), "/agents")
        return render("agent.html", request, person, title=row.name, nav="Agents", row=row,
                      tasks=tasks, events=events, last_seq=events.last_seq)

    @page
    async def events(self, request: Request, person: Person) -> Response:
        """/events : the log, newest first, by task, agent and type; follows live on its first page."""
        q = request.query_params
        f = {k: (q.get(k) or "").strip() or None for k in ("task", "agent", "type", "before", "limit")}
        raw, size = f["before"], f["limit"] or "100"
        try:
            before = None if raw is None else int(raw)
        except ValueError:
            return error_page(request, person, 400, f"bad filter: before must be an event number, not {str(raw)[:40]!r}",
                              "/events")
        if not size.isdigit():
            return error_page(request, person, 400, f"bad filter: limit must be a whole number, not {size[:20]!r}", "/events")
        try:
            view = await self.app.registry.event_log(task_id=f["task"], agent=f["agent"], type=f["type"], before=before,
                                                     limit=int(size))
        except InvalidInput as exc:
            return error_page(request, person, 400, f"bad filter: {exc}", "/events")
        keep = {k: v for k, v in f.items() if v and k != "before"}
        older = f"/events?{urlencode({**keep, 'before': view.before})}" if view.before else None
        return render("events.html", request, person, title="Events", nav="Events", view=view, f=f,
                      older_href=older, event_types=EVENT_TYPES, last_seq=view.last_seq)

    @page
    async def charts(self, request: Request, person: Person) -> Response:
        """/charts : throughput, queue depth by state, wait and work percentiles, per hour."""
        raw = request.query_params.get("hours", "24")
        try:
            hours = int(raw)
            c = await self.app.registry.charts(hours)
        except (ValueError, InvalidInput):
            return error_page(request, person, 400, f"bad span: hours must be a whole number from 1 to 168, not {raw[:20]!r}",
                              "/charts")
        label = _hour_label
        return render(
            "charts.html", request, person, title="Charts", nav="Charts", hours=hours, last_seq=c.last_seq,
            throughput=svg.bar_chart("Tasks finished per hour", c.hours, c.finished, x_label=label),
            depth=svg.stacked_area("Tasks by state at the end of each hour", c.hours, c.depth, x_label=label),
            wait=svg.line_chart("Wait before work (claimed after ready)", c.hours,
                                {"p50": c.wait_p50, "p95": c.wait_p95}, unit="s", x_label=label),
            work=svg.line_chart("Work time (started to finished)", c.hours,
                                {"p50": c.work_p50, "p95": c.work_p95}, unit="s", x_label=label),
        )


def _hour_label(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%d %H:00")
