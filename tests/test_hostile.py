"""Hostile input through real MCP clients, for every tool, on every store (the `db` fixture).

Each call takes valid arguments for a tool, aimed at a live task in the state the tool needs
(so refusals come from deep in the registry as well as from argument validation), and mutates
one field: a wrong JSON type, a missing or unknown field, a huge string, deep nesting, control
characters, odd Unicode, SQL-looking text, an unknown or malformed id, a negative, huge or
fractional number. A fixed sweep first gives every field of every tool each classic bad value;
hypothesis then draws further mutations. Every answer must be a valid result (matching the tool's output schema) or an
isError that names what was wrong, never the SDK's bare internal error and never a JSON-RPC
error; a refused call must leave the database as it was; afterwards the server still answers and
the event log still replays to the stored tasks (`Registry.verify`). The documented maximum sizes
are tested at the boundary: the limit is accepted, one more is refused with a message naming it.

Size: MCP_TASKS_HOSTILE_EXAMPLES (default 10) hypothesis examples per tool and protocol era (a
fifth of that over stdio), about a minute for the whole file. Run far longer by hand, e.g.

    MCP_TASKS_HOSTILE_EXAMPLES=5000 MCP_TASKS_HOSTILE_RANDOM=1 python -m pytest tests/test_hostile.py

The default run is derandomized (the same examples every time); MCP_TASKS_HOSTILE_RANDOM=1
draws new ones on every run.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, PromptReference, ResourceTemplateReference

from mcp_tasks import Registry, limits
from mcp_tasks.errors import InvalidInput
from mcp_tasks.server import create_server
from mcp_tasks.server.app import state_of
from mcp_tasks.server.tools import build_tools
from mcp_tasks.stores import make_store

from .helpers import FakeClock
from .server_helpers import ROOT, Agent, stdio_params

EXAMPLES = int(os.environ.get("MCP_TASKS_HOSTILE_EXAMPLES", "10"))
RANDOM = os.environ.get("MCP_TASKS_HOSTILE_RANDOM", "") not in ("", "0")
MODES = ["auto", "legacy"]
# The long sweep runs each protocol era on SQLite and the newest on PostgreSQL: what the store sees
# (and must leave unchanged) does not depend on the era the arguments arrived in.
STORES_AND_ERAS = [("sqlite", "auto"), ("sqlite", "legacy"), ("postgres", "auto")]

# The tools as the server publishes them (schemas are static: build_tools needs no live app here).
TOOLS = {t.name: t for t in build_tools(None)}
TOOL_NAMES = sorted(TOOLS)
INPUT = {name: t.parameters for name, t in TOOLS.items()}
OUTPUT = {name: t.fn_metadata.output_schema for name, t in TOOLS.items()}

# ---------------------------------------------------------------- hostile values

SQL = [
    "'; DROP TABLE tasks; --", "' OR '1'='1", "\" OR 1=1 --", "%", "_", "%%_%", "\\", "\\'",
    "1; DELETE FROM events", "t-' UNION SELECT * FROM tasks --", "NULL", "null",
]
ODD_TEXT = [
    "", " ", "\t\n", "\x00", "nul\x00inside", "\x01\x02\x1b[31mred\x1b[0m", "\x7f\x80\x9b", "\u2028\u2029",
    "\u202eevil\u202c", "zero\u200bwidth\u200d", "\ufeffbom", "\ufffd\ufffe\uffff", "🚀🔥👩‍👩‍👧", "e\u0301\u0301\u0301",
    "\U0010ffff", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ﷺ", "ا\u200fعربي", "${jndi:ldap://x}", "{{7*7}}", "<script>alert(1)</script>",
    "../../etc/passwd", "C:\\Windows\\System32", "[\"looks\", \"like\", \"json\"]", '{"a": 1}', "123", "true",
]
SURROGATES = ["\ud800", "lone \udfff surrogate", "\udbff\udc00\udc00"]
BAD_IDS = [
    "t-zzzzzzzzzz", "t-0000000000", "t-0000", "t-", "t-ABCDEFGHIJ", "t-" + "a" * 33, "T-abcdefghjk", "t-abc def",
    "task://t-abcd", "t-abcd\n", " t-abcd", "t-abcd%", "t-ab_cd",
]
NUMBERS = [
    0, -1, 1, -(2**31), 2**31, 2**53 + 1, 2**63, -(2**63) - 1, 10**30, -(10**30), 10**100,
    0.5, -0.0, 1.0, 3.0, 1e308, -1e308, 1e-308, float("nan"), float("inf"), float("-inf"),
]
EXTRA_NAMES = ["extra", "titel", "task", "agent", "lease_token", "__proto__", "constructor", "", " ", "\x00",
               "'; DROP TABLE tasks; --", "a" * 300]


def nested(depth: int, kind: str) -> Any:
    """A JSON value with `depth` levels of arrays or objects."""
    value: Any = "leaf"
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


def texts(wire: bool) -> st.SearchStrategy[str]:
    """Short hostile strings, with lone surrogates unless they must cross a pipe as JSON."""
    pool = SQL + ODD_TEXT + BAD_IDS + ([] if wire else SURROGATES)
    return st.one_of(st.sampled_from(pool), st.text(max_size=40))


def hostile_values(wire: bool) -> st.SearchStrategy[Any]:
    """Any wrong, odd or oversized JSON value (`wire`: one the SDK's stdio client can send and the
    SDK's server transport can parse; deeper or unencodable input is covered by the raw stdio test)."""
    scalars = st.one_of(
        st.none(), st.booleans(), st.sampled_from(NUMBERS), st.integers(), st.floats(), texts(wire))
    small_json = st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8)
    # The SDK's client cannot serialize much past 250 levels, and the SDK's parser refuses messages
    # nested past about 195 (a JSON-RPC parse error, not a tool refusal); deeper input goes over raw
    # stdio below.
    depths = [limits.MAX_JSON_DEPTH + 1, 100, 150 if wire else 240]
    deep = st.builds(nested, st.sampled_from(depths), st.sampled_from(["list", "dict"]))
    huge = st.builds(lambda n, ch: ch * n, st.sampled_from([limits.MAX_TEXT + 1, 70_000, 1_000_000]),
                     st.sampled_from(["x", "é", "🚀", "\x00", "'"]))
    many = st.builds(lambda n, item: [item] * n, st.sampled_from([limits.MAX_TAGS + 1, limits.MAX_BATCH + 1, 10_000]),
                     st.sampled_from(["a", "t-zzzzzzzzzz", 1, None, {}]))
    containers = st.sampled_from([[], {}, ["a"], [["nested"]], {"a": 1}, [None], [1, 2, 3], {"title": "x"}])
    return st.one_of(scalars, small_json, deep, huge, many, containers)


