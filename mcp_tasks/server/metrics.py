"""Prometheus metrics for /metrics (DESIGN 8), in a CollectorRegistry of each server's own.

Registry-wide families: the same value on every server over one database, read from it at
scrape time in one snapshot, never by scanning the tasks or the log: tasks by state and events by
type and states moved between are the store's aggregates (maintained with every change, see
stores/base.py); the ready figures are the indexed reads the board uses.

    mcp_tasks_tasks{state}                        gauge      tasks in each state
    mcp_tasks_ready_tasks                         gauge      tasks claimable now
    mcp_tasks_oldest_ready_age_seconds            gauge      age of the oldest claimable task (absent: none)
    mcp_tasks_dead_letters                        gauge      FAILED tasks (out of retries, or not retryable)
    mcp_tasks_active_leases                       gauge      ASSIGNED and ACTIVE tasks
    mcp_tasks_transitions_total{from_state,to_state}  counter  state changes
    mcp_tasks_lease_expiries_total                counter    leases that ran out (the reaper took the task back)
    mcp_tasks_retries_total                       counter    retries (after a failure, and by hand)
    mcp_tasks_events_total{type}                  counter    events by type (claims made: type="claimed")
    mcp_tasks_last_event_seq                      gauge      seq of the newest event in the log

Per-process families: this server's own work (sum them over servers for the registry's):

    mcp_tasks_claims_total{outcome}               counter    claim calls: claimed, nothing_ready, refused,
                                                             error (the database), replayed (a request_id again)
    mcp_tasks_wait_time_seconds                   histogram  created to started, of tasks this server saw reach DONE
    mcp_tasks_work_time_seconds                   histogram  started to completed, likewise
    mcp_tasks_mcp_operation_duration_seconds{method,tool,error_type}  histogram  MCP requests
    mcp_tasks_store_transaction_duration_seconds{kind}  histogram  store transactions, queueing included
    mcp_tasks_follower_lag_events                 gauge      events in the log this server's change follower has
                                                             not published yet
    mcp_tasks_database_up                         gauge      1 when this scrape read the database (0: the
                                                             registry-wide families are left out)

No label ever holds a task id or an agent name. Label values that come from outside (method, tool,
event type) are bounded: anything unknown is "other".
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import INVALID_PARAMS
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from pydantic import ValidationError

from ..errors import StoreError, TaskError
from ..health import one_line
from ..registry import Registry
from ..states import LEASED_STATES, State
from ..stores.base import ReadTx
from ..stores.records import EventCount
from ..telemetry import Appended
from .tooling import refused

log = logging.getLogger(__name__)

# Seconds a task waits before work starts, and works: agents' tasks take seconds to hours.
TASK_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
# Seconds of one MCP request or store transaction.
CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
CLAIM_OUTCOMES = ("claimed", "nothing_ready", "refused", "error", "replayed")
# Requests a client sends a server (mcp.types); any other method is counted as "other".
METHODS = frozenset({
    "initialize", "ping", "completion/complete", "logging/setLevel", "prompts/get", "prompts/list",
    "resources/list", "resources/read", "resources/subscribe", "resources/unsubscribe", "resources/templates/list",
    "server/discover", "subscriptions/listen", "tasks/cancel", "tasks/get", "tasks/list", "tasks/result",
    "tools/call", "tools/list",
})
_EVENT_TYPE = re.compile(r"[a-z][a-z_]{0,39}\Z")
_STATES = {s.value: s for s in State}


class Figures:
    """What one scrape read: the registry's counts by state and event, and the ready figures."""

    def __init__(self, tasks: Mapping[State, int], counts: Iterable[EventCount], ready: int,
                 oldest_ready_age: float | None, last_seq: int) -> None:
        self.tasks: Tally[State] = Tally(tasks)
        self.transitions: Tally[tuple[State, State]] = Tally()
        self.events: Tally[str] = Tally()
        self.ready, self.oldest_ready_age, self.last_seq = ready, oldest_ready_age, last_seq
        for c in counts:  # a state that cannot be read (a damaged event, which verify reports) is left out
            self.events[c.type if isinstance(c.type, str) and _EVENT_TYPE.match(c.type) else "other"] += c.n
            frm, to = _STATES.get(c.from_state or ""), _STATES.get(c.to_state or "")
            if frm is not None and to is not None:
                self.transitions[(frm, to)] += c.n


