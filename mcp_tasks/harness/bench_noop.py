"""The reference server of `mcp-tasks bench`: a bare MCPServer with one no-op tool, over stdio or HTTP.

`python -m mcp_tasks.harness.bench_noop` is what the SDK costs on its own (cold start, a tool call,
memory), measured beside `mcp-tasks serve` in the same run. `--http PORT` serves it over
Streamable HTTP at http://127.0.0.1:PORT/mcp, with the uvicorn settings `mcp-tasks serve --http`
uses (h11, warnings only, the same keep-alive), for the HTTP rows.
"""

from __future__ import annotations

import argparse
import asyncio

from mcp.server.mcpserver import MCPServer

KEEP_ALIVE = 10  # seconds; what `mcp-tasks serve --http` keeps an idle connection (server/http.py IDLE_TIMEOUT)


def create_noop_server() -> MCPServer:
    """An MCPServer with a single tool, `noop`, that does nothing and returns "ok"."""
    mcp: MCPServer = MCPServer("bench-noop", version="1")

    @mcp.tool()
    async def noop() -> str:
        """Do nothing."""
        return "ok"

    return mcp


def serve_http(port: int) -> None:
    """Serve the no-op server over Streamable HTTP at http://127.0.0.1:PORT/mcp until interrupted."""
    import uvicorn

    mcp = create_noop_server()
    app = mcp.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=KEEP_ALIVE)
    try:
        asyncio.run(uvicorn.Server(config).serve())
    except KeyboardInterrupt:
        pass


def main(argv: list[str] | None = None) -> None:
    """Serve the no-op server on stdio until stdin closes, or over HTTP with `--http PORT`."""
    parser = argparse.ArgumentParser(prog="python -m mcp_tasks.harness.bench_noop", description=__doc__)
    parser.add_argument("--http", metavar="PORT", type=int, help="serve Streamable HTTP on 127.0.0.1:PORT")
    args = parser.parse_args(argv)
    if args.http is None:
        create_noop_server().run()
    else:
        serve_http(args.http)


if __name__ == "__main__":
    main()
