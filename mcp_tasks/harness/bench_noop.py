"""The reference server of `mcp-tasks bench`: a bare MCPServer with one no-op tool, over stdio.

`python -m mcp_tasks.harness.bench_noop` is what the SDK costs on its own (cold start, a tool call,
memory), measured beside `mcp-tasks serve` in the same run.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer


def create_noop_server() -> MCPServer:
    """An MCPServer with a single tool, `noop`, that does nothing and returns "ok"."""
    mcp: MCPServer = MCPServer("bench-noop", version="1")

    @mcp.tool()
    async def noop() -> str:
        """Do nothing."""
        return "ok"

    return mcp


def main() -> None:
    """Serve the no-op server on stdio until stdin closes."""
    create_noop_server().run()


if __name__ == "__main__":
    main()