class ServerMetrics:
    """The metrics of one server: per-process metrics it observes as the registry's telemetry sink
    (telemetry.Sink) and as MCP middleware (`OperationTimer`), and the registry-wide figures it
    reads at each scrape (`render`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        claims = Counter("mcp_tasks_claims", "Claim calls answered by this server, by outcome", ["outcome"], registry=r)
        self._claims = {o: claims.labels(o) for o in CLAIM_OUTCOMES}
        self.wait_time = Histogram("mcp_tasks_wait_time_seconds", "Seconds from creation to start of tasks this "
                                   "server saw reach DONE", buckets=TASK_BUCKETS, registry=r)
        self.work_time = Histogram("mcp_tasks_work_time_seconds", "Seconds from start to completion of tasks this "
                                   "server saw reach DONE", buckets=TASK_BUCKETS, registry=r)
        self.operations = Histogram("mcp_tasks_mcp_operation_duration_seconds", "MCP requests served, by method, "
                                    "tool and error type", ["method", "tool", "error_type"], buckets=CALL_BUCKETS,
                                    registry=r)
        transactions = Histogram("mcp_tasks_store_transaction_duration_seconds", "Store transactions, queueing for a "
                                 "connection included, by kind", ["kind"], buckets=CALL_BUCKETS, registry=r)
        self._transactions = {k: transactions.labels(k) for k in ("read", "write")}
        self.figures: Figures | None = None  # None: the last scrape could not read the database
        self.follower_seq: int | None = None
        r.register(_RegistryWide(self))

    # ---- telemetry.Sink
    def transaction(self, kind: str, seconds: float) -> None:
        """Time one store transaction."""
        self._transactions[kind].observe(seconds)

    def write(self, op: str, result: Any, events: list[Appended] | None, error: BaseException | None) -> None:
        """Count a claim's outcome; time the tasks this write brought to DONE."""
        if op == "claim":
            if error is not None:
                outcome = "refused" if isinstance(error, TaskError) and not isinstance(error, StoreError) else "error"
            else:
                outcome = "replayed" if events is None else "claimed" if result is not None else "nothing_ready"
            self._claims[outcome].inc()
        for e in events or ():
            if e.to_state is State.DONE:
                times = e.data.get("set", {})
                for key, histogram in (("wait_time", self.wait_time), ("work_time", self.work_time)):
                    if isinstance(times.get(key), (int, float)):
                        histogram.observe(times[key])

    # ---- scraping
    async def refresh(self, reg: Registry, follower_seq: int | None) -> None:
        """Read the registry-wide figures, in one snapshot."""
        self.follower_seq = follower_seq
        await reg.store.settle()

        def read(tx: ReadTx) -> Figures:
            now = reg.now(tx)
            oldest = tx.oldest_ready(now)
            return Figures(tx.count_by_state(), tx.event_totals(), tx.count_ready(now),
                           None if oldest is None else max(0.0, now - oldest), tx.last_seq())

        self.figures = await reg.store.read(read)

    async def render(self, reg: Registry | None, follower_seq: int | None, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scraper that sent `accept`, and its content type. When the database
        cannot be read the per-process families are still served (with mcp_tasks_database_up 0)."""
        try:
            if reg is None:
                raise RuntimeError("the server is starting or stopping")
            await self.refresh(reg, follower_seq)
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail for the database; say why once
            self.figures = None
            log.warning("metrics: cannot read the registry-wide figures: %s", one_line(exc))
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def _up(value: int) -> Metric:
    return GaugeMetricFamily("mcp_tasks_database_up", "1 when this scrape could read the database", value=value)


class _RegistryWide:
    """Custom collector: the registry-wide families from the last scrape's figures, and the
    follower's lag."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterator[Metric]:
        """Every family, for the registry's check of duplicate names."""
        yield _up(1)
        yield from self._families(Figures({}, [], 0, 0.0, 0), 0)

    def collect(self) -> Iterator[Metric]:
        """The families as of the last refresh."""
        m = self.metrics
        yield _up(0 if m.figures is None else 1)
        if m.figures is not None:
            yield from self._families(m.figures, m.follower_seq)

    @staticmethod
    def _families(figures: Figures, follower_seq: int | None) -> Iterator[Metric]:
        tasks = GaugeMetricFamily("mcp_tasks_tasks", "Tasks in each state", labels=["state"])
        for s in State:
            tasks.add_metric([s.value], figures.tasks[s])
        yield tasks
        yield GaugeMetricFamily("mcp_tasks_ready_tasks", "Tasks claimable now", value=figures.ready)
        if figures.oldest_ready_age is not None:
            yield GaugeMetricFamily("mcp_tasks_oldest_ready_age_seconds", "Age of the oldest claimable task",
                                    value=figures.oldest_ready_age)
        yield GaugeMetricFamily("mcp_tasks_dead_letters", "FAILED tasks: out of retries or not retryable",
                                value=figures.tasks[State.FAILED])
        yield GaugeMetricFamily("mcp_tasks_active_leases", "Tasks held by a running lease (ASSIGNED, ACTIVE)",
                                value=sum(figures.tasks[s] for s in LEASED_STATES))
        moves = CounterMetricFamily("mcp_tasks_transitions", "State changes", labels=["from_state", "to_state"])
        for (frm, to), n in sorted(figures.transitions.items()):
            moves.add_metric([frm.value, to.value], n)
        yield moves
        yield CounterMetricFamily("mcp_tasks_lease_expiries", "Leases that ran out", value=figures.events["lease_expired"])
        yield CounterMetricFamily("mcp_tasks_retries", "Retries, after a failure and by hand",
                                  value=figures.events["retried"])
        events = CounterMetricFamily("mcp_tasks_events", "Events by type", labels=["type"])
        for kind, n in sorted(figures.events.items()):
            events.add_metric([kind], n)
        yield events
        yield GaugeMetricFamily("mcp_tasks_last_event_seq", "Seq of the newest event in the log",
                                value=figures.last_seq)
        if follower_seq is not None:
            yield GaugeMetricFamily("mcp_tasks_follower_lag_events", "Events this server's change follower has "
                                    "not published yet", value=max(0, figures.last_seq - follower_seq))


def _codes(kind: type[TaskError]) -> set[str]:
    return {kind.code}.union(*(_codes(sub) for sub in kind.__subclasses__()))


REFUSAL_CODES = frozenset(_codes(TaskError))


def refusal_code(error: dict[str, Any]) -> str:
    """The registry's error code of a refused tool call ("role_required", "lease", ...), else
    "tool_error" (a bounded label: only the codes of errors.py)."""
    code = error.get("code")
    return code if code in REFUSAL_CODES else "tool_error"


class OperationTimer:
    """SDK server middleware: times every MCP request by method, tool and error type (a JSON-RPC
    error code; for a refused tool call, the registry's error code such as "role_required", or
    "tool_error"; or the exception's class)."""

    def __init__(self, metrics: ServerMetrics, tools: Iterable[str]) -> None:
        self.histogram = metrics.operations
        self.tools = frozenset(tools)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Run the request and observe how long it took."""
        if ctx.request_id is None:  # a notification
            return await call_next(ctx)
        method = ctx.method if ctx.method in METHODS else "other"
        tool = ""
        if method == "tools/call":
            name = ctx.params.get("name") if isinstance(ctx.params, Mapping) else None
            tool = name if isinstance(name, str) and name in self.tools else "other"
        error = ""
        start = time.perf_counter()
        try:
            result = await call_next(ctx)
            refusal = refused(result) if tool else None
            if refusal is not None:
                error = refusal_code(refusal)
            return result
        except MCPError as exc:
            error = str(exc.error.code)
            raise
        except ValidationError:
            error = str(INVALID_PARAMS)
            raise
        except BaseException as exc:
            error = type(exc).__qualname__
            raise
        finally:
            self.histogram.labels(method, tool, error).observe(time.perf_counter() - start)
