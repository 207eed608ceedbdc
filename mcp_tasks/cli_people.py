"""The commands by which people change tasks: add, edit, review, cancel, retry, schedule and
release --force. Each calls the registry as the MCP tools do, under the same rules; the CLI acts
as admin on the local database, and `--agent` names who is recorded."""

from __future__ import annotations

import argparse
from typing import Any

from . import limits
from .cli_options import bounded, open_registry
from .display import print_json
from .models import Task

EDITABLE = ("title", "description", "type", "priority", "tags", "requires_review", "max_retries")


def _done(args: argparse.Namespace, task: Task, text: str | None = None) -> int:
    """Print the changed task: the whole task with --json, else one line (by default its id and state)."""
    if args.json:
        print_json(task)
    else:
        print(text or f"{task.id} {task.state.value}")
    return 0


async def cmd_add(args: argparse.Namespace) -> int:
    spec: dict[str, Any] = {
        "title": args.title, "description": args.description or "", "type": args.type,
        "priority": args.priority, "tags": args.tag or [], "depends_on": args.depends_on or [],
        "requires_review": args.review, "max_retries": args.max_retries,
    }
    async with open_registry(args) as reg:
        created = await reg.create_tasks([spec], ready=not args.backlog)
    if args.json:
        print_json(created)
    else:
        print(created.ids[0])
    return 0


async def cmd_edit(args: argparse.Namespace) -> int:
    """Change a task's fields and dependencies (update_task), refused when --expect-version is stale."""
    fields = {k: getattr(args, k) for k in EDITABLE if getattr(args, k) is not None}
    if not fields and not args.add_dep and not args.remove_dep:
        raise args.usage_error("nothing to change: give at least one of --title, --description, --type, --priority, "
                               "--tag, --review/--no-review, --max-retries, --add-dep, --remove-dep")
    async with open_registry(args) as reg:
        task = await reg.update(args.task_id, expected_version=args.expect_version, add_depends_on=args.add_dep,
                                remove_depends_on=args.remove_dep, **fields)
    return _done(args, task, f"{task.id} version {task.version}")


async def cmd_review(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        task = await reg.review(args.task_id, args.approve, args.comment)
    return _done(args, task, f"{task.id} {task.state.value}" + (f" (reviewed by {task.reviewer})" if task.reviewer else ""))


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        task = await reg.cancel(args.task_id, args.reason, expected_version=args.expect_version)
    return _done(args, task)


async def cmd_retry(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        task = await reg.retry(args.task_id)
    return _done(args, task)


async def cmd_schedule(args: argparse.Namespace) -> int:
    async with open_registry(args) as reg:
        tasks = await reg.schedule(args.task_ids)
    if args.json:
        print_json({"tasks": tasks})
        return 0
    for task in tasks:
        print(f"{task.id} {task.state.value}")
    return 0


async def cmd_release(args: argparse.Namespace) -> int:
    """Take held work back from its holder (an agent that died): force_release."""
    async with open_registry(args) as reg:
        task = await reg.force_release(args.task_id, args.reason)
    return _done(args, task)


def add_parsers(sub: Any, common: argparse.ArgumentParser, output: argparse.ArgumentParser) -> None:
    """add, edit, review, cancel, retry, schedule and release."""
    both = [common, output]
    priority = bounded(int, limits.MIN_PRIORITY, limits.MAX_PRIORITY)
    retries = bounded(int, 0, limits.MAX_RETRIES)
    version = bounded(int, 1, 2**62)

    s = sub.add_parser("add", parents=both, help="create one task and print its id")
    s.add_argument("title")
    s.add_argument("-d", "--description")
    s.add_argument("-t", "--type", default="general", help="task type (agents claim by capability = type)")
    s.add_argument("-p", "--priority", type=priority, default=5,
                   help=f"{limits.MIN_PRIORITY}-{limits.MAX_PRIORITY}, higher is claimed first (default 5)")
    s.add_argument("--tag", action="append", help="repeatable")
    s.add_argument("--depends-on", action="append", metavar="ID", help="repeatable")
    s.add_argument("--review", action="store_true", help="require review before DONE")
    s.add_argument("--max-retries", type=retries, default=3)
    s.add_argument("--backlog", action="store_true", help="create in BACKLOG instead of PENDING")
    s.add_argument("--agent", help="recorded as created_by (default: cli)")
    s.set_defaults(run=cmd_add)

    s = sub.add_parser("edit", parents=both, help="change a task's fields or dependencies; prints its new version")
    s.add_argument("task_id")
    s.add_argument("--title")
    s.add_argument("-d", "--description")
    s.add_argument("-t", "--type")
    s.add_argument("-p", "--priority", type=priority, help=f"{limits.MIN_PRIORITY}-{limits.MAX_PRIORITY}")
    s.add_argument("--tag", action="append", dest="tags", help="the new tags (repeatable; replaces the old ones)")
    s.add_argument("--review", action="store_true", dest="requires_review", default=None,
                   help="require review before DONE")
    s.add_argument("--no-review", action="store_false", dest="requires_review", help="no review needed")
    s.add_argument("--max-retries", type=retries)
    s.add_argument("--add-dep", action="append", metavar="ID", help="depend on this task too (repeatable)")
    s.add_argument("--remove-dep", action="append", metavar="ID", help="no longer depend on it (repeatable)")
    s.add_argument("--expect-version", type=version, metavar="N",
                   help="refuse, naming the current version, if the task is no longer at version N")
    s.add_argument("--agent", help="recorded as who edited it (default: cli)")
    s.set_defaults(run=cmd_edit, usage_error=s.error)

    s = sub.add_parser("review", parents=both, help="approve a task in REVIEW or send it back")
    s.add_argument("task_id")
    verdict = s.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--approve", action="store_true", dest="approve")
    verdict.add_argument("--changes", action="store_false", dest="approve", help="request changes")
    s.add_argument("-m", "--comment")
    s.add_argument("--agent", help="reviewer name (default: cli); must not be the assignee")
    s.set_defaults(run=cmd_review)

    s = sub.add_parser("cancel", parents=both,
                       help="cancel a task; running or paused work too (admin: its holder's next call hears why)")
    s.add_argument("task_id")
    s.add_argument("-r", "--reason", required=True)
    s.add_argument("--expect-version", type=version, metavar="N", help="refuse if the task is no longer at version N")
    s.add_argument("--agent")
    s.set_defaults(run=cmd_cancel)

    s = sub.add_parser("retry", parents=both, help="put a dead-lettered (FAILED) task back in the queue")
    s.add_argument("task_id")
    s.add_argument("--agent")
    s.set_defaults(run=cmd_retry)

    s = sub.add_parser("schedule", parents=both, help="move BACKLOG tasks to PENDING")
    s.add_argument("task_ids", nargs="+", metavar="task_id")
    s.add_argument("--agent")
    s.set_defaults(run=cmd_schedule)

    s = sub.add_parser("release", parents=both,
                       help="take held work back from its holder, e.g. a dead agent (admin; needs --force)")
    s.add_argument("task_id")
    s.add_argument("--force", action="store_true", required=True,
                   help="required: the holder loses the task (ASSIGNED goes back to PENDING, ACTIVE fails and is retried)")
    s.add_argument("-r", "--reason", default="taken back from the command line",
                   help="told to the holder and kept in the task's errors")
    s.add_argument("--agent", help="recorded as who took it back (default: cli)")
    s.set_defaults(run=cmd_release)
