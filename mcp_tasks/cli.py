"""The `mcp-tasks` command: serve agents, plan and inspect work from a terminal.

The commands live in cli_read.py (reading), cli_people.py (changing tasks), cli_serve.py,
cli_tokens.py and cli_completion.py; this module builds the parser and turns errors into exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, Callable

from . import __version__, cli_completion, cli_people, cli_read, cli_serve, cli_tokens, cli_transfer
from .cli_options import Parser, add_global_options, bounded, shared_parents
from .config import ConfigError
from .errors import StoreError, TaskError

async def cmd_demo(args: argparse.Namespace) -> int:
    from .harness.demo import run

    return await run(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    p = Parser(prog="mcp-tasks", description="A task registry shared by LLM agents over MCP.")
    p.add_argument("--version", action="version", version=f"mcp-tasks {__version__}")
    add_global_options(p)
    common, output = shared_parents()
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cli_read.add_parsers(sub, common, output)
    cli_people.add_parsers(sub, common, output)
    cli_serve.add_parser(sub, common, bounded)
    cli_serve.add_web_parser(sub, common, bounded)
    cli_tokens.add_parser(sub, common, output, bounded)
    cli_transfer.add_parser(sub, common, output, bounded)

    from .harness import bench

    s = sub.add_parser("bench", help=bench.HELP, description=bench.DESCRIPTION)
    bench.add_arguments(s)
    s.set_defaults(run=bench.cmd_bench)

    s = sub.add_parser("demo", help="watch simulated agents share a registry over MCP (20-30 s)")
    s.add_argument("--db", default=argparse.SUPPRESS,
                   help="run on this empty database (a SQLite file or postgresql:// URL) instead of a temporary SQLite file")
    s.add_argument("--seed", type=int, default=7, help="seed of the simulated work (default 7)")
    s.add_argument("--keep", action="store_true", help="keep the temporary database and print its path")
    s.add_argument("--verbose", action="store_true", help="also log every checkpoint")
    s.add_argument("--timeout", type=bounded(float, 1, 86_400), default=90.0,
                   help="give up after this many seconds (default 90)")
    s.set_defaults(run=cmd_demo)

    cli_completion.add_parser(sub)
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
    database cannot be used; 130 interrupted. Every error is one line on stderr, also with --json."""
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
