"""The `mcp-tasks` command: serve agents, plan and inspect work from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, Awaitable, Callable

from . import __version__, config, timefmt
from .errors import TaskError
from .models import Event, Task
from .registry import Registry
from .states import State
from .stores import make_store


def iso(ts: float | None) -> str:
    """A timestamp as ISO 8601 UTC, seconds precision; '-' for none."""
    return timefmt.iso(ts, ms=False) or "-"


def open_registry(args: argparse.Namespace, agent: str | None = None) -> Registry:
    """A registry over the database named by --db / MCP_TASKS_DB / the default."""
    store = make_store(config.resolve_db(args.db), synchronous=config.resolve_sync(getattr(args, "sync", None)))
    return Registry(store, agent=agent or getattr(args, "agent", None) or "cli")


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def format_event(ev: Event) -> str:
    """One event as a log line."""
    move = f"{ev.from_state or ''} -> {ev.to_state}" if ev.to_state else f"({ev.from_state})"
    extra = {k: v for k, v in ev.data.items() if k != "set"}
    fields = ev.data.get("set", {})
    if ev.type != "created":
        shown = {k: v for k, v in fields.items() if k != "lease_hash"}
        if shown:
            extra["set"] = shown
    tail = " " + _short(json.dumps(extra, ensure_ascii=False), 160) if extra else ""
    return f"#{ev.seq:<6} {iso(ev.at)}  {ev.task_id}  {ev.type:<17} {move:<22} by {ev.actor}{tail}"


# ---------------------------------------------------------------- commands


async def cmd_init(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        counts = await reg.counts()
    print(f"database ready: {reg.store.location} ({sum(counts.values())} tasks)")
    return 0


async def cmd_add(args: argparse.Namespace) -> int:
    spec: dict[str, Any] = {
        "title": args.title, "description": args.description or "", "type": args.type,
        "priority": args.priority, "tags": args.tag or [], "depends_on": args.depends_on or [],
        "requires_review": args.review, "max_retries": args.max_retries,
    }
    async with open_registry(args) as reg:
        created = await reg.create_tasks([spec], ready=not args.backlog)
    print(created.ids[0])
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        if args.ready:
            page = await reg.list_available(tags=args.tag and [args.tag], capabilities=args.type, limit=args.limit)
            rows = [[t.id, t.priority, t.type, _short(t.title), ",".join(t.tags)] for t in page.items]
            print(_table(rows, ["id", "pri", "type", "title", "tags"]) if rows else "no ready tasks")
            return 0
        found = await reg.find(state=args.state, assignee=args.assignee, tag=args.tag, text=args.text, limit=args.limit)
    rows = [
        [t.id, t.state.value, t.priority, t.type, t.assignee or "-", _short(t.title), iso(t.updated_at)]
        for t in found.items
    ]
    print(_table(rows, ["id", "state", "pri", "type", "assignee", "title", "updated"]) if rows else "no tasks")
    return 0


def format_task(task: Task, reason: str) -> str:
    """A task as a block of `field: value` lines for people."""
    lines = [f"{task.id}  {task.title}", f"  state:      {task.state.value}  ({reason})"]
    pairs = [
        ("type", task.type), ("priority", task.priority), ("tags", ", ".join(task.tags) or "-"),
        ("assignee", task.assignee or "-"), ("created", f"{iso(task.created_at)} by {task.created_by}"),
        ("claimed", iso(task.assigned_at)), ("started", iso(task.started_at)),
        ("completed", iso(task.completed_at)), ("lease", iso(task.lease_expires_at)),
        ("depends on", ", ".join(task.depends_on) or "-"), ("blocks", ", ".join(task.blocks) or "-"),
        ("retries", f"{task.retry_count}/{task.max_retries}"), ("not before", iso(task.not_before)),
        ("review", f"required (reviewer {task.reviewer or '-'})" if task.requires_review else "no"),
        ("progress", "-" if task.progress is None else f"{task.progress}%"),
        ("checkpoint", "-" if task.checkpoint_timestamp is None else
         f"{iso(task.checkpoint_timestamp)} {_short(json.dumps(task.checkpoint_data), 80)}"),
        ("note", task.checkpoint_note or "-"),
        ("times", "-" if task.cycle_time is None else
         f"wait {task.wait_time or 0:.1f}s, work {task.work_time or 0:.1f}s, cycle {task.cycle_time:.1f}s"),
        ("result", "-" if task.result is None else _short(json.dumps(task.result), 100)),
        ("usage", f"{task.usage.tokens} tokens, {task.usage.api_calls} calls, ${task.usage.cost:.4f}"),
        ("version", task.version),
    ]
    lines += [f"  {k + ':':<11} {v}" for k, v in pairs]
    if task.description:
        lines += ["", *("  " + ln for ln in task.description.splitlines())]
    for e in task.error_log[-3:]:
        lines.append(f"  error #{e['attempt']}: {_short(e['error'], 100)}")
    return "\n".join(lines)


async def cmd_show(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        task, ready, events = await reg.get_with_context(args.task_id, events=args.events)
    if args.json:
        print(json.dumps({"task": task.model_dump(mode="json"), "readiness": ready.model_dump(),
                          "events": [e.model_dump(mode="json") for e in events]}, indent=2))
        return 0
    print(format_task(task, ready.reason))
    if events:
        print("\nevents:")
        for ev in events:
            print("  " + format_event(ev))
    return 0


async def cmd_verify(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        diffs = await reg.verify()
        total = sum((await reg.counts()).values())
    if not diffs:
        print(f"ok: {total} tasks, every stored task equals the replay of its events")
        return 0
    for d in diffs[:200]:
        print(f"{d.task_id}  {d.field}: stored={d.stored!r} replayed={d.replayed!r}")
    print(f"{len(diffs)} differences in {len({d.task_id for d in diffs})} of {total} tasks")
    return 1


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    p = argparse.ArgumentParser(prog="mcp-tasks", description="A task registry shared by LLM agents over MCP.")
    p.add_argument("--version", action="version", version=f"mcp-tasks {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help=f"SQLite file (default: ${config.ENV_DB} or {config.default_db()})")
    common.add_argument("--sync", choices=["full", "normal"], type=str.lower,
                        help="SQLite durability: full (default, survives power loss) or normal (faster)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("init", parents=[common], help="create the database (and apply migrations)")
    s.set_defaults(run=cmd_init)

    s = sub.add_parser("add", parents=[common], help="create one task and print its id")
    s.add_argument("title")
    s.add_argument("-d", "--description")
    s.add_argument("-t", "--type", default="general", help="task type (agents claim by capability = type)")
    s.add_argument("-p", "--priority", type=int, default=5, help="1-10, higher is claimed first (default 5)")
    s.add_argument("--tag", action="append", help="repeatable")
    s.add_argument("--depends-on", action="append", metavar="ID", help="repeatable")
    s.add_argument("--review", action="store_true", help="require review before DONE")
    s.add_argument("--max-retries", type=int, default=3)
    s.add_argument("--backlog", action="store_true", help="create in BACKLOG instead of PENDING")
    s.add_argument("--agent", help="recorded as created_by (default: cli)")
    s.set_defaults(run=cmd_add)

    s = sub.add_parser("list", parents=[common], help="list tasks (newest first) or ready work (--ready)")
    s.add_argument("--ready", action="store_true", help="ready tasks in claim order")
    s.add_argument("--state", choices=[st.value for st in State], type=str.upper)
    s.add_argument("--assignee")
    s.add_argument("--tag")
    s.add_argument("--type", action="append", help="with --ready: capability filter (repeatable)")
    s.add_argument("--text", help="substring of title or description")
    s.add_argument("-n", "--limit", type=int, default=50)
    s.set_defaults(run=cmd_list)

    s = sub.add_parser("show", parents=[common], help="one task, why it is (not) ready, and its events")
    s.add_argument("task_id")
    s.add_argument("--events", type=int, default=20, help="latest events to show (default 20)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=cmd_show)

    s = sub.add_parser("verify", parents=[common], help="replay every task from its events and compare")
    s.set_defaults(run=cmd_verify)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mcp-tasks` console script."""
    args = build_parser().parse_args(argv)
    runner: Callable[[argparse.Namespace], Awaitable[int]] = args.run
    try:
        return asyncio.run(runner(args))
    except TaskError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
