"""The MCP server: tools, resources, prompts and subscriptions over one registry."""

from .app import AppState, create_server, state_of
from .http import build_http_app, serve_http
from .stdio import serve_stdio

__all__ = ["AppState", "build_http_app", "create_server", "serve_http", "serve_stdio", "state_of"]
