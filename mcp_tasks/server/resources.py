"""Live resources (all JSON) and completions for their template arguments."""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import Completion, CompletionArgument, CompletionContext, PromptReference, ResourceTemplateReference

from .. import limits, reports
from ..errors import TaskError
from . import views as V
from .tooling import resource_failure

JSON = "application/json"
EVENTS_SHOWN = 100


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def register_resources(mcp: MCPServer, app: Any) -> None:
    """task://, tasks://, events://, agent://, metrics:// and completions for ids and agents."""

    async def guard(coro: Any) -> Any:
        try:
            return await coro
        except TaskError as exc:
            raise resource_failure(exc) from None

    # Specific templates first: the first template that matches a URI wins.
    @mcp.resource("task://{task_id}/events", name="task-events", mime_type=JSON,
                  description=f"A task's latest {EVENTS_SHOWN} events, oldest first")
    async def task_events(task_id: str) -> str:
        task, _, events = await guard(app.registry.get_with_context(task_id, events=EVENTS_SHOWN))
        return _json([V.dump(V.event(e)) for e in events])

    @mcp.resource("task://{task_id}", name="task", mime_type=JSON, description="One task, with why it is (not) ready")
    async def task(task_id: str) -> str:
        t, ready, _ = await guard(app.registry.get_with_context(task_id))
        return _json(V.dump(V.detail(t, ready)))

    @mcp.resource("agent://{agent}/tasks", name="agent-tasks", mime_type=JSON,
                  description="Tasks an agent holds or finished, newest first")
    async def agent_tasks(agent: str) -> str:
        page = await guard(app.registry.find(assignee=agent, limit=limits.MAX_PAGE))
        return _json([V.dump(V.row(t)) for t in page.items])

    @mcp.resource("tasks://available", name="available", mime_type=JSON, description="Ready tasks in claim order")
    async def available() -> str:
        page = await guard(app.registry.list_available(limit=50))
        return _json(V.dump(V.Available(tasks=[V.brief(s) for s in page.items], next_cursor=page.next_cursor)))

    @mcp.resource("tasks://board", name="board", mime_type=JSON,
                  description="Counts by state, who holds what, dead letters, work blocked by failures")
    async def board() -> str:
        return (await guard(reports.board(app.registry))).model_dump_json()

    @mcp.resource("events://recent", name="recent-events", mime_type=JSON, description="The latest 100 events")
    async def recent() -> str:
        last = await guard(app.registry.last_seq())
        events = await guard(app.registry.events_since(max(0, last - EVENTS_SHOWN), limit=EVENTS_SHOWN))
        return _json([V.dump(V.event(e)) for e in events])

    @mcp.resource("metrics://summary", name="metrics", mime_type=JSON,
                  description="Done, failed, success rate, p50/p95 times, retries, expiries, usage by agent and type")
    async def metrics() -> str:
        return (await guard(reports.metrics(app.registry))).model_dump_json()

    @mcp.completion()
    async def complete_argument(
        ref: ResourceTemplateReference | PromptReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        prefix = argument.value or ""
        try:
            prefix.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no id or name starts with one, and SQLite cannot take it
            return Completion(values=[])
        if argument.name == "task_id":
            values = await app.registry.complete_ids(prefix, limit=101)
        elif argument.name == "agent":
            values = await app.registry.complete_agents(prefix, limit=101)
        else:
            return None
        return Completion(values=values[:100], has_more=len(values) > 100)