def boundary_values(schema: dict[str, Any]) -> list[Any]:
    """Values at and just past the bounds that a (compacted) JSON schema publishes."""
    out: list[Any] = []
    if "maxLength" in schema:
        out += ["x" * schema["maxLength"], "x" * (schema["maxLength"] + 1)]
    for key, step in (("minimum", -1), ("maximum", 1)):
        if key in schema:
            out += [schema[key], schema[key] + step, schema[key] + step / 2]
    if "maxItems" in schema:
        out += [["a"] * (schema["maxItems"] + 1)]
    if "minItems" in schema:
        out += [[]]
    if "enum" in schema:
        out += [str(v).lower() for v in schema["enum"][:2]]
    return out


# ---------------------------------------------------------------- valid arguments, and where to mutate them

# The state each tool's target task must be in (None: the tool needs no task).
NEEDS = {
    "list_available": None, "find_tasks": None, "create_tasks": None, "get_task": "PENDING", "claim": "PENDING",
    "start": "ASSIGNED", "release": "ASSIGNED", "checkpoint": "ACTIVE", "complete": "ACTIVE", "fail": "ACTIVE",
    "pause": "ACTIVE", "resume": "PAUSED", "update_task": "PENDING", "cancel": "PENDING", "schedule": "BACKLOG",
    "retry": "FAILED", "review": "REVIEW",
}
TAG = "hostile"


def valid_args(tool: str, tid: str, lease: str | None, anchor: str) -> dict[str, Any]:
    """Arguments that succeed for `tool` on task `tid` (in the state NEEDS names)."""
    rid = {"request_id": "r-" + uuid.uuid4().hex}
    held = {"task_id": tid, "lease": lease}
    return {
        "list_available": {"capabilities": ["general"], "tags": [TAG], "limit": 5},
        "find_tasks": {"state": "PENDING", "assignee": "worker", "tag": TAG, "text": "prepared", "limit": 5},
        "get_task": {"task_id": tid, "events": 5},
        "claim": {"task_id": tid, "capabilities": ["general"], "tags": [TAG], "lease_seconds": 86400, "start": True,
                  **rid},
        "start": {**held, **rid},
        "release": {**held, "reason": "busy elsewhere", **rid},
        "checkpoint": {**held, "data": {"step": 1, "seen": ["a", "b"]}, "note": "halfway", "progress": 50, **rid},
        "complete": {**held, "result": {"ok": True}, "artifacts": ["out/report.md"],
                     "usage": {"tokens": 10, "api_calls": 1, "cost": 0.5}, **rid},
        "fail": {**held, "error": "boom", "retryable": True, **rid},
        "pause": {**held, "reason": "waiting for input", **rid},
        "resume": {**held, **rid},
        "create_tasks": {"tasks": [
            {"key": "a", "title": "A", "description": "first", "type": "general", "priority": 5, "tags": [TAG],
             "depends_on": [anchor], "requires_review": False, "max_retries": 3},
            {"key": "b", "title": "B", "depends_on": ["a"]},
        ], "ready": True, **rid},
        "update_task": {"task_id": tid, "expected_version": 1, "title": "renamed", "description": "new text",
                        "type": "general", "priority": 6, "tags": [TAG, "edited"], "requires_review": False,
                        "max_retries": 2, "add_depends_on": [anchor], "remove_depends_on": [], **rid},
        "cancel": {"task_id": tid, "reason": "not needed", "expected_version": 1, **rid},
        "schedule": {"task_ids": [tid], **rid},
        "retry": {"task_id": tid, **rid},
        "review": {"task_id": tid, "approve": True, "comment": "looks right", **rid},
    }[tool]


