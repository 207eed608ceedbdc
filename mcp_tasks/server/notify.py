"""Telling subscribers what changed, in both protocol eras, whichever process made the change.

One mechanism: every server process follows the event log (woken at once by its own writes,
polling for other processes' writes) and turns new events into resource-updated cues for
`subscriptions/listen` streams (2026-07-28) and `resources/subscribe` sessions (2025-11-25).
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Iterable, Mapping

import anyio
from mcp import MCPError
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.server.mcpserver import MCPServer
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus
from mcp.types import INVALID_PARAMS, INVALID_REQUEST, EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from .. import limits
from ..health import run_forever
from ..models import Event
from ..registry import Registry

log = logging.getLogger(__name__)
GLOBAL_URIS = ("tasks://board", "tasks://available", "events://recent", "metrics://summary")


def uris_for(events: Iterable[Event]) -> list[str]:
    """Resource URIs whose content the given events change."""
    uris: dict[str, None] = dict.fromkeys(GLOBAL_URIS)
    for e in events:
        uris[f"task://{e.task_id}"] = None
        uris[f"task://{e.task_id}/events"] = None
        agents = {e.actor, e.data.get("holder"), e.data.get("set", {}).get("assignee")}
        for agent in agents:
            if isinstance(agent, str) and agent != "reaper":
                uris[f"agent://{agent}/tasks"] = None
    return list(uris)


def _uri_problem(uri: object) -> str | None:
    if isinstance(uri, str) and len(uri) > limits.MAX_URI:
        return f"uri is {len(uri)} characters; at most {limits.MAX_URI} allowed (MAX_URI)"
    return None


async def bound_listen(ctx: ServerRequestContext, call_next: CallNext) -> HandlerResult:
    """Server middleware: a subscriptions/listen stream names at most MAX_SUBSCRIPTIONS URIs of
    MAX_URI characters (the SDK holds whatever it is given for the life of the stream)."""
    if ctx.method == "subscriptions/listen" and isinstance(ctx.params, Mapping):
        notifications = ctx.params.get("notifications")
        uris = notifications.get("resourceSubscriptions") if isinstance(notifications, Mapping) else None
        if isinstance(uris, list):
            if len(uris) > limits.MAX_SUBSCRIPTIONS:
                raise MCPError(INVALID_PARAMS, f"resourceSubscriptions names {len(uris)} URIs; at most "
                               f"{limits.MAX_SUBSCRIPTIONS} allowed per stream (MAX_SUBSCRIPTIONS)")
            problem = next(filter(None, map(_uri_problem, uris)), None)
            if problem:
                raise MCPError(INVALID_PARAMS, f"resourceSubscriptions: {problem}")
    return await call_next(ctx)


class LegacySubscriptions:
    """resources/subscribe and unsubscribe for 2025-era clients (MCPServer does not serve them).

    A session holds at most MAX_SUBSCRIPTIONS URIs of at most MAX_URI characters (seen: 40
    subscriptions with 1 MiB URIs held 82 MiB for the life of the session); more is refused with
    a JSON-RPC error naming the limit. Also bounds subscriptions/listen streams (`bound_listen`).
    """

    def __init__(self, server: MCPServer) -> None:
        self._by_uri: dict[str, dict[int, ServerSession]] = {}
        self._by_session: dict[int, set[str]] = {}
        low = server._lowlevel_server  # the SDK's documented workaround for legacy subscriptions
        low.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        low.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe)
        server.middleware.append(bound_listen)

    @staticmethod
    def _key(session: ServerSession) -> int:
        return id(getattr(session, "_connection", None) or session.client_params)

    async def _subscribe(self, ctx: ServerRequestContext, params: SubscribeRequestParams) -> EmptyResult:
        problem = _uri_problem(params.uri)
        if problem:
            raise MCPError(INVALID_PARAMS, f"resources/subscribe refused: {problem}")
        key = self._key(ctx.session)
        mine = self._by_session.get(key)
        if mine is None:
            mine = self._by_session[key] = set()
            connection = getattr(ctx.session, "_connection", None)
            if connection is not None:  # forget the session's subscriptions when its connection closes
                connection.exit_stack.callback(self._forget_session, key)
        if params.uri not in mine and len(mine) >= limits.MAX_SUBSCRIPTIONS:
            raise MCPError(INVALID_REQUEST, f"resources/subscribe refused: this session already has "
                           f"{limits.MAX_SUBSCRIPTIONS} subscriptions, the most allowed (MAX_SUBSCRIPTIONS); "
                           "unsubscribe from one first")
        mine.add(params.uri)
        self._by_uri.setdefault(params.uri, {})[key] = ctx.session
        return EmptyResult()

    async def _unsubscribe(self, ctx: ServerRequestContext, params: UnsubscribeRequestParams) -> EmptyResult:
        self._forget(params.uri, self._key(ctx.session))
        return EmptyResult()

    def _forget(self, uri: str, key: int) -> None:
        self._by_session.get(key, set()).discard(uri)
        subs = self._by_uri.get(uri)
        if subs is not None:
            subs.pop(key, None)
            if not subs:
                del self._by_uri[uri]

    def _forget_session(self, key: int) -> None:
        for uri in self._by_session.pop(key, set()):
            self._forget(uri, key)

    def count(self) -> int:
        """Open subscriptions (for tests and diagnostics)."""
        return sum(len(s) for s in self._by_uri.values())

    async def updated(self, uri: str) -> None:
        for session in list(self._by_uri.get(uri, {}).values()):
            await session.send_resource_updated(uri)  # best effort: never raises


# Seconds the follower waits after a wake-up before it reads, so that a burst of changes costs one
# read of the log (and on PostgreSQL one numbering pass), not one per change.
GATHER = 0.005


class ChangeFollower:
    """Follows the event log and publishes resource updates for every new event."""

    def __init__(
        self,
        registry: Registry,
        publish: Callable[[list[str]], Awaitable[None]],
        poll_interval: float = 0.5,
    ) -> None:
        self.registry = registry
        self.publish = publish
        self.poll_interval = poll_interval
        self.last_seq: int | None = None
        self.advanced: list[Callable[[int], None]] = []  # told the new last seq after each catch-up that read events
        self.pages: list[Callable[[list[Event]], None]] = []  # told each page of new events as it is read
        self._wake = anyio.Event()

    def poke(self, _changed: Any = None) -> None:
        """Wake the follower now (this process just wrote something)."""
        self._wake.set()

    async def catch_up(self) -> int:
        """Publish everything after the last seen event; returns how many events were read.

        The first call starts from the end of the log. An unreadable event is recorded (logged
        once, noted in the registry's health) and stepped over, so notifications keep flowing.
        """
        if self.last_seq is None:
            self.last_seq = await self.registry.last_seq()
            return 0
        read = 0
        async for events in self.registry.event_pages(self.last_seq):
            for bad in (e for e in events if e.error):
                text = f"event {bad.seq} (task {bad.task_id}) cannot be read: {bad.error}; followers step over it"
                if self.registry.health.note(f"event:{bad.seq}", text):
                    log.warning("%s", text)
            self.last_seq = events[-1].seq
            read += len(events)
            for told in self.pages:
                told(events)
            await self.publish(uris_for(events))
        if read:
            for listener in self.advanced:
                listener(self.last_seq)
        return read

    async def _wait(self, delay: float) -> None:
        with anyio.move_on_after(delay):
            await self._wake.wait()
            await anyio.sleep(GATHER)  # the changes that follow this one are read with it
        self._wake = anyio.Event()

    async def run(self) -> None:
        """Follow until cancelled; errors are logged, recorded in health, and retried with backoff."""
        await run_forever("change follower", self.catch_up, self._wait, self.poll_interval, self.registry.health,
                          max_backoff=10.0)


def publisher(bus: SubscriptionBus, legacy: LegacySubscriptions) -> Callable[[list[str]], Awaitable[None]]:
    """Publish URIs to listen streams and legacy subscribers."""

    async def publish(uris: list[str]) -> None:
        for uri in uris:
            await bus.publish(ResourceUpdated(uri=uri))
            await legacy.updated(uri)

    return publish
