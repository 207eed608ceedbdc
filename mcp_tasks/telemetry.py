"""Traces of the registry's work, and the hooks that per-process metrics hang on (DESIGN 8).

Only opentelemetry-api is used here. Until a tracer provider is installed (`serve` installs one
when the `otel` extra is installed and the standard OTEL_* variables ask for export, see
`configure_export`; tests install an in-memory one) every span below is a no-op.

- `Telemetry.write` wraps each registry write. On the current span (the MCP SDK's span of the
  request) it sets `mcp_tasks.agent`; `mcp_tasks.task_id`: the task the call named, else the task
  whose state it changed last (a claim's pick); `mcp_tasks.transition`: that task's path through
  the states, such as "PENDING->ASSIGNED" or "ACTIVE->FAILED->PENDING"; `mcp_tasks.events`: its
  event types; `mcp_tasks.tasks_changed`: how many tasks the call changed (dependents and leases a
  claim reaped included). Then it tells the sink what the write did.
- `TracedStore` wraps a store: a transaction run inside a recorded span gets a child span,
  "mcp_tasks.store.write" or "mcp_tasks.store.read"; background transactions (the lease reaper,
  the change follower) start no traces of their own. The sink hears every transaction's duration.
- `Sink`: what the server's metrics (server/metrics.py) implement to count these per process.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping
from importlib.metadata import entry_points
from typing import Any, Callable, NamedTuple, Protocol, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from .config import ConfigError
from .models import Caller
from .states import State
from .stores.base import ReadTx, Store, WriteTx

R = TypeVar("R")
T = TypeVar("T")
_tracer = trace.get_tracer("mcp_tasks")


class Appended(NamedTuple):
    """One event a transaction appended, as the transaction script knows it (`data` not copied)."""

    task_id: str
    type: str
    from_state: State | None
    to_state: State | None
    data: dict[str, Any]


class Recorded(Protocol):
    """What a write transaction leaves behind: the events it appended, in order."""

    appended: list[Appended]


W = TypeVar("W", bound="Recorded | None")


class Sink(Protocol):
    """Receives the per-process observations of one registry (the server's metrics)."""

    def transaction(self, kind: str, seconds: float) -> None:
        """A store transaction of `kind` ("read" or "write") took `seconds`, queueing included."""
        ...

    def write(self, op: str, result: Any, events: list[Appended] | None, error: BaseException | None) -> None:
        """Registry operation `op` committed `events` and answered `result` (`events` None: it
        answered a repeated request_id with the stored answer), or failed with `error`."""
        ...


class Telemetry:
    """Traces and per-process observations of one registry's writes and store transactions."""

    def __init__(self) -> None:
        self.sink: Sink | None = None

    async def write(self, op: str, caller: Caller, task_id: Any, commit: Awaitable[tuple[R, W]]) -> tuple[R, W]:
        """Await `commit`, the write transaction of registry operation `op` (its answer and the
        transaction that ran, None for a replayed answer), noting it on the current span and to the
        sink. `task_id`: the task the call names, if any."""
        span = trace.get_current_span()
        recording = span.is_recording()
        if recording:
            span.set_attribute("mcp_tasks.agent", caller.agent)
            if isinstance(task_id, str):
                span.set_attribute("mcp_tasks.task_id", task_id)
        try:
            result, tx = await commit
        except Exception as exc:
            if self.sink is not None:
                self.sink.write(op, None, None, exc)
            raise
        events = None if tx is None else tx.appended
        if recording and events:
            _annotate(span, task_id, events)
        if self.sink is not None:
            self.sink.write(op, result, events, None)
        return result, tx


def _annotate(span: Span, named: Any, events: list[Appended]) -> None:
    """The task, its path through the states and its events on `span` (module docstring)."""
    moved = [e for e in events if e.to_state is not None]
    task = named if isinstance(named, str) else (moved[-1] if moved else events[-1]).task_id
    path: list[str] = []
    for e in events:
        if e.task_id == task and e.to_state is not None:
            if not path and e.from_state is not None:
                path.append(e.from_state.value)
            path.append(e.to_state.value)
    span.set_attribute("mcp_tasks.task_id", task)
    if len(path) > 1:
        span.set_attribute("mcp_tasks.transition", "->".join(path))
    span.set_attribute("mcp_tasks.events", [e.type for e in events if e.task_id == task])
    span.set_attribute("mcp_tasks.tasks_changed", len({e.task_id for e in events}))


class TracedStore:
    """A store whose transactions are traced and timed (module docstring); everything else is the
    wrapped store's."""

    def __init__(self, store: Store, telemetry: Telemetry) -> None:
        self.store = store
        self.telemetry = telemetry
        self.dialect, self.location = store.dialect, store.location
        self._attributes = {"db.system.name": {"postgres": "postgresql"}.get(store.dialect, store.dialect)}

    @property  # learnt by open(): the wrapped store's, always
    def read_only(self) -> bool:
        return self.store.read_only

    @read_only.setter
    def read_only(self, value: bool) -> None:
        self.store.read_only = value

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    async def write(self, fn: Callable[[WriteTx], T]) -> T:
        return await self._run("write", self.store.write(fn))

    async def read(self, fn: Callable[[ReadTx], T]) -> T:
        return await self._run("read", self.store.read(fn))

    def reader_location(self) -> str | None:
        return self.store.reader_location()

    async def settle(self) -> None:
        await self.store.settle()

    async def watch(self, wake: Callable[[], None]) -> None:
        await self.store.watch(wake)

    async def _run(self, kind: str, work: Awaitable[T]) -> T:
        start = time.perf_counter()
        try:
            if not trace.get_current_span().is_recording():
                return await work
            with _tracer.start_as_current_span(f"mcp_tasks.store.{kind}", kind=SpanKind.CLIENT,
                                               attributes=self._attributes):
                return await work
        finally:
            if self.telemetry.sink is not None:
                self.telemetry.sink.transaction(kind, time.perf_counter() - start)


def flush_traces(timeout_ms: int = 2000) -> None:
    """Send the spans an exporting tracer provider still holds (a server stopping: uvicorn ends the
    process on SIGTERM without running atexit, where the SDK would flush)."""
    force_flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if callable(force_flush):
        force_flush(timeout_ms)


class ExportUnavailable(ConfigError):
    """The OTEL_* variables ask for an exporter that is not installed."""


def configure_export(env: Mapping[str, str]) -> str | None:
    """Install an OpenTelemetry SDK tracer provider that exports spans, when the standard variables
    ask for it: OTEL_TRACES_EXPORTER (otlp, console, or any installed exporter; "none" asks for
    nothing), or an OTLP endpoint alone (OTEL_EXPORTER_OTLP_ENDPOINT or
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), which means otlp. OTEL_SDK_DISABLED=true turns it off.
    The exporters, the sampler and the resource read their own OTEL_* variables.

    Returns one line saying where spans go, or None when nothing was asked for (then nothing of the
    SDK is imported). Raises ExportUnavailable when the SDK or the exporter is not installed."""
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names and (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        names = ["otlp"]
    names = [n for n in names if n != "none"]
    if not names or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ExportUnavailable("the OTEL_* variables ask for trace export, but the OpenTelemetry SDK is not "
                                "installed: pip install 'mcp-tasks[otel]'") from None
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
    exporters = []
    for name in names:
        if name == "otlp":
            name = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}.get(protocol.strip(), "")
            if not name:
                raise ExportUnavailable(f"OTLP protocol {protocol!r} is not supported for traces: use grpc or "
                                        "http/protobuf")
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            raise ExportUnavailable(f"no installed package provides the {name!r} trace exporter that the OTEL_* "
                                    "variables ask for: pip install 'mcp-tasks[otel]'")
        exporters.append((name, next(iter(found)).load()))
    from . import __version__

    attributes = {"service.version": __version__}
    if not env.get("OTEL_SERVICE_NAME") and "service.name=" not in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        attributes["service.name"] = "mcp-tasks"
    provider = TracerProvider(resource=Resource.create(attributes))
    for _, exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter()))
    trace.set_tracer_provider(provider)
    return f"exporting traces to {', '.join(name for name, _ in exporters)}"
