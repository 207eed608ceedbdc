"""Live across hosts: subscribers attached to one server hear every change made through another
server on the same PostgreSQL database (LISTEN/NOTIFY wakes the change follower; the fallback poll
only covers lost notifications). Both protocol eras: a `subscriptions/listen` stream (2026-07-28)
and `resources/subscribe` (2025-11-25), on `task://ID` and `tasks://board`.

The test asserts that every change is heard; it prints the latencies (from the writer's call to
the subscriber's notification) and asserts no timing: MCP_TASKS_NOTIFY_CHANGES sets how many
changes are measured (default 50).
"""

from __future__ import annotations

import statistics
import time
import warnings

import anyio
import httpx2
import pytest
from mcp import Client, MCPDeprecationWarning
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourceUpdated
from mcp.types import ResourceUpdatedNotification

from .multihost import Cluster, env_int
from .server_helpers import Agent


@pytest.fixture(params=["postgres"])
def store_kind(request) -> str:
    """Only PostgreSQL: the point is servers on several hosts."""
    return request.param


class Heard:
    """When each URI was last announced to one subscriber (monotonic time), and how often."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.changed = anyio.Event()

    def add(self, uri: str) -> None:
        self.times.setdefault(uri, []).append(time.monotonic())
        self.changed.set()
        self.changed = anyio.Event()

    def first_after(self, uri: str, t: float) -> float | None:
        return next((x for x in self.times.get(uri, []) if x >= t), None)

    async def wait(self, uri: str, after: float, seconds: float = 15) -> float:
        """The first announcement of `uri` at or after `after`, waiting for it (bounded)."""
        with anyio.fail_after(seconds):
            while (found := self.first_after(uri, after)) is None:
                await self.changed.wait()
        return found


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def summary(name: str, latencies: list[float]) -> str:
    ms = [x * 1000 for x in latencies]
    return (f"{name}: p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 99):.1f} ms, "
            f"max {max(ms):.1f} ms over {len(ms)} changes")


@pytest.mark.filterwarnings("ignore::mcp.MCPDeprecationWarning")  # resources/subscribe is the 2025 way
async def test_subscribers_on_one_server_hear_every_change_made_through_another(db, tmp_path):
    changes = env_int("MCP_TASKS_NOTIFY_CHANGES", 50)
    cluster = Cluster(db.location, tmp_path, 2)
    watcher, writer = cluster.servers
    listened, legacy = Heard(), Heard()

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            legacy.add(str(message.params.uri))

    try:
        await cluster.start()
        async with httpx2.AsyncClient(headers={"X-MCP-Tasks-Agent": "writer"}) as w_http, \
                httpx2.AsyncClient(headers={"X-MCP-Tasks-Agent": "watcher"}) as r_http, \
                httpx2.AsyncClient(headers={"X-MCP-Tasks-Agent": "old-watcher"}) as l_http:
            async with Client(streamable_http_client(f"{writer.base}/mcp", http_client=w_http)) as w_client, \
                    Client(streamable_http_client(f"{watcher.base}/mcp", http_client=r_http)) as r_client, \
                    Client(streamable_http_client(f"{watcher.base}/mcp", http_client=l_http), mode="legacy",
                           message_handler=on_message) as l_client:
                changer = Agent(w_client)
                tid = (await changer.call("create_tasks", tasks=[{"title": "watched from another host"}]))["ids"][0]
                uris = [f"task://{tid}", "tasks://board"]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", MCPDeprecationWarning)
                    for uri in uris:
                        await l_client.subscribe_resource(uri)
                async with r_client.listen(resource_subscriptions=uris) as sub:
                    assert sorted(sub.honored.resource_subscriptions) == sorted(uris)

                    async def consume() -> None:
                        async for event in sub:
                            if isinstance(event, ResourceUpdated):
                                listened.add(event.uri)

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(consume)
                        from_call: dict[str, list[float]] = {"listen": [], "subscribe": []}
                        from_answer: dict[str, list[float]] = {"listen": [], "subscribe": []}
                        for i in range(changes):
                            began = time.monotonic()
                            await changer.call("update_task", task_id=tid, priority=i % 10 + 1)
                            answered = time.monotonic()
                            for name, heard in (("listen", listened), ("subscribe", legacy)):
                                for uri in uris:  # every change is heard, on every URI, in both eras
                                    at = await heard.wait(uri, began)
                                    if uri == uris[0]:
                                        from_call[name].append(at - began)
                                        from_answer[name].append(max(0.0, at - answered))
                        tg.cancel_scope.cancel()
        assert watcher.alive() and writer.alive()
        assert "Traceback" not in cluster.logs(), cluster.logs()
    finally:
        cluster.stop()
    print()
    for name in ("listen", "subscribe"):
        print(summary(f"{name} (from the writer's call)", from_call[name]))
        print(summary(f"{name} (from the writer's answer)", from_answer[name]))
