"""`mcp-tasks export | import | copy | backup | restore`: whole registries in and out.

Each command takes `--json`: one JSON document on stdout saying what was done (counts, seq, path,
seconds); without it, one line for people. A check that finds problems in the result exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from . import backups, config
from .backups import Report, checked, opened
from .config import ConfigError
from .display import print_json
from .errors import InvalidInput
from .stores import make_store
from .transfer import DEBOUNCE_CAP, Summary, export, export_to_file, follow_export, import_file


def _summary_doc(action: str, source: str, target: str, summary: Summary, seconds: float, **extra: Any) -> dict[str, Any]:
    return {"action": action, "source": source, "target": target, "tasks": summary.tasks, "events": summary.events,
            "last_seq": summary.last_seq, "seconds": round(seconds, 3), **extra}


def _said(doc: dict[str, Any], as_json: bool, text: str, problems: list[str] | None = None) -> int:
    """Print what was done (the JSON document, or `text` and each problem); 1 when there are problems."""
    if as_json:
        print_json(doc)
    else:
        print(text)
        for problem in problems or []:
            print(problem)
    return 1 if problems else 0


def _counts(summary: Summary | Report) -> str:
    return f"{summary.tasks} tasks, {summary.events} events (last seq {summary.last_seq})"


async def cmd_export(args: argparse.Namespace) -> int:
    if args.follow and not args.output:
        raise ConfigError("--follow needs -o FILE: it keeps that file up to date")
    if args.json and not args.output:
        raise ConfigError("--json needs -o FILE: without it the export itself goes to stdout")
    started = time.perf_counter()
    async with opened(make_store(config.resolve_db(args.db), create=False)) as store:
        if args.follow:
            return await _follow(args, store.location, store)
        if args.output:
            summary = await export_to_file(store, args.output)
        else:
            out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")
            try:
                summary = await export(store, out)
            finally:
                out.flush()
                out.detach()
            return 0
    doc = _summary_doc("export", store.location, args.output, summary, time.perf_counter() - started)
    return _said(doc, args.json, f"exported {_counts(summary)} to {args.output}")


async def _follow(args: argparse.Namespace, location: str, store: Any) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.perf_counter()
    last: list[Summary] = []

    def wrote(summary: Summary) -> None:
        last[:] = [summary]
        if not args.json:
            print(f"wrote {args.output}: {_counts(summary)}", flush=True)

    try:
        writes = await follow_export(store, args.output, debounce=args.debounce, stop=stop, wrote=wrote)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    doc = _summary_doc("export", location, args.output, last[0], time.perf_counter() - started, writes=writes)
    return _said(doc, args.json, f"stopped after {writes} writes")


async def cmd_import(args: argparse.Namespace) -> int:
    if not Path(args.file).is_file():  # before a missing target database is created
        raise InvalidInput(f"{args.file}: no such export file")
    started = time.perf_counter()
    async with opened(make_store(config.resolve_db(args.db), must_write=True)) as store:
        summary = await import_file(store, args.file)
        _, problems = await checked(store)
    doc = _summary_doc("import", args.file, store.location, summary, time.perf_counter() - started, problems=problems)
    return _said(doc, args.json, f"imported {_counts(summary)} into {store.location}"
                 + ("; verify found problems:" if problems else "; it verifies clean"), problems)


def _report(report: Report, as_json: bool, text: str) -> int:
    return _said(asdict(report) | {"seconds": round(report.seconds, 3)}, as_json,
                 f"{text}: {_counts(report)} in {report.seconds:.1f}s"
                 + ("; checks found problems:" if report.problems else "; it verifies clean"), report.problems)


async def cmd_copy(args: argparse.Namespace) -> int:
    report = await backups.copy(config.resolve_db(args.db), args.to)
    return _report(report, args.json, f"copied {report.source} to {report.target}"
                   + (", identical export" if report.identical else ""))


async def cmd_backup(args: argparse.Namespace) -> int:
    report = await backups.backup(config.resolve_db(args.db), args.dest)
    what = "database copy" if report.kind == "sqlite" else "export"
    return _report(report, args.json, f"backed up {report.source} to {report.target} ({what})")


async def cmd_restore(args: argparse.Namespace) -> int:
    report = await backups.restore(args.src, config.resolve_db(args.db))
    what = "whole database, tokens included" if report.kind == "sqlite" else "tasks and events; create tokens anew"
    return _report(report, args.json, f"restored {report.source} into {report.target} ({what})")


def add_parser(sub: Any, common: argparse.ArgumentParser, output: argparse.ArgumentParser,
               bounded: Callable[..., Any]) -> None:
    """`export`, `import`, `copy`, `backup` and `restore`; `--json` (from `output`) prints one JSON document
    saying what was done (counts, last seq, paths, seconds)."""
    s = sub.add_parser("export", parents=[common, output], help="write the whole registry as JSON Lines (stdout or -o FILE)")
    s.add_argument("-o", "--output", metavar="FILE", help="write to FILE, atomically (default: stdout)")
    s.add_argument("--follow", action="store_true",
                   help="keep FILE up to date as events arrive, until interrupted (needs -o)")
    s.add_argument("--debounce", type=bounded(float, 0.05, 3600), default=1.0, metavar="SECONDS",
                   help=f"--follow: write once the log has been quiet this long, or {DEBOUNCE_CAP}x this long "
                        "under constant change (default 1)")
    s.set_defaults(run=cmd_export)

    s = sub.add_parser("import", parents=[common, output], help="load an export into an empty registry, then verify")
    s.add_argument("file", metavar="FILE")
    s.set_defaults(run=cmd_import)

    s = sub.add_parser("copy", parents=[common, output], help="copy the whole registry into an empty one (SQLite <-> PostgreSQL)")
    s.add_argument("--to", required=True, metavar="DST", help="the target: a SQLite file or postgresql:// URL")
    s.set_defaults(run=cmd_copy)

    s = sub.add_parser("backup", parents=[common, output], help="a consistent online backup to a new file, checked")
    s.add_argument("dest", metavar="DEST")
    s.set_defaults(run=cmd_backup)

    s = sub.add_parser("restore", parents=[common, output], help="restore a backup or export into an empty registry")
    s.add_argument("src", metavar="SRC")
    s.set_defaults(run=cmd_restore)