def sub_schema(schema: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    for part in path:
        schema = (schema.get("items") if isinstance(part, int) else schema.get("properties", {}).get(part)) or {}
    return schema


def paths_of(tool: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(fields that can be set or dropped, objects that can get an unknown field) for `tool`."""
    example = valid_args(tool, "t-aaaaaaaaaa", "lease", "t-bbbbbbbbbb")
    fields: list[tuple[Any, ...]] = [(name,) for name in INPUT[tool]["properties"]]
    objects: list[tuple[Any, ...]] = [()]

    def walk(value: Any, path: tuple[Any, ...]) -> None:
        if path and path[0] in ("data", "result"):
            return  # free JSON: nothing in it is a field
        if isinstance(value, list):
            for i in sorted({0, len(value) - 1}) if value else []:
                fields.append((*path, i))
                walk(value[i], (*path, i))
        elif isinstance(value, dict) and path:
            objects.append(path)
            for name in {*value, *sub_schema(INPUT[tool], path).get("properties", {})}:
                fields.append((*path, name))
                walk(value.get(name), (*path, name))

    for name, value in example.items():
        walk(value, (name,))
    return sorted(set(fields), key=str), objects


@dataclass(frozen=True)
class Mutation:
    """One change to valid arguments: set a field, drop it, or add an unknown one."""

    kind: str
    path: tuple[Any, ...]
    value: Any = None

    def apply(self, args: dict[str, Any]) -> dict[str, Any]:
        args = json.loads(json.dumps(args))
        parent: Any = args
        for part in self.path[:-1]:
            parent = parent[part]
        last = self.path[-1]
        if self.kind == "drop":
            if isinstance(parent, dict):
                parent.pop(last, None)
            else:
                del parent[last]
        else:
            parent[last] = self.value
        return args

    @property
    def field(self) -> str:
        """The name of the mutated field (the nearest named part of the path)."""
        return next((p for p in reversed(self.path) if isinstance(p, str)), "arguments")


def mutations(tool: str, wire: bool) -> st.SearchStrategy[Mutation]:
    fields, objects = paths_of(tool)
    values = hostile_values(wire)

    def set_field(path: tuple[Any, ...]) -> st.SearchStrategy[Mutation]:
        edge = boundary_values(sub_schema(INPUT[tool], path))
        value = st.one_of(values, st.sampled_from(edge)) if edge else values
        return st.builds(Mutation, st.just("set"), st.just(path), value)

    extra_name = st.one_of(st.sampled_from(EXTRA_NAMES), st.text(max_size=20))
    return st.one_of(
        st.sampled_from(fields).flatmap(set_field),
        st.sampled_from(fields).map(lambda p: Mutation("drop", p)),
        st.builds(lambda obj, name, value: Mutation("set", (*obj, name), value),
                  st.sampled_from(objects), extra_name.filter(lambda n: n not in INPUT[tool]["properties"]), values),
    )


# ---------------------------------------------------------------- a session: two agents, one database


class Session:
    """A worker and a reviewer on one database, driven synchronously (hypothesis) through a portal."""

    def __init__(self, portal: BlockingPortal, worker: Client, reviewer: Client, probe: Registry, as_worker: Registry) -> None:
        self.portal = portal
        self.worker, self.reviewer = Agent(worker), Agent(reviewer)
        self.probe = probe
        self.as_worker = Direct(as_worker)
        self.anchor = self.run(self.worker.call("create_tasks", tasks=[{"title": "anchor", "tags": [TAG]}]))["ids"][0]

    def run(self, coro: Any) -> Any:
        async def go() -> Any:
            return await coro
        return self.portal.call(go)

    def call(self, agent: Agent, tool: str, args: dict[str, Any]) -> CallToolResult:
        """One tools/call; a JSON-RPC error instead of a result fails the test."""
        try:
            return self.run(agent.client.call_tool(tool, args))
        except MCPError as exc:
            raise AssertionError(f"{tool} answered with a JSON-RPC error, not a tool result: {exc.code} {exc.message}")

    def prepare(self, state: str | None) -> tuple[str, str | None]:
        """A fresh task in `state`, held by the worker: made in this process (what is under test
        is the call that follows, not the calls that set it up)."""
        return ("", None) if state is None else self.run(prepare(self.as_worker, state))

    def snapshot(self, ids: list[str]) -> Any:
        return self.run(snapshot(self.probe, ids))

    def still_answers(self) -> None:
        """Normal work goes through, and the event log replays to every stored task."""
        tid, lease = self.prepare("ACTIVE")
        self.run(self.worker.call("checkpoint", task_id=tid, lease=lease, data={"fine": True}, progress=90))
        done = self.run(self.worker.call("complete", task_id=tid, lease=lease, result="ok"))
        assert done["state"] == "DONE"
        assert self.run(self.probe.verify()) == []


class Direct:
    """The registry of an agent, called as its tools are: `call(tool, **args)` gives the answer as
    data. The same database and agent as the server under test, without the transport."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def call(self, tool: str, **args: Any) -> dict[str, Any]:
        return (await getattr(self.registry, tool)(**args)).model_dump(mode="json")


async def prepare(worker: Agent | Direct, state: str, **spec: Any) -> tuple[str, str | None]:
    """A fresh task moved into `state` by `worker` through the tools; returns (id, lease)."""
    spec = {"title": "prepared", "tags": [TAG], "requires_review": state == "REVIEW",
            "max_retries": 0 if state == "FAILED" else 3, **spec}
    tid = (await worker.call("create_tasks", tasks=[spec], ready=state != "BACKLOG"))["ids"][0]
    if state in ("BACKLOG", "PENDING"):
        return tid, None
    lease = (await worker.call("claim", task_id=tid, lease_seconds=86400))["lease"]
    if state != "ASSIGNED":
        await worker.call("start", task_id=tid, lease=lease)
    if state == "PAUSED":
        await worker.call("pause", task_id=tid, lease=lease, reason="wait")
    elif state == "REVIEW":
        await worker.call("complete", task_id=tid, lease=lease, result="draft")
    elif state == "FAILED":
        await worker.call("fail", task_id=tid, lease=lease, error="broken", retryable=False)
    return tid, lease


async def snapshot(reg: Registry, ids: list[str]) -> Any:
    """What a refused call must not change: the event log, the counts, and the touched tasks."""
    tasks = [(await reg.get(i)).model_dump() for i in ids if i]
    return await reg.last_seq(), await reg.counts(), tasks


@contextlib.contextmanager
def open_session(db: str, mode: str, *, stdio: bool = False) -> Iterator[Session]:
    """Worker and reviewer servers on `db` (in memory, or `mcp-tasks serve` children) and a probe registry."""
    clock = None if stdio else FakeClock()  # in memory, a clock that never moves: no lease runs out behind a snapshot's back
    with start_blocking_portal() as portal, contextlib.ExitStack() as stack:
        clients = []
        for name in ("worker", "reviewer"):
            if stdio:
                target: Any = stdio_params(db, name, "--sync", "normal", "--reaper-interval", "3600")
            else:
                target = create_server(db, agent=name, synchronous="NORMAL", clock=clock, reaper_interval=1e6)
            client = Client(target, mode=mode, read_timeout_seconds=60)  # an unanswered call fails, not hangs
            clients.append(stack.enter_context(portal.wrap_async_context_manager(client)))
        probe, as_worker = (
            stack.enter_context(portal.wrap_async_context_manager(Registry(make_store(db), agent=name, clock=clock)))
            for name in ("probe", "worker"))
        yield Session(portal, clients[0], clients[1], probe, as_worker)


# ---------------------------------------------------------------- what every answer must be

# Words that show a refusal is about the mutated field when the message does not repeat its name.
ABOUT = {
    "task_id": ("task", "t-"), "task_ids": ("task",), "lease": ("lease",), "expected_version": ("version",),
    "depends_on": ("depend", "cycle"), "add_depends_on": ("depend", "cycle"), "remove_depends_on": ("depend",),
    "capabilities": ("type",), "request_id": ("request_id",), "approve": ("review",),
    "assignee": ("agent",),  # the registry checks it as an agent name (registry.find)
}


def check_answer(tool: str, result: CallToolResult, mutation: Mutation | None) -> str | None:
    """Assert the answer is a valid result or a clear refusal; return the refusal message, if any."""
    text = result.content[0].text if result.content else ""
    if not result.is_error:
        data = result.structured_content
        assert data is not None and json.loads(text) == data, f"{tool}: text and structured content differ"
        jsonschema.validate(data, OUTPUT[tool])
        return None
    prefix = f"Error executing tool {tool}: "
    assert text != f"Error executing tool {tool}", f"{tool} crashed (internal error) on {mutation}"
    assert text.startswith(prefix) and text[len(prefix):].strip(), f"{tool}: unexpected error text {text!r}"
    message = text[len(prefix):]
    assert len(message) < 3000, f"{tool}: a {len(message)}-character error message"
    if mutation is not None:
        field = mutation.field
        shown = [field, json.dumps(field), json.dumps(field[:20])[:-1], *ABOUT.get(field, ())]
        if isinstance(mutation.value, str) and 0 < len(mutation.value) <= 40:
            shown.append(mutation.value)
        assert any(word and word in message for word in shown), (
            f"{tool}: the refusal of {mutation} does not say what was wrong: {message}")
    return message


def sweep(tool: str, wire: bool) -> Iterator[Mutation]:
    """Every field set to each classic bad value, every field dropped, an unknown field on every object."""
    classic = [None, True, -1, 10**30, 1.5, "", "\x00", "'; DROP TABLE tasks; --", "t-zzzzzzzzzz", "x" * 70_000,
               [], {}, ["a"], nested(100, "list"), *([] if wire else SURROGATES[:1])]
    fields, objects = paths_of(tool)
    for path in fields:
        yield Mutation("drop", path)
        for value in classic:
            yield Mutation("set", path, value)
    for obj in objects:
        yield Mutation("set", (*obj, "unknown_field"), 1)


def hostile_run(session: Session, tool: str, examples: int, *, wire: bool = False) -> None:
    """Feed `tool` a sweep of classic bad values and hypothesis-drawn mutations; check every answer,
    that refusals change nothing, and that the server answers normal work afterwards."""
    agent = session.reviewer if tool == "review" else session.worker

    def attempt(mutation: Mutation) -> None:
        tid, lease = session.prepare(NEEDS[tool])
        args = mutation.apply(valid_args(tool, tid, lease, session.anchor))
        before = session.snapshot([tid, session.anchor])
        result = session.call(agent, tool, args)
        if check_answer(tool, result, mutation) is not None:
            assert session.snapshot([tid, session.anchor]) == before, f"refused {tool} changed the database"

    for mutation in sweep(tool, wire):
        attempt(mutation)
    given(mutation=mutations(tool, wire))(
        settings(max_examples=examples, deadline=None, derandomize=not RANDOM,
                 suppress_health_check=list(HealthCheck))(attempt))()
    session.still_answers()


@pytest.mark.parametrize("store_kind, mode", STORES_AND_ERAS)
@pytest.mark.parametrize("tool", TOOL_NAMES)
def test_hostile_arguments_in_memory(db, tool, mode):
    with open_session(db.location, mode) as session:
        hostile_run(session, tool, EXAMPLES)


def test_hostile_arguments_over_stdio(db):
    """A shorter run over real `mcp-tasks serve` processes: the child keeps answering throughout."""
    with open_session(db.location, "legacy", stdio=True) as session:
        for tool in TOOL_NAMES:
            hostile_run(session, tool, max(3, EXAMPLES // 5), wire=True)


# ---------------------------------------------------------------- raw stdio: what no SDK client would send


class RawServer:
    """`mcp-tasks serve` on stdio, fed raw lines; reader threads collect its answers and its stderr."""

    def __init__(self, db: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcp_tasks", "serve", "--db", db, "--agent", "raw", "--sync", "normal"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[bytes] = []
        self.other: list[dict[str, Any]] = []  # answers that arrived while waiting for another one
        self.readers = [threading.Thread(target=f, daemon=True) for f in (self._read, self._keep_stderr)]
        for reader in self.readers:
            reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.answers.put(json.loads(line))

    def _keep_stderr(self) -> None:
        self.stderr.extend(self.proc.stderr)  # type: ignore[arg-type]

    def send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def request(self, rid: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.send(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode())
        while True:
            answer = self.answers.get(timeout=60)
            if answer.get("id") == rid:
                return answer
            self.other.append(answer)

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for reader in self.readers:
                reader.join(timeout=10)
            self.proc.stdout.close()  # type: ignore[union-attr]
            self.proc.stderr.close()  # type: ignore[union-attr]


def _call(rid: int, name: str, arguments: str | bytes) -> bytes:
    args = arguments.encode() if isinstance(arguments, str) else arguments
    return b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s","arguments":%s}}' % (
        rid, name.encode(), args)


def test_raw_hostile_lines_over_stdio(db):
    """Input no SDK client would produce: each line is refused clearly, never dropped, never a crash.

    A line the SDK's parser cannot take (nesting past its limit of about 195 levels, a lone
    surrogate escape, an integer past 4300 digits) gets a JSON-RPC parse error carrying the
    request's id (the SDK's own stdio transport dropped such lines unanswered; server/stdio.py),
    and the server answers the next request as usual.
    """
    server = RawServer(db.location)
    try:
        assert "result" in server.request(0, "initialize", {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}})
        server.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
        tid = server.request(1, "tools/call", {"name": "create_tasks", "arguments": {"tasks": [{"title": "raw"}]}})[
            "result"]["structuredContent"]["ids"][0]
        lease = server.request(2, "tools/call", {"name": "claim", "arguments": {"task_id": tid}})[
            "result"]["structuredContent"]["lease"]
        held = f'"task_id":"{tid}","lease":"{lease}"'
        deep_list = "[" * 100_000 + "]" * 100_000
        deep_object = '{"a":' * 5_000 + "1" + "}" * 5_000
        # id, tool, arguments, what must come back: a refusal (isError), a JSON-RPC error or a result
        cases: list[tuple[int, str, str | bytes, str]] = [
            (10, "start", f'{{{held},"request_id":{json.dumps("x" * 5_000_000)}}}', "refused"),
            (11, "start", f'{{"task_id":"{tid}","lease":"\\u0000"}}', "refused"),
            (12, "start", f'{{"task_id":"{tid}","lease":"{lease}\\u202e"}}', "refused"),
            (13, "start", f'{{{held},"request_id":"bad \\udc80\\ud800 text"}}', "rpc-error"),
            (14, "start", f'{{{held},"request_id":"bad '.encode() + b'\xff\xfe text"}', "result"),  # read as U+FFFD
            (15, "get_task", f'{{"task_id":"{tid}","events":NaN}}', "refused"),
            (16, "get_task", f'{{"task_id":"{tid}","events":-Infinity}}', "refused"),
            (17, "get_task", f'{{"task_id":"{tid}","events":1e999}}', "refused"),
            (18, "get_task", f'{{"task_id":"{tid}","events":{"9" * 4000}}}', "refused"),
            (19, "get_task", f'{{"task_id":"{tid}","events":{"9" * 5000}}}', "rpc-error"),
            (20, "get_task", f'{{"task_id":"t-zzzzzzzzzz","task_id":"{tid}"}}', "result"),  # the last key wins
            (21, "get_task", "[1, 2, 3]", "rpc-error"),
            (22, "get_task", f'"{tid}"', "rpc-error"),
            (23, "get_task", "null", "refused"),
            (24, "drop_tables", "{}", "refused"),
            (25, "checkpoint", f'{{{held},"data":' + "[" * 150 + "]" * 150 + "}", "refused"),
            (26, "checkpoint", f'{{{held},"data":{deep_list}}}', "rpc-error"),
            (27, "complete", f'{{{held},"result":{deep_object}}}', "rpc-error"),
            (28, "create_tasks", '{"tasks":[' + ",".join(['{"title":"t"}'] * 20_000) + "]}", "refused"),
            (29, "get_task", '{"task_id":' + json.dumps("t-" + "\u0000" * 10) + "}", "refused"),
        ]
        version = None
        for rid, tool, arguments, expected in cases:
            server.send(_call(rid, tool, arguments))
            check = server.request(1000 + rid, "tools/call", {"name": "get_task", "arguments": {"task_id": tid}})
            task = check["result"]["structuredContent"]["task"]  # the server still answers normal calls
            assert task["state"] in ("ASSIGNED", "ACTIVE") and (version is None or task["version"] >= version)
            version = task["version"]
        server.send(b"this is not JSON {")
        server.request(9999, "ping", {})
        got = {a["id"]: a for a in server.other}
        for rid, tool, _, expected in cases:
            answer = got.get(rid)
            kind = ("dropped" if answer is None else "rpc-error" if "error" in answer
                    else "refused" if answer["result"].get("isError") else "result")
            assert kind == expected, (rid, tool, expected, answer)
            if kind == "refused":
                text = answer["result"]["content"][0]["text"]  # type: ignore[index]
                assert text != f"Error executing tool {tool}" and len(text) < 3000, text
        assert all(got[rid]["error"]["code"] == -32700 for rid in (13, 19, 26, 27))  # parse errors, with their ids
        assert got[None]["error"]["code"] == -32700  # the line that is not JSON: no id to give
        assert server.request(3, "tools/call", {"name": "get_task", "arguments": {"task_id": tid}})["result"][
            "structuredContent"]["task"]["version"] == 3  # only case 14 (a valid start) changed the task
    finally:
        code = server.close()
    log = b"".join(server.stderr).decode(errors="replace")
    assert code == 0 and "Traceback" not in log and "unexpected exception" not in log, log[-3000:]


HOSTILE_URIS = [
    "task://'; DROP TABLE tasks; --", "task://t-zzzzzzzzzz", "task://t-zzzzzzzzzz/events", "task://" + "x" * 100_000,
    "task://t-\x00", "task://", "agent://" + "a" * 200 + "/tasks", "agent:///tasks", "tasks://nope", "task://t-a/b/c",
]


@pytest.mark.parametrize("mode", MODES)
async def test_hostile_resource_reads_and_completions(db, mode):
    """Resources refuse bad URIs as invalid parameters (never an internal error); completions stay lists."""
    async with two_agents(db.location, mode) as (worker, _, registry):
        tid, _ = await prepare(worker, "PENDING")
        for uri in HOSTILE_URIS:
            with pytest.raises(MCPError) as info:
                await worker.client.read_resource(uri)
            assert info.value.code == INVALID_PARAMS and info.value.message, uri[:80]
        assert await worker.read("agent://a\u202e b/tasks") == []
        refs = [(ResourceTemplateReference(uri="task://{task_id}"), "task_id"),
                (ResourceTemplateReference(uri="agent://{agent}/tasks"), "agent"),
                (PromptReference(name="review"), "task_id")]
        for ref, name in refs:
            for value in ["\x00", "\ud800", "x" * 100_000, "'; DROP TABLE tasks; --", "%", "_", "t-%", "\u202e"]:
                done = await worker.client.complete(ref, {"name": name, "value": value})
                assert done.completion.values == [], (name, value[:20])
        done = await worker.client.complete(refs[0][0], {"name": "task_id", "value": "t-"})
        assert tid in done.completion.values
        assert await registry.verify() == []


# ---------------------------------------------------------------- the documented limits, at the boundary


@contextlib.asynccontextmanager
async def two_agents(db: str, mode: str = "auto"):
    """A worker and a reviewer (in memory) on one database, and the worker server's registry."""
    worker_server = create_server(db, agent="worker", synchronous="NORMAL", clock=FakeClock(), reaper_interval=1e6)
    async with Client(worker_server, mode=mode) as w, Client(
            create_server(db, agent="reviewer", synchronous="NORMAL", clock=FakeClock(), reaper_interval=1e6),
            mode=mode) as r:
        yield Agent(w), Agent(r), state_of(worker_server).registry


def _text(n: int) -> str:
    return "é" * n  # multi-byte: limits count characters, not bytes


def _json_of_size(n: int) -> str:
    return "x" * (n - 2)  # a JSON string of n bytes with its quotes


@dataclass
class Limit:
    """One documented bound: `args(ctx, n)` builds the call with size n; `limit` is accepted, limit+1 is not."""

    name: str
    tool: str
    state: str | None
    limit: int
    args: Any
    words: tuple[str, ...]


async def _ids(worker: Agent, n: int, ready: bool = True) -> list[str]:
    return (await worker.call("create_tasks", tasks=[{"title": f"t{i}"} for i in range(n)], ready=ready))["ids"]


LIMITS = [
    Limit("title", "create_tasks", None, limits.MAX_TITLE, lambda c, n: {"tasks": [{"title": _text(n)}]}, ("title",)),
    Limit("title (update)", "update_task", "PENDING", limits.MAX_TITLE,
          lambda c, n: {"task_id": c["id"], "title": _text(n)}, ("title",)),
    Limit("description", "create_tasks", None, limits.MAX_DESCRIPTION,
          lambda c, n: {"tasks": [{"title": "t", "description": _text(n)}]}, ("description",)),
    Limit("note", "checkpoint", "ACTIVE", limits.MAX_TEXT,
          lambda c, n: {"task_id": c["id"], "lease": c["lease"], "note": _text(n)}, ("note",)),
    Limit("pause reason", "pause", "ACTIVE", limits.MAX_TEXT,
          lambda c, n: {"task_id": c["id"], "lease": c["lease"], "reason": _text(n)}, ("reason",)),
    Limit("release reason", "release", "ASSIGNED", limits.MAX_TEXT,
          lambda c, n: {"task_id": c["id"], "lease": c["lease"], "reason": _text(n)}, ("reason",)),
    Limit("cancel reason", "cancel", "PENDING", limits.MAX_TEXT,
          lambda c, n: {"task_id": c["id"], "reason": _text(n)}, ("reason",)),
    Limit("error", "fail", "ACTIVE", limits.MAX_TEXT,
          lambda c, n: {"task_id": c["id"], "lease": c["lease"], "error": _text(n)}, ("error",)),
    Limit("comment", "review", "REVIEW", limits.MAX_TEXT,
          lambda c, n: {"task_id": c["id"], "approve": True, "comment": _text(n)}, ("comment",)),
    Limit("find text", "find_tasks", None, limits.MAX_TITLE, lambda c, n: {"text": _text(n)}, ("text",)),
    Limit("checkpoint bytes", "checkpoint", "ACTIVE", limits.MAX_JSON_BYTES,
          lambda c, n: {"task_id": c["id"], "lease": c["lease"], "data": _json_of_size(n)}, ("data", "bytes")),
    Limit("result bytes", "complete", "ACTIVE", limits.MAX_JSON_BYTES,
          lambda c, n: {"task_id": c["id"], "lease": c["lease"], "result": _json_of_size(n)}, ("result", "bytes")),
    Limit("checkpoint depth", "checkpoint", "ACTIVE", limits.MAX_JSON_DEPTH,
          lambda c, n: {"task_id": c["id"], "lease": c["lease"], "data": nested(n, "dict")}, ("data", "nested")),
    Limit("result depth", "complete", "ACTIVE", limits.MAX_JSON_DEPTH,
          lambda c, n: {"task_id": c["id"], "lease": c["lease"], "result": nested(n, "list")}, ("result", "nested")),
    Limit("batch", "create_tasks", None, limits.MAX_BATCH,
          lambda c, n: {"tasks": [{"title": f"t{i}"} for i in range(n)]}, ("tasks",)),
    Limit("schedule batch", "schedule", None, limits.MAX_BATCH,
          lambda c, n: {"task_ids": (c["backlog"] * 2)[:n]}, ("task_ids",)),
    Limit("tags", "create_tasks", None, limits.MAX_TAGS,
          lambda c, n: {"tasks": [{"title": "t", "tags": [f"tag{i}" for i in range(n)]}]}, ("tags",)),
    Limit("tag length", "create_tasks", None, limits.MAX_NAME,
          lambda c, n: {"tasks": [{"title": "t", "tags": ["a" * n]}]}, ("tags",)),
    Limit("type length", "update_task", "PENDING", limits.MAX_NAME,
          lambda c, n: {"task_id": c["id"], "type": "b" * n}, ("type",)),
    Limit("capabilities", "list_available", None, limits.MAX_TAGS,
          lambda c, n: {"capabilities": [f"c{i}" for i in range(n)]}, ("capabilities",)),
    Limit("depends_on", "create_tasks", None, limits.MAX_DEPENDS,
          lambda c, n: {"tasks": [{"title": "t", "depends_on": c["many"][:n]}]}, ("depends_on",)),
    Limit("add_depends_on", "update_task", "PENDING", limits.MAX_DEPENDS,
          lambda c, n: {"task_id": c["id"], "add_depends_on": c["many"][:n]}, ("depend",)),
    Limit("artifacts", "complete", "ACTIVE", limits.MAX_ARTIFACTS,
          lambda c, n: {"task_id": c["id"], "lease": c["lease"], "artifacts": [f"a{i}" for i in range(n)]},
          ("artifacts",)),
    Limit("artifact length", "complete", "ACTIVE", limits.MAX_ARTIFACT,
          lambda c, n: {"task_id": c["id"], "lease": c["lease"], "artifacts": [_text(n)]}, ("artifacts",)),
    Limit("request_id", "claim", "PENDING", limits.MAX_REQUEST_ID,
          lambda c, n: {"task_id": c["id"], "request_id": _text(n)}, ("request_id",)),
    Limit("max_retries", "create_tasks", None, limits.MAX_RETRIES,
          lambda c, n: {"tasks": [{"title": "t", "max_retries": n}]}, ("max_retries",)),
    Limit("priority", "update_task", "PENDING", limits.MAX_PRIORITY,
          lambda c, n: {"task_id": c["id"], "priority": n}, ("priority",)),
    Limit("page", "find_tasks", None, limits.MAX_PAGE, lambda c, n: {"limit": n}, ("limit",)),
    Limit("events", "get_task", "PENDING", limits.MAX_EVENT_PAGE,
          lambda c, n: {"task_id": c["id"], "events": n}, ("events",)),
    Limit("usage tokens", "complete", "ACTIVE", limits.MAX_USAGE_TOKENS,
          lambda c, n: {"task_id": c["id"], "lease": c["lease"], "usage": {"tokens": n}}, ("usage.tokens",)),
    Limit("usage calls", "complete", "ACTIVE", limits.MAX_USAGE_CALLS,
          lambda c, n: {"task_id": c["id"], "lease": c["lease"], "usage": {"api_calls": n}}, ("usage.api_calls",)),
    Limit("usage cost", "complete", "ACTIVE", limits.MAX_USAGE_COST,
          lambda c, n: {"task_id": c["id"], "lease": c["lease"], "usage": {"cost": n}}, ("usage.cost",)),
    Limit("assignee", "find_tasks", None, limits.MAX_AGENT, lambda c, n: {"assignee": "a" * n}, ()),
]


@pytest.mark.parametrize("case", LIMITS, ids=[c.name for c in LIMITS])
async def test_documented_limits_at_the_boundary(db, case):
    async with two_agents(db.location) as (worker, reviewer, registry):
        agent = reviewer if case.tool == "review" else worker
        ctx: dict[str, Any] = {}
        if case.name == "schedule batch":
            ctx["backlog"] = await _ids(worker, case.limit, ready=False)
        if "depends_on" in case.name:
            ctx["many"] = await _ids(worker, case.limit + 1)
        for n, accepted in ((case.limit, True), (case.limit + 1, False)):
            if case.state is not None:
                ctx["id"], ctx["lease"] = await prepare(worker, case.state)
            before = await snapshot(registry, [ctx.get("id", "")])
            result = await agent.client.call_tool(case.tool, case.args(ctx, n))
            message = check_answer(case.tool, result, None)
            if accepted:
                assert message is None, f"{case.name} at its limit {n} was refused: {message}"
                continue
            assert message is not None, f"{case.name} one past its limit ({n}) was accepted"
            assert f"{case.limit}" in message and all(w in message for w in case.words), message
            assert await snapshot(registry, [ctx.get("id", "")]) == before


async def test_stored_values_at_the_limits_round_trip(db):
    async with two_agents(db.location) as (worker, _, registry):
        title, data = _text(limits.MAX_TITLE), nested(limits.MAX_JSON_DEPTH, "list")
        tid, lease = await prepare(worker, "ACTIVE", title=title, description=_text(limits.MAX_DESCRIPTION))
        await worker.call("checkpoint", task_id=tid, lease=lease, data=data, note=_text(limits.MAX_TEXT))
        task = (await worker.call("get_task", task_id=tid))["task"]
        assert task["title"] == title and task["checkpoint_data"] == data
        assert len(task["description"]) == limits.MAX_DESCRIPTION and task["checkpoint_note"] == _text(limits.MAX_TEXT)
        assert await registry.verify() == []


# ---------------------------------------------------------------- specific defects found by the runs above


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_arguments_are_refused_not_ignored(db, mode):
    async with two_agents(db.location, mode) as (worker, _, registry):
        tid, _ = await prepare(worker, "PENDING")
        message = await worker.refused("update_task", task_id=tid, titel="typo")
        assert '"titel"' in message and "title" in message and "takes:" in message
        message = await worker.refused("create_tasks", tasks=[{"title": "t", "colour": "red"}])
        assert "tasks[0].colour is not a known field" in message and "depends_on" in message
        message = await worker.refused("complete", task_id=tid, lease="x", usage={"tokenz": 5})
        assert "usage.tokenz is not a known field; fields: tokens, api_calls, cost" in message
        assert (await registry.get(tid)).title == "prepared"


@pytest.mark.parametrize("mode", MODES)
async def test_validation_messages_are_short_and_name_the_argument(db, mode):
    async with two_agents(db.location, mode) as (worker, _, _):
        assert await worker.refused("get_task", task_id=5) == (
            "Error executing tool get_task: invalid arguments: task_id: input should be a valid string (got 5).")
        missing = await worker.refused("get_task")
        assert missing == "Error executing tool get_task: invalid arguments: task_id is required."
        huge = await worker.refused("fail", task_id="t-zzzzzzzzzz", lease="x", error="y" * 1_000_000)
        assert ('error: string should have at most 4000 characters (got "yyyyyyyyyyyyyyyyyyyy..." '
                "(1000000 characters))") in huge
        assert len(huge) < 200 and "pydantic.dev" not in huge
        many = await worker.refused("create_tasks", tasks=[{"priority": "high"}] * 50)
        assert "tasks[0].title is required" in many and "and 95 more" in many and len(many) < 1000


@pytest.mark.parametrize("mode", MODES)
async def test_claims_start_takes_what_the_other_booleans_take(db, mode):
    """`start` is validated as `retryable`, `approve` and `ready` are: true, false and their usual
    spellings ("yes", 1) are taken; anything else is refused naming the argument, claiming nothing."""
    async with two_agents(db.location, mode) as (worker, _, registry):
        for value in (2, -1, "maybe", "", [], {}, 1.5):
            tid, _ = await prepare(worker, "PENDING")
            message = await worker.refused("claim", task_id=tid, start=value)
            assert "invalid arguments: start: input should be a valid boolean" in message
            assert message == (await worker.refused("fail", task_id=tid, lease="x", error="e", retryable=value)).replace(
                "fail: invalid arguments: retryable", "claim: invalid arguments: start")
            assert (await registry.get(tid)).state.value == "PENDING"
        for value, state in ((True, "ACTIVE"), ("yes", "ACTIVE"), (1, "ACTIVE"), (False, "ASSIGNED"), ("no", "ASSIGNED")):
            tid, _ = await prepare(worker, "PENDING")
            assert (await worker.call("claim", task_id=tid, start=value))["task"]["state"] == state, value
        assert await registry.verify() == []


@pytest.mark.parametrize("mode", MODES)
async def test_text_that_looks_like_json_stays_text(db, mode):
    """The SDK decodes JSON-looking strings for non-`str` arguments; text arguments must keep them."""
    async with two_agents(db.location, mode) as (worker, _, _):
        tid, lease = await prepare(worker, "ACTIVE")
        await worker.call("update_task", task_id=tid, description='{"spec": [1, 2]}', title='["draft"]')
        await worker.call("checkpoint", task_id=tid, lease=lease, note="[1, 2, 3]", request_id='{"id": 7}')
        task = (await worker.call("get_task", task_id=tid))["task"]
        assert task["description"] == '{"spec": [1, 2]}' and task["title"] == '["draft"]'
        assert task["checkpoint_note"] == "[1, 2, 3]"
        assert (await worker.call("find_tasks", text='["draft"]'))["tasks"][0]["id"] == tid


@pytest.mark.parametrize("mode", MODES)
async def test_sql_looking_text_is_just_text(db, mode):
    async with two_agents(db.location, mode) as (worker, _, registry):
        titles = ["'; DROP TABLE tasks; --", "100% done", "snake_case", "back\\slash", "plain"]
        ids = (await worker.call("create_tasks", tasks=[{"title": t} for t in titles]))["ids"]
        for title, tid in zip(titles, ids):
            for query in (title, title[:4], title[-3:]):
                found = [t["id"] for t in (await worker.call("find_tasks", text=query))["tasks"]]
                assert found == [tid], (query, found)
        assert len((await worker.call("find_tasks", state="PENDING"))["tasks"]) == len(titles)
        assert await registry.verify() == []


def test_json_depth_counts_arrays_and_objects():
    assert limits.json_value("data", nested(limits.MAX_JSON_DEPTH, "list")) is not None
    for value in ("scalar", [], {}, [[{"a": [1]}]]):
        assert limits.json_value("data", value) == value
    with pytest.raises(InvalidInput, match=f"nested more than {limits.MAX_JSON_DEPTH} levels"):
        limits.json_value("data", nested(limits.MAX_JSON_DEPTH + 1, "dict"))
    with pytest.raises(InvalidInput, match="unpaired surrogate"):
        limits.json_value("data", {"k": "\ud800"})


def test_limits_table_lists_every_limit():
    table = limits.render_markdown()
    rows = table.splitlines()
    assert rows[0] == "| Limit | Value | Applies to |" and rows[1] == "|---|---|---|"
    constants = {k: v for k, v in vars(limits).items() if k.startswith(("MAX_", "MIN_")) and isinstance(v, int)}
    assert len(rows) == 2 + len(constants)
    for name, value in constants.items():
        assert any(f"`{name}`" in row and f"| {value:,}" in row for row in rows), name
