"""What every `mcp-tasks` command shares: the argument parser class, bounded numbers, the options
`--db`, `--sync` and `--json` (accepted before or after the command), and opening the registry."""

from __future__ import annotations

import argparse
import math
from typing import Any, Callable, NoReturn

from . import config
from .registry import Registry
from .stores import make_store


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
            shown = (f"{lo:.0f}", f"{hi:.0f}") if kind is int else (f"{lo:g}", f"{hi:g}")
            raise argparse.ArgumentTypeError(f"must be between {shown[0]} and {shown[1]}, not {text}")
        return value

    return parse


DB_HELP = f"SQLite file or postgresql:// URL (default: ${config.ENV_DB} or {config.default_db()})"
JSON_HELP = "print one JSON document (JSON Lines for streams) with the MCP tools' field names"


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """`--db` and `--json` before the command (`mcp-tasks --db X list`)."""
    parser.add_argument("--db", help=DB_HELP)
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def shared_parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """(database options, output options): parents of the subcommands. Their defaults are left
    out of the namespace, so that a value given before the command is not overwritten."""
    common = Parser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS, help=DB_HELP)
    common.add_argument("--sync", choices=config.SYNC_VALUES, type=str.lower,
                        help="SQLite durability: full (default, survives power loss) or normal (faster)")
    output = Parser(add_help=False)
    output.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON_HELP)
    return common, output


def open_registry(args: argparse.Namespace, agent: str | None = None) -> Registry:
    """A registry over the database named by --db / MCP_TASKS_DB / the default.

    Read commands (`reads=True` in their parser's defaults) never create a database and read one
    that cannot be written; the others create it when missing and refuse one they cannot write."""
    reads = bool(getattr(args, "reads", False))
    store = make_store(config.resolve_db(args.db), synchronous=config.resolve_sync(getattr(args, "sync", None)),
                       create=not reads, must_write=not reads)
    return Registry(store, agent=agent or getattr(args, "agent", None) or "cli")
