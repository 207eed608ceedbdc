"""/metrics over HTTP from real `mcp-tasks serve --http` processes, on every store.

A small run through real MCP clients (created, claimed, started, completed, failed and retried,
dead-lettered, cancelled, a lease expired by another process's reaper, a claim that found nothing
and one refused), then the Prometheus text is parsed and held against the board, the registry's
counts and the event log; a second server on the same database reports the same registry-wide
figures; counters only grow.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

from mcp_tasks import Registry, State

from .server_helpers import Agent, http_server

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

REGISTRY_WIDE = ("mcp_tasks_tasks", "mcp_tasks_ready_tasks", "mcp_tasks_dead_letters", "mcp_tasks_active_leases",
                 "mcp_tasks_transitions_total", "mcp_tasks_lease_expiries_total", "mcp_tasks_retries_total",
                 "mcp_tasks_events_total", "mcp_tasks_last_event_seq")
FAMILIES = {
    "mcp_tasks_tasks": "gauge", "mcp_tasks_ready_tasks": "gauge", "mcp_tasks_oldest_ready_age_seconds": "gauge",
    "mcp_tasks_dead_letters": "gauge", "mcp_tasks_active_leases": "gauge", "mcp_tasks_transitions": "counter",
    "mcp_tasks_lease_expiries": "counter", "mcp_tasks_retries": "counter", "mcp_tasks_events": "counter",
    "mcp_tasks_last_event_seq": "gauge", "mcp_tasks_claims": "counter", "mcp_tasks_wait_time_seconds": "histogram",
    "mcp_tasks_work_time_seconds": "histogram", "mcp_tasks_mcp_operation_duration_seconds": "histogram",
    "mcp_tasks_store_transaction_duration_seconds": "histogram", "mcp_tasks_follower_lag_events": "gauge",
    "mcp_tasks_database_up": "gauge",
}


async def scrape(base: str) -> tuple[dict[str, str], Samples]:
    """The families (name -> type) and every sample of `base`/metrics, as a Prometheus server reads them."""
    async with httpx2.AsyncClient(timeout=30) as http:
        r = await http.get(f"{base}/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def family(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


@asynccontextmanager
async def agent(base: str, name: str) -> AsyncIterator[Agent]:
    async with httpx2.AsyncClient(headers={"X-MCP-Tasks-Agent": name}, timeout=30) as http:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
            yield Agent(client)


async def work(w: Agent, task_id: str, outcome: str, **args: Any) -> None:
    """Claim `task_id`, start it, and complete or fail it."""
    lease = (await w.call("claim", task_id=task_id))["lease"]
    await w.call("start", task_id=task_id, lease=lease)
    if outcome == "complete":
        await w.call("complete", task_id=task_id, lease=lease)
    else:
        await w.call("fail", task_id=task_id, lease=lease, error="it broke", **args)


async def the_log(db: Any) -> tuple[dict[State, int], Counter[tuple[str, str]], Counter[str]]:
    """The registry's counts, and the event log tallied independently: transitions and event types."""
    async with Registry(db.store(), agent="auditor") as reg:
        counts = await reg.counts()
        moves: Counter[tuple[str, str]] = Counter()
        types: Counter[str] = Counter()
        async for page in reg.event_pages():
            for e in page:
                types[e.type] += 1
                if e.from_state is not None and e.to_state is not None:
                    moves[(e.from_state.value, e.to_state.value)] += 1
    return counts, moves, types


def assert_matches(samples: Samples, board: dict[str, Any], counts: dict[State, int],
                   moves: Counter[tuple[str, str]], types: Counter[str]) -> None:
    """Registry-wide families against the board, the registry's counts and the tallied log."""
    for s in State:
        assert value(samples, "mcp_tasks_tasks", state=s.value) == board["counts"][s.value] == counts[s], s
    assert value(samples, "mcp_tasks_ready_tasks") == board["ready"]
    assert value(samples, "mcp_tasks_dead_letters") == len(board["dead_letters"]) == counts[State.FAILED]
    assert value(samples, "mcp_tasks_active_leases") == counts[State.ASSIGNED] + counts[State.ACTIVE]
    transitions = {(dict(k)["from_state"], dict(k)["to_state"]): v
                   for k, v in family(samples, "mcp_tasks_transitions_total").items()}
    assert transitions == moves
    assert {dict(k)["type"]: v for k, v in family(samples, "mcp_tasks_events_total").items()} == types
    assert value(samples, "mcp_tasks_lease_expiries_total") == types["lease_expired"]
    assert value(samples, "mcp_tasks_retries_total") == types["retried"]
    assert value(samples, "mcp_tasks_last_event_seq") == sum(types.values())


