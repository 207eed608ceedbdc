"""The `mcp-tasks` command: serve agents, plan and inspect work from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from typing import Any, Callable, NoReturn

from . import __version__, cli_serve, cli_tokens, config, limits
from .config import ConfigError
from .display import iso as _iso, short as _short, table as _table
from .errors import StoreError, TaskError
from .models import Event, Task
from .registry import Registry
from .states import State
from .stores import make_store


def iso(ts: float | None) -> str:
    """A timestamp as ISO 8601 UTC, seconds precision; '-' for none."""
    return _iso(ts, ms=False) or "-"


def open_registry(args: argparse.Namespace, agent: str | None = None) -> Registry:
    """A registry over the database named by --db / MCP_TASKS_DB / the default.

    Read commands (`reads=True` in their parser's defaults) never create a database and read one
    that cannot be written; the others create it when missing and refuse one they cannot write."""
    reads = bool(getattr(args, "reads", False))
    store = make_store(config.resolve_db(args.db), synchronous=config.resolve_sync(getattr(args, "sync", None)),
                       create=not reads, must_write=not reads)
    return Registry(store, agent=agent or getattr(args, "agent", None) or "cli")


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
    if ev.error:
        tail += f" UNREADABLE: {ev.error}"
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
        found = await reg.find(state=args.state, assignee=args.assignee, tag=args.tag, text=args.text, types=args.type,
                               limit=args.limit)
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
    from .verification import describe, summary

    async with open_registry(args) as reg:
        problems = await reg.verify(since=args.since)
    for d in problems:
        print(describe(d))
    print(summary(problems))
    return 1 if problems else 0


async def cmd_events(args: argparse.Namespace) -> int:
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
                    print(format_event(ev), flush=True)
                seq = page[-1].seq
            if not args.follow:
                return 0
            await asyncio.sleep(args.interval)


async def cmd_review(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        task = await reg.review(args.task_id, args.approve, args.comment)
    print(f"{task.id} {task.state.value}" + (f" (reviewed by {task.reviewer})" if task.reviewer else ""))
    return 0


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        task = await reg.cancel(args.task_id, args.reason)
    print(f"{task.id} {task.state.value}")
    return 0


async def cmd_retry(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        task = await reg.retry(args.task_id)
    print(f"{task.id} {task.state.value}")
    return 0


async def cmd_schedule(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        tasks = await reg.schedule(args.task_ids)
    for task in tasks:
        print(f"{task.id} {task.state.value}")
    return 0


async def cmd_stats(args: argparse.Namespace) -> int:
    from . import reports

    async with open_registry(args) as reg:
        board = await reports.board(reg)
        metrics = await reports.metrics(reg)
    if args.json:
        print(json.dumps({"board": board.model_dump(), "metrics": metrics.model_dump()}, indent=2))
        return 0
    print("queue: " + (", ".join(f"{k} {v}" for k, v in board.counts.items() if v) or "empty"))
    age = board.oldest_ready_age_s
    print(f"ready now: {board.ready}" + ("" if age is None else f" (oldest waiting {age:.0f}s)"))
    for agent, held in board.held.items():
        print(f"held by {agent}: " + ", ".join(f"{h['id']} ({h['state']})" for h in held))
    for d in board.dead_letters:
        print(f"dead letter: {d['id']} {_short(d['title'])} - {_short(d['last_error'] or '', 60)}")
    for b in board.blocked_by_failed:
        print(f"blocked by failed work: {b['id']} waits on {b['dependency']} ({b['dependency_state']})")
    for title, groups in (("by agent", metrics.by_agent), ("by type", metrics.by_type)):
        if not groups:
            continue
        rows = [[name, g["done"], g["failed"], g.get("lease_expiries", 0), g["retries"],
                 "-" if g["success_rate"] is None else f"{g['success_rate']:.0%}",
                 "-" if g["cycle_p50"] is None else f"{g['cycle_p50']:.1f}s",
                 "-" if g["cycle_p95"] is None else f"{g['cycle_p95']:.1f}s", g["tokens"], f"{g['cost']:.4f}"]
                for name, g in groups.items()]
        print(f"\n{title}:")
        print(_table(rows, ["name", "done", "failed", "expired", "retries", "success", "cycle p50", "p95", "tokens", "cost"]))
    return 0


async def cmd_replay(args: argparse.Namespace) -> int:
    from .errors import CorruptRow, DamagedHistory, TaskNotFound
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
    if replayed is not None:
        print(json.dumps(replayed.model_dump(mode="json", exclude={"blocks"}), indent=2))
    problems = task_problems(args.task_id, stored, events)
    if problems:
        for d in problems:
            print(describe(d), file=sys.stderr)
        return 1
    print(f"replay of {len(events)} events equals the stored task", file=sys.stderr)
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    from .harness.demo import run

    return await run(args)


# ---------------------------------------------------------------- parser


class Parser(argparse.ArgumentParser):
    """An argument parser that reports a usage error in one line and exits with code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def bounded(kind: type[int] | type[float], lo: float, hi: float) -> Callable[[str], Any]:
    """An argparse type: a whole (int) or decimal (float) number within [lo, hi]."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise argparse.ArgumentTypeError(f"must be between {lo:g} and {hi:g}, not {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    p = Parser(prog="mcp-tasks", description="A task registry shared by LLM agents over MCP.")
    p.add_argument("--version", action="version", version=f"mcp-tasks {__version__}")
    common = Parser(add_help=False)
    common.add_argument("--db", help=f"SQLite file or postgresql:// URL (default: ${config.ENV_DB} or "
                                     f"{config.default_db()})")
    common.add_argument("--sync", choices=config.SYNC_VALUES, type=str.lower,
                        help="SQLite durability: full (default, survives power loss) or normal (faster)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("init", parents=[common], help="create the database (and apply migrations)")
    s.set_defaults(run=cmd_init)

    s = sub.add_parser("add", parents=[common], help="create one task and print its id")
    s.add_argument("title")
    s.add_argument("-d", "--description")
    s.add_argument("-t", "--type", default="general", help="task type (agents claim by capability = type)")
    s.add_argument("-p", "--priority", type=bounded(int, limits.MIN_PRIORITY, limits.MAX_PRIORITY), default=5,
                   help=f"{limits.MIN_PRIORITY}-{limits.MAX_PRIORITY}, higher is claimed first (default 5)")
    s.add_argument("--tag", action="append", help="repeatable")
    s.add_argument("--depends-on", action="append", metavar="ID", help="repeatable")
    s.add_argument("--review", action="store_true", help="require review before DONE")
    s.add_argument("--max-retries", type=bounded(int, 0, limits.MAX_RETRIES), default=3)
    s.add_argument("--backlog", action="store_true", help="create in BACKLOG instead of PENDING")
    s.add_argument("--agent", help="recorded as created_by (default: cli)")
    s.set_defaults(run=cmd_add)

    s = sub.add_parser("list", parents=[common], help="list tasks (newest first) or ready work (--ready)")
    s.add_argument("--ready", action="store_true", help="ready tasks in claim order")
    s.add_argument("--state", choices=[st.value for st in State], type=str.upper)
    s.add_argument("--assignee")
    s.add_argument("--tag")
    s.add_argument("--type", action="append", help="only tasks of this type (repeatable: any of them)")
    s.add_argument("--text", help="substring of title or description")
    s.add_argument("-n", "--limit", type=bounded(int, 1, limits.MAX_PAGE), default=50)
    s.set_defaults(run=cmd_list, reads=True)

    s = sub.add_parser("show", parents=[common], help="one task, why it is (not) ready, and its events")
    s.add_argument("task_id")
    s.add_argument("--events", type=bounded(int, 0, limits.MAX_EVENT_PAGE), default=20,
                   help="latest events to show (default 20)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=cmd_show, reads=True)

    s = sub.add_parser("verify", parents=[common], help="replay every task from its events and compare")
    s.add_argument("--since", type=bounded(int, 0, 2**62), metavar="SEQ",
                   help="check only the tasks changed after event SEQ (each whole) and the log after it")
    s.set_defaults(run=cmd_verify, reads=True)

    cli_serve.add_parser(sub, common, bounded)
    cli_serve.add_web_parser(sub, common, bounded)

    cli_tokens.add_parser(sub, common, bounded)

    s = sub.add_parser("events", parents=[common], help="print the event log (--follow to tail it)")
    s.add_argument("--task", help="only this task's events")
    s.add_argument("--since", type=bounded(int, 0, 2**63 - 1), help="start after this sequence number")
    s.add_argument("--last", type=bounded(int, 0, 10**9), default=50,
                   help="without --since: show the last N events (default 50)")
    s.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    s.add_argument("--interval", type=bounded(float, 0.05, 3600), default=0.5,
                   help="--follow poll interval in seconds, 0.05 to 3600 (default 0.5)")
    s.set_defaults(run=cmd_events, reads=True)

    s = sub.add_parser("stats", parents=[common], help="board and metrics: queue, holders, dead letters, times")
    s.add_argument("--json", action="store_true")
    s.set_defaults(run=cmd_stats, reads=True)

    s = sub.add_parser("review", parents=[common], help="approve a task in REVIEW or send it back")
    s.add_argument("task_id")
    verdict = s.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--approve", action="store_true", dest="approve")
    verdict.add_argument("--changes", action="store_false", dest="approve", help="request changes")
    s.add_argument("-m", "--comment")
    s.add_argument("--agent", help="reviewer name (default: cli); must not be the assignee")
    s.set_defaults(run=cmd_review)

    s = sub.add_parser("cancel", parents=[common], help="cancel a task that is not running")
    s.add_argument("task_id")
    s.add_argument("-r", "--reason", required=True)
    s.add_argument("--agent")
    s.set_defaults(run=cmd_cancel)

    s = sub.add_parser("retry", parents=[common], help="put a dead-lettered (FAILED) task back in the queue")
    s.add_argument("task_id")
    s.add_argument("--agent")
    s.set_defaults(run=cmd_retry)

    s = sub.add_parser("schedule", parents=[common], help="move BACKLOG tasks to PENDING")
    s.add_argument("task_ids", nargs="+", metavar="task_id")
    s.add_argument("--agent")
    s.set_defaults(run=cmd_schedule)

    from .harness import bench

    s = sub.add_parser("bench", help=bench.HELP, description=bench.DESCRIPTION)
    bench.add_arguments(s)
    s.set_defaults(run=bench.cmd_bench)

    s = sub.add_parser("replay", parents=[common], help="rebuild one task from its events and compare")
    s.add_argument("task_id")
    s.set_defaults(run=cmd_replay, reads=True)

    s = sub.add_parser("demo", help="watch simulated agents share a registry over MCP (20-30 s)")
    s.add_argument("--db", help="run on this empty database (a SQLite file or postgresql:// URL) instead of a "
                                "temporary SQLite file")
    s.add_argument("--seed", type=int, default=7, help="seed of the simulated work (default 7)")
    s.add_argument("--keep", action="store_true", help="keep the temporary database and print its path")
    s.add_argument("--verbose", action="store_true", help="also log every checkpoint")
    s.add_argument("--timeout", type=bounded(float, 1, 86_400), default=90.0,
                   help="give up after this many seconds (default 90)")
    s.set_defaults(run=cmd_demo)
    return p


def _fail(message: str, code: int) -> int:
    print("error: " + " ".join(message.split()), file=sys.stderr)
    return code


def _stdout_gone() -> None:
    """The reader of stdout left (`mcp-tasks list | head -1`): send what is still buffered to
    the null device, so that the interpreter's last flush stays quiet."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mcp-tasks` console script, and the one place where errors become exit
    codes (README, "Exit codes"): 0 ok (also when the reader of stdout left early); 1 a check
    found problems (the command returns it); 2 usage; 3 the registry refused the request; 4 the
    database cannot be used; 130 interrupted. Every error is one line on stderr."""
    try:
        args = build_parser().parse_args(argv)  # usage errors exit 2 here (Parser.error)
        runner: Callable[[argparse.Namespace], Any] = args.run
        code = runner(args) if getattr(args, "sync_command", False) else asyncio.run(runner(args))
        sys.stdout.flush()
        return int(code or 0)
    except BrokenPipeError:
        _stdout_gone()
        return 0
    except ConfigError as exc:
        return _fail(str(exc), 2)
    except StoreError as exc:
        return _fail(exc.message, 4)
    except TaskError as exc:
        return _fail(exc.message, 3)
    except OSError as exc:
        return _fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), 4)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
