"""The HTTP server with chosen limits, for transport tests.

Usage: python http_server.py DB PORT [NAME=VALUE ...]
Each NAME=VALUE is a keyword argument of `serve_http` (max_connections=4, idle_timeout=0.5, ...).
"""

from __future__ import annotations

import logging
import sys

from mcp_tasks.server import create_server, serve_http


def main(db: str, port: str, *limits: str) -> None:
    options: dict[str, float] = {}
    for item in limits:
        name, value = item.split("=", 1)
        options[name] = float(value) if "." in value else int(value)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    mcp = create_server(db, agent="http", trust_agent_header=True, poll_interval=0.05)
    serve_http(mcp, "127.0.0.1", int(port), **options)  # type: ignore[arg-type]


if __name__ == "__main__":
    main(*sys.argv[1:])