async def test_metrics_match_the_board_and_agree_across_servers(db):
    with http_server(db.location) as base:
        async with agent(base, "planner") as planner, agent(base, "worker-1") as w:
            specs: list[dict[str, Any]] = [{"key": k, "title": k, "max_retries": 2 if k == "backoff" else 0}
                     for k in ("done", "retried", "dead", "backoff", "expired", "active", "assigned", "ready")]
            specs.append({"key": "waiting", "title": "waiting", "depends_on": ["active"]})
            ids = (await planner.call("create_tasks", tasks=specs))["by_key"]

            await work(w, ids["done"], "complete")
            await work(w, ids["retried"], "fail")  # no retries left: a dead letter, until retried by hand
            await planner.call("retry", task_id=ids["retried"])
            await work(w, ids["retried"], "complete")
            await work(w, ids["dead"], "fail")
            await work(w, ids["backoff"], "fail")  # retried after a backoff, then cancelled while it waits
            await planner.call("cancel", task_id=ids["backoff"], reason="not needed")
            await w.call("claim", task_id=ids["expired"])
            # Another process's reaper, an hour ahead, takes the lease back: only the log tells this server.
            async with Registry(db.store(), agent="elsewhere", clock=lambda: time.time() + 3600) as other:
                assert await other.reap() == [ids["expired"]]
            nothing = await w.call("claim", capabilities=["no-such-capability"])
            assert nothing.get("task") is None
            assert "cannot claim" in await w.refused("claim", task_id=ids["done"])
            active = await w.call("claim", task_id=ids["active"])
            await w.call("start", task_id=ids["active"], lease=active["lease"])
            await w.call("claim", task_id=ids["assigned"])

            started = time.monotonic()
            board = await planner.read("tasks://board")
            types1, first = await scrape(base)
            elapsed = time.monotonic() - started
            counts, moves, events = await the_log(db)
            assert {name: types1.get(name) for name in FAMILIES} == FAMILIES
            assert value(first, "mcp_tasks_database_up") == 1
            assert_matches(first, board, counts, moves, events)
            assert (counts[State.DONE], counts[State.FAILED], counts[State.CANCELLED], counts[State.PENDING]) == (2, 1, 1, 3)
            assert board["ready"] == 2 and events["lease_expired"] == 1 and events["retried"] == 2
            age = value(first, "mcp_tasks_oldest_ready_age_seconds")
            assert board["oldest_ready_age_s"] - 0.01 <= age <= board["oldest_ready_age_s"] + elapsed + 0.01
            assert value(first, "mcp_tasks_follower_lag_events") >= 0

            # This server's own work.
            assert {o: value(first, "mcp_tasks_claims_total", outcome=o)
                    for o in ("claimed", "nothing_ready", "refused", "error", "replayed")} == {
                "claimed": 8, "nothing_ready": 1, "refused": 1, "error": 0, "replayed": 0}
            assert value(first, "mcp_tasks_wait_time_seconds_count") == 2
            assert value(first, "mcp_tasks_work_time_seconds_count") == 2
            op = "mcp_tasks_mcp_operation_duration_seconds_count"
            assert value(first, op, method="tools/call", tool="claim", error_type="") == 9
            assert value(first, op, method="tools/call", tool="claim", error_type="invalid_transition") == 1
            assert value(first, op, method="resources/read", tool="", error_type="") == 1
            assert value(first, "mcp_tasks_store_transaction_duration_seconds_count", kind="write") >= 20
            assert value(first, "mcp_tasks_store_transaction_duration_seconds_count", kind="read") >= 2

            # Never a task id (or any name) as a label.
            for name, labels in first:
                assert not {"task_id", "task", "agent", "assignee"} & {k for k, _ in labels}, name
                assert not set(ids.values()) & {v for _, v in labels}, (name, labels)

            # Counters only grow, and the fold follows the log.
            await w.call("complete", task_id=ids["active"], lease=active["lease"])
            board = await planner.read("tasks://board")
            _, second = await scrape(base)
            counts, moves, events = await the_log(db)
            assert_matches(second, board, counts, moves, events)
            assert value(second, "mcp_tasks_transitions_total", from_state="ACTIVE", to_state="DONE") == \
                value(first, "mcp_tasks_transitions_total", from_state="ACTIVE", to_state="DONE") + 1
            assert board["ready"] == 3  # "waiting" is ready now
            for key, v in first.items():
                if key[0].endswith(("_total", "_count", "_sum", "_bucket")):
                    assert second.get(key, 0) >= v, key

            # A second server on the same database: the same registry-wide figures, none of the first's own work.
            with http_server(db.location) as other_base:
                _, elsewhere = await scrape(other_base)
                _, again = await scrape(base)
            for name in REGISTRY_WIDE:
                assert family(elsewhere, name) == family(again, name) == family(second, name), name
            assert family(elsewhere, "mcp_tasks_claims_total") == {
                frozenset({("outcome", o)}): 0 for o in ("claimed", "nothing_ready", "refused", "error", "replayed")}


async def test_each_scrape_reads_the_registry_wide_figures_anew(db):
    from mcp_tasks.server import metrics

    async with Registry(db.store(), agent="planner") as reg:
        ids = (await reg.create_tasks([{"title": f"t{i}"} for i in range(3)])).ids
        claim = await reg.claim(ids[0])
        assert claim is not None
        await reg.start(ids[0], claim.lease)
        m = metrics.ServerMetrics()
        await m.refresh(reg, None)
        assert m.figures is not None and m.figures.last_seq == await reg.last_seq() == 5
        assert {s: m.figures.tasks[s] for s in State} == await reg.counts()
        assert m.figures.transitions == {(State.PENDING, State.ASSIGNED): 1, (State.ASSIGNED, State.ACTIVE): 1}
        assert m.figures.events == {"created": 3, "claimed": 1, "started": 1}

        await reg.complete(ids[0], claim.lease, result={"ok": True})
        await m.refresh(reg, None)
        assert m.figures.tasks[State.DONE] == 1 and m.figures.tasks[State.ACTIVE] == 0
        assert m.figures.transitions[(State.ACTIVE, State.DONE)] == 1 and m.figures.events["completed"] == 1