"""The reading commands of `mcp-tasks`: init, list, show, verify, events, stats and replay, for
people (aligned tables, local dates, durations) or, with --json, for programs."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any, AsyncIterator

from . import limits, verification
from .cli_options import bounded, open_registry
from .display import duration, local, print_json, relative, short, table
from .errors import TaskNotFound
from .models import Event, Task
from .registry import Registry
from .states import State


def format_event(ev: Event) -> str:
    """One event as a log line, its time in the local zone."""
    move = f"{ev.from_state or ''} -> {ev.to_state}" if ev.to_state else f"({ev.from_state})"
    extra = {k: v for k, v in ev.data.items() if k != "set"}
    fields = ev.data.get("set", {})
    if ev.type != "created":
        shown = {k: v for k, v in fields.items() if k != "lease_hash"}
        if shown:
            extra["set"] = shown
    tail = " " + short(json.dumps(extra, ensure_ascii=False), 160) if extra else ""
    if ev.error:
        tail += f" UNREADABLE: {ev.error}"
    return f"#{ev.seq:<6} {local(ev.at)}  {ev.task_id}  {ev.type:<17} {move:<22} by {ev.actor}{tail}"


def format_task(task: Task, reason: str, now: float) -> str:
    """A task as a block of `field: value` lines for people; times are local, leases relative to `now`."""
    lease = "-" if task.lease_expires_at is None else \
        f"{local(task.lease_expires_at)} (expires {relative(task.lease_expires_at, now)})"
    not_before = "-" if task.not_before is None else f"{local(task.not_before)} ({relative(task.not_before, now)})"
    lines = [f"{task.id}  {task.title}", f"  state:      {task.state.value}  ({reason})"]
    pairs = [
        ("type", task.type), ("priority", task.priority), ("tags", ", ".join(task.tags) or "-"),
        ("assignee", task.assignee or "-"), ("created", f"{local(task.created_at)} by {task.created_by}"),
        ("claimed", local(task.assigned_at)), ("started", local(task.started_at)),
        ("completed", local(task.completed_at)), ("lease", lease),
        ("depends on", ", ".join(task.depends_on) or "-"), ("blocks", ", ".join(task.blocks) or "-"),
        ("retries", f"{task.retry_count}/{task.max_retries}"), ("not before", not_before),
        ("review", f"required (reviewer {task.reviewer or '-'})" if task.requires_review else "no"),
        ("progress", "-" if task.progress is None else f"{task.progress}%"),
        ("checkpoint", "-" if task.checkpoint_timestamp is None else
         f"{local(task.checkpoint_timestamp)} {short(json.dumps(task.checkpoint_data, ensure_ascii=False), 80)}"),
        ("note", task.checkpoint_note or "-"),
        ("times", "-" if task.cycle_time is None else
         f"wait {duration(task.wait_time or 0)}, work {duration(task.work_time or 0)}, "
         f"cycle {duration(task.cycle_time)}"),
        ("result", "-" if task.result is None else short(json.dumps(task.result, ensure_ascii=False), 100)),
        ("usage", f"{task.usage.tokens} tokens, {task.usage.api_calls} calls, ${task.usage.cost:.4f}"),
        ("version", task.version),
    ]
    lines += [f"  {k + ':':<11} {v}" for k, v in pairs]
    if task.description:
        lines += ["", *("  " + ln for ln in task.description.splitlines())]
    for e in task.error_log[-3:]:
        lines.append(f"  error #{e['attempt']}: {short(e['error'], 100)}")
    return "\n".join(lines)


async def cmd_init(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        counts = await reg.counts()
    total = sum(counts.values())
    if args.json:
        print_json({"database": reg.store.location, "tasks": total})
    else:
        print(f"database ready: {reg.store.location} ({total} tasks)")
    return 0


Total = tuple[int, bool]  # matching tasks counted up to overview.COUNT_CAP, and whether there are more


async def _pages(reg: Registry, args: argparse.Namespace) -> AsyncIterator[tuple[list[Any], str | None, Total | None]]:
    """(items, next cursor, total) per page of `list`, from --cursor on; one page unless --all.
    The total (None for --ready) is counted with the first page."""
    cursor = args.cursor
    total: Total | None = None
    items: list[Any]
    while True:
        if args.ready:
            ready = await reg.list_available(tags=args.tag and [args.tag], capabilities=args.type, limit=args.limit,
                                             cursor=cursor)
            items, cursor = list(ready.items), ready.next_cursor
        elif total is None:
            view = await reg.search(state=args.state, agent=args.assignee, tag=args.tag, text=args.text,
                                    types=args.type, limit=args.limit, cursor=cursor)
            items, cursor, total = list(view.tasks), view.next_cursor, (view.total, view.capped)
        else:
            found = await reg.find(state=args.state, assignee=args.assignee, tag=args.tag, text=args.text,
                                   types=args.type, limit=args.limit, cursor=cursor)
            items, cursor = list(found.items), found.next_cursor
        yield items, cursor, total
        if not (args.all and cursor):
            return


def _rows(items: list[Any], ready: bool) -> tuple[list[list[Any]], list[str]]:
    if ready:
        return ([[t.id, t.priority, t.type, short(t.title), ",".join(t.tags)] for t in items],
                ["id", "pri", "type", "title", "tags"])
    return ([[t.id, t.state.value, t.priority, t.type, t.assignee or "-", short(t.title), local(t.updated_at)]
             for t in items], ["id", "state", "pri", "type", "assignee", "title", "updated"])


async def cmd_list(args: argparse.Namespace) -> int:
    shown, first = 0, True
    widths: list[int] = []  # of every page so far: columns move only when a later page needs more room
    async with open_registry(args) as reg:
        async for items, cursor, total in _pages(reg, args):
            if args.ids:
                print("\n".join(t.id for t in items))
                return 0
            if args.json and args.all:
                for item in items:
                    print_json(item, line=True)
                continue
            if args.json:
                doc: dict[str, Any] = {"tasks": items, "next_cursor": cursor}
                if total is not None:
                    doc.update(total=total[0], capped=total[1])
                print_json(doc)
                continue
            rows, headers = _rows(items, args.ready)
            if rows:
                lines = table(rows, headers, widths=widths).splitlines()
                print("\n".join(lines if first else lines[2:]), flush=True)
            first, shown = False, shown + len(rows)
            if not args.all:
                break
    if args.json:
        return 0
    what = "ready task" if args.ready else "task"
    if not shown:
        print(f"no {what}s")
    elif total is not None:
        print(f"{shown} of {'more than ' if total[1] else ''}{total[0]:,} {what}{'s' if total[0] != 1 else ''}")
    else:
        print(f"{shown} {what}{'s' if shown != 1 else ''}")
    if cursor and not args.all:
        print(f"more: --cursor {cursor} (or --all)")
    return 0


async def cmd_show(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        task, ready, events = await reg.get_with_context(args.task_id, events=args.events)
    if args.json:
        print_json({"task": task, "readiness": ready, "events": events})
        return 0
    print(format_task(task, ready.reason, time.time()))
    if events:
        print("\nevents:")
        for ev in events:
            print("  " + format_event(ev))
    return 0


async def cmd_verify(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        found = await reg.verify(since=args.since, jobs=args.jobs)
    if args.json:
        print_json({"ok": not found, "tasks": found.tasks, "since": found.since, "jobs": found.jobs,
                    "problems": list(found)})
        return 1 if found else 0
    for d in found:
        print(verification.describe(d))
    print(verification.summary(found))
    return 1 if found else 0


async def cmd_events(args: argparse.Namespace) -> int:
    """The event log, oldest first; --json prints JSON Lines, also while following."""
    async with open_registry(args) as reg:
        if args.since is not None:
            seq = args.since
        elif args.task:
            seq = 0
        else:
            seq = max(0, await reg.last_seq() - args.last)
        while True:
            async for page in reg.event_pages(seq, task_id=args.task):
                for ev in page:
                    if args.json:
                        print_json(ev, line=True)
                    else:
                        print(format_event(ev), flush=True)
                seq = page[-1].seq
            if args.task and seq == 0:
                await _require_task(reg, args.task)
            if not args.follow:
                return 0
            await asyncio.sleep(args.interval)


async def _require_task(reg: Registry, task_id: str) -> None:
    """Refuse a task id that names neither a task nor any event (the caller found no events)."""
    try:
        await reg.get(task_id)
    except TaskNotFound:
        raise TaskNotFound(f"no task has id {task_id}, and no event names it") from None


async def cmd_stats(args: argparse.Namespace) -> int:
    from . import reports

    async with open_registry(args) as reg:
        board = await reports.board(reg)
        metrics = await reports.metrics(reg)
    if args.json:
        print_json({"board": board, "metrics": metrics})
        return 0
    print("queue: " + (", ".join(f"{k} {v}" for k, v in board.counts.items() if v) or "empty"))
    age = board.oldest_ready_age_s
    print(f"ready now: {board.ready}" + ("" if age is None else f" (oldest waiting {duration(age)})"))
    for agent, held in board.held.items():
        print(f"held by {agent}: " + ", ".join(f"{h['id']} ({h['state']})" for h in held))
    for d in board.dead_letters:
        print(f"dead letter: {d['id']} {short(d['title'])} - {short(d['last_error'] or '', 60)}")
    for b in board.blocked_by_failed:
        print(f"blocked by failed work: {b['id']} waits on {b['dependency']} ({b['dependency_state']})")
    for title, groups in (("by agent", metrics.by_agent), ("by type", metrics.by_type)):
        if not groups:
            continue
        rows = [[name, g["done"], g["failed"], g.get("lease_expiries", 0), g["retries"],
                 "-" if g["success_rate"] is None else f"{g['success_rate']:.0%}",
                 duration(g["cycle_p50"]), duration(g["cycle_p95"]), g["tokens"], f"{g['cost']:.4f}"]
                for name, g in groups.items()]
        print(f"\n{title}:")
        print(table(rows, ["name", "done", "failed", "expired", "retries", "success", "cycle p50", "p95", "tokens", "cost"]))
    return 0


async def cmd_replay(args: argparse.Namespace) -> int:
    from .errors import CorruptRow, DamagedHistory
    from .replay import fold
    from .verification import describe, task_problems

    stored: Task | CorruptRow | None
    async with open_registry(args) as reg:
        events = [e async for page in reg.event_pages(task_id=args.task_id) for e in page]
        try:
            stored = await reg.get(args.task_id)
        except TaskNotFound:
            stored = None
        except CorruptRow as exc:
            stored = exc
    if stored is None and not events:
        raise TaskNotFound(f"no task has id {args.task_id}, and no event names it")
    try:
        replayed = fold(events)
    except DamagedHistory:
        replayed = None  # the problems below say why
    problems = task_problems(args.task_id, stored, events)
    shown = None if replayed is None else replayed.model_dump(mode="json", exclude={"blocks"})
    if args.json:
        print_json({"task": shown, "events": len(events), "equal": not problems, "problems": problems})
        return 1 if problems else 0
    if shown is not None:
        print(json.dumps(shown, indent=2, ensure_ascii=False))
    for d in problems:
        print(describe(d), file=sys.stderr)
    if not problems:
        print(f"replay of {len(events)} events equals the stored task", file=sys.stderr)
    return 1 if problems else 0


def add_parsers(sub: Any, common: argparse.ArgumentParser, output: argparse.ArgumentParser) -> None:
    """init, list, show, verify, events, stats and replay."""
    both = [common, output]
    s = sub.add_parser("init", parents=both, help="create the database (and apply migrations)")
    s.set_defaults(run=cmd_init)

    s = sub.add_parser("list", parents=both, help="list tasks (newest first) or ready work (--ready), a page at a time")
    s.add_argument("--ready", action="store_true", help="ready tasks in claim order")
    s.add_argument("--state", choices=[st.value for st in State], type=str.upper)
    s.add_argument("--assignee")
    s.add_argument("--tag")
    s.add_argument("--type", action="append", help="only tasks of this type (repeatable: any of them)")
    s.add_argument("--text", help="substring of title or description")
    s.add_argument("-n", "--limit", type=bounded(int, 1, limits.MAX_PAGE), default=50,
                   help=f"tasks per page, 1 to {limits.MAX_PAGE} (default 50)")
    pages = s.add_mutually_exclusive_group()
    pages.add_argument("--cursor", help="continue after the page that printed this cursor")
    pages.add_argument("--all", action="store_true", help="every page, printed as it is read")
    s.add_argument("--ids", action="store_true", help=argparse.SUPPRESS)  # one page of ids, for shell completion
    s.set_defaults(run=cmd_list, reads=True)

    s = sub.add_parser("show", parents=both, help="one task, why it is (not) ready, and its events")
    s.add_argument("task_id")
    s.add_argument("--events", type=bounded(int, 0, limits.MAX_EVENT_PAGE), default=20,
                   help="latest events to show (default 20)")
    s.set_defaults(run=cmd_show, reads=True)

    s = sub.add_parser("verify", parents=both, help="replay every task from its events and compare")
    s.add_argument("--since", type=bounded(int, 0, 2**62), metavar="SEQ",
                   help="check only the tasks changed after event SEQ (each whole) and the log after it")
    s.add_argument("--jobs", type=bounded(int, 1, 64), metavar="N",
                   help=f"processes replaying the tasks of a whole check (default: one per core, at most "
                        f"{verification.MAX_JOBS}, from {verification.PARALLEL_FROM:,} tasks; else 1)")
    s.set_defaults(run=cmd_verify, reads=True)

    s = sub.add_parser("events", parents=both, help="print the event log (--follow to tail it)")
    s.add_argument("--task", help="only this task's events")
    s.add_argument("--since", type=bounded(int, 0, 2**63 - 1), help="start after this sequence number")
    s.add_argument("--last", type=bounded(int, 0, 10**9), default=50,
                   help="without --since: show the last N events (default 50)")
    s.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    s.add_argument("--interval", type=bounded(float, 0.05, 3600), default=0.5,
                   help="--follow poll interval in seconds, 0.05 to 3600 (default 0.5)")
    s.set_defaults(run=cmd_events, reads=True)

    s = sub.add_parser("stats", parents=both, help="board and metrics: queue, holders, dead letters, times")
    s.set_defaults(run=cmd_stats, reads=True)

    s = sub.add_parser("replay", parents=both, help="rebuild one task from its events and compare")
    s.add_argument("task_id")
    s.set_defaults(run=cmd_replay, reads=True)
