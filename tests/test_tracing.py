"""OpenTelemetry traces, on every store: the SDK's span of each MCP request carries the task, the
agent and the transition, with a child span per store transaction; `serve` exports only when the
standard OTEL_* variables ask for it, and otherwise never imports the OpenTelemetry SDK."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

from mcp_tasks.server.app import create_server

from .server_helpers import MCP_TASKS, ROOT, Agent, free_port, http_process


class Switch(Sampler):
    """Records spans only while a test here listens, so the rest of the suite runs untraced."""

    on = False

    def should_sample(self, parent_context: Any, trace_id: int, name: str, kind: Any = None, attributes: Any = None,
                      links: Any = None, trace_state: Any = None) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "switch"


SWITCH = Switch()
EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider (installed once: OpenTelemetry allows one), recording for this test."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(sampler=SWITCH)
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    SWITCH.on = True
    try:
        yield EXPORTER
    finally:
        SWITCH.on = False
        EXPORTER.clear()


def the_call(spans: InMemorySpanExporter, tool: str) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one span of a tools/call of `tool`, and its children."""
    finished = spans.get_finished_spans()
    calls = [s for s in finished if s.name == f"tools/call {tool}"]
    assert len(calls) == 1, [s.name for s in finished]
    call = calls[0]
    assert call.context is not None
    children = [s for s in finished if s.parent is not None and s.parent.span_id == call.context.span_id]
    return call, children


async def test_tool_call_spans_carry_task_agent_transition_and_store_spans(db, spans):
    async with Client(create_server(db.location, agent="tracer")) as client:
        a = Agent(client)
        ids = (await a.call("create_tasks", tasks=[{"title": "traced", "max_retries": 1}]))["ids"]

        spans.clear()
        claimed = await a.call("claim")
        call, children = the_call(spans, "claim")
        attrs = call.attributes or {}
        assert attrs["mcp_tasks.task_id"] == ids[0]
        assert attrs["mcp_tasks.agent"] == "tracer"
        assert attrs["mcp_tasks.transition"] == "PENDING->ASSIGNED"
        assert attrs["mcp_tasks.events"] == ("claimed",)
        assert attrs["gen_ai.tool.name"] == "claim"
        writes = [s for s in children if s.name == "mcp_tasks.store.write"]
        assert len(writes) == 1
        assert (writes[0].attributes or {})["db.system.name"] == {"sqlite": "sqlite", "postgres": "postgresql"}[db.kind]
        assert writes[0].kind == trace.SpanKind.CLIENT

        await a.call("start", task_id=ids[0], lease=claimed["lease"])
        spans.clear()
        await a.call("fail", task_id=ids[0], lease=claimed["lease"], error="flaky")
        call, _ = the_call(spans, "fail")
        assert (call.attributes or {})["mcp_tasks.transition"] == "ACTIVE->FAILED->PENDING"
        assert (call.attributes or {})["mcp_tasks.events"] == ("failed", "retried")

        spans.clear()
        await a.refused("start", task_id=ids[0], lease=claimed["lease"])  # the lease ended with the failure
        call, children = the_call(spans, "start")
        attrs = call.attributes or {}
        assert attrs["error.type"] == "tool_error"
        assert (attrs["mcp_tasks.task_id"], attrs["mcp_tasks.agent"]) == (ids[0], "tracer")
        assert "mcp_tasks.transition" not in attrs
        assert [s.status.status_code for s in children if s.name == "mcp_tasks.store.write"] == [trace.StatusCode.ERROR]

        spans.clear()
        await a.read("tasks://board")
        finished = spans.get_finished_spans()
        board = [s for s in finished if s.name == "resources/read"]
        assert len(board) == 1 and board[0].context is not None
        assert [s.name for s in finished if s.parent and s.parent.span_id == board[0].context.span_id] == \
            ["mcp_tasks.store.read"]

    # The reaper's and the change follower's transactions start no traces of their own.
    assert all(s.parent is not None for s in spans.get_finished_spans() if s.name.startswith("mcp_tasks.store."))


def without_otel(**extra: str) -> dict[str, str]:
    """This process's environment without OTEL_* variables, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}, **extra}


async def create_and_claim(base: str) -> str:
    """Create a task and claim it through a real MCP client over HTTP; the task's id."""
    async with httpx2.AsyncClient(headers={"X-MCP-Tasks-Agent": "otel-agent"}, timeout=30) as http:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
            a = Agent(client)
            task: str = (await a.call("create_tasks", tasks=[{"title": "exported"}]))["ids"][0]
            assert (await a.call("claim", task_id=task))["task"]["id"] == task
            return task


async def test_serve_imports_no_opentelemetry_sdk_unless_asked(db, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-X", "importtime", *MCP_TASKS[1:], "serve", "--http", "--port", str(port), "--db", db.location]
    with http_process(argv, base, tmp_path / "serve.log", env=without_otel()) as log:
        await create_and_claim(base)
        log.seek(0)
        imported = log.read().decode()
    modules = {line.rsplit("|", 1)[-1].strip() for line in imported.splitlines() if line.startswith("import time:")}
    assert {"mcp_tasks.server.metrics", "mcp_tasks.telemetry", "opentelemetry.trace"} <= modules  # listed: -X importtime works
    assert not [m for m in modules if m.startswith("opentelemetry.sdk")]


async def test_serve_exports_spans_when_the_otel_variables_ask(db, tmp_path):
    port, out = free_port(), tmp_path / "spans.out"
    base = f"http://127.0.0.1:{port}"
    argv = [*MCP_TASKS, "serve", "--http", "--port", str(port), "--db", db.location]
    # always_on: this test process's own provider (the `spans` fixture, if it ran) sends a traceparent
    # that says "not sampled", which the default sampler would follow.
    env = without_otel(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="registry-7", OTEL_TRACES_SAMPLER="always_on")
    with http_process(argv, base, tmp_path / "serve.log", env=env, stdout=out) as log:
        task = await create_and_claim(base)
        log.seek(0)
        assert "exporting traces to console" in log.read().decode()
    text = out.read_text()  # the server has stopped: its batch of spans was flushed on the way out
    assert '"mcp_tasks.transition": "PENDING->ASSIGNED"' in text
    assert f'"mcp_tasks.task_id": "{task}"' in text
    assert '"service.name": "registry-7"' in text
    assert '"name": "mcp_tasks.store.write"' in text


def test_serve_refuses_an_exporter_that_is_not_installed(db):
    env = {**without_otel(OTEL_TRACES_EXPORTER="no-such-exporter"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*MCP_TASKS, "serve", "--db", db.location], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-exporter" in lines[0] and "mcp-tasks[otel]" in lines[0], done.stderr
