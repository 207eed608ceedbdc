"""The HTTP service for several hosts: bearer tokens, roles, identity, binding, per-token limits.

Real `mcp-tasks serve --http` subprocesses and real MCP clients over streamable HTTP (both
protocol eras), on every store. Tokens are created in-process or with the CLI, as an operator
would, and revoked by another process while the server runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_tasks import Registry
from mcp_tasks.stores import make_store
from mcp_tasks.tokens import Tokens

from .server_helpers import MCP_TASKS, ROOT, Agent, free_port, http_process, http_server

ROLES = ("viewer", "agent", "planner", "admin")
# The least role each tool needs: the table, written out here on purpose (not read from
# states.py), so that a change to the role table must be made twice to pass.
LEAST_ROLE = {
    "list_available": "viewer", "get_task": "viewer", "find_tasks": "viewer",
    "claim": "agent", "start": "agent", "checkpoint": "agent", "complete": "agent", "fail": "agent",
    "pause": "agent", "resume": "agent", "release": "agent", "create_tasks": "agent",
    "update_task": "planner", "schedule": "planner", "cancel": "planner", "retry": "planner", "review": "planner",
}


def may(role: str, tool: str) -> bool:
    return ROLES.index(role) >= ROLES.index(LEAST_ROLE[tool])


async def make_tokens(location: str, **roles: str) -> dict[str, str]:
    """Tokens named by the keywords with the given roles; name -> token."""
    async with Registry(make_store(location), agent="operator") as reg:
        tokens = Tokens(reg)
        return {name: (await tokens.create(name, role))[1] for name, role in roles.items()}


async def seed(location: str, n: int, **spec: Any) -> list[str]:
    async with Registry(make_store(location), agent="planner") as reg:
        return (await reg.create_tasks([{"title": f"task {i}", **spec} for i in range(n)])).ids


@contextlib.asynccontextmanager
async def client(base: str, token: str | None = None, mode: str = "auto",
                 headers: dict[str, str] | None = None) -> AsyncIterator[Agent]:
    """An MCP client over streamable HTTP presenting `token`."""
    sent = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    async with httpx2.AsyncClient(headers=sent, timeout=30) as http:
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode) as c:
            yield Agent(c)


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


async def post_init(base: str, token: str | None) -> httpx2.Response:
    """One raw initialize POST (opens a 2025-11-25 session when accepted)."""
    headers = {**MCP_HEADERS, **({"authorization": f"Bearer {token}"} if token else {})}
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.post(f"{base}/mcp", json=INIT, headers=headers)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MCP_TASKS, *args], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


# ---------------------------------------------------------------- tokens from the CLI


def test_token_cli_shows_the_token_once_and_stores_only_its_hash(db):
    made = cli("token", "create", "alice", "--role", "agent", "--expires", "30d", "--db", db.location)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("mcpt_") and len(token) > 40
    again = cli("token", "create", "alice", "--role", "admin", "--db", db.location)
    assert again.returncode == 3 and "a live token named alice exists" in again.stderr
    assert again.stderr.count("\n") == 1, "one line, no traceback"

    stored = db.sql("SELECT name, role, token_hash, expires_at FROM tokens")[0]
    assert stored[0][:3] == ("alice", "agent", hashlib.sha256(token.encode()).hexdigest())
    assert stored[0][3] is not None
    dumped = "\n".join(str(row) for rows in db.sql("SELECT * FROM tokens", "SELECT * FROM token_events") for row in rows)
    assert token not in dumped and token[5:] not in dumped, "the token itself is never stored"

    listed = cli("token", "list", "--db", db.location)
    assert listed.returncode == 0 and "alice" in listed.stdout and "agent" in listed.stdout
    assert token not in listed.stdout and stored[0][2] not in listed.stdout
    as_json = json.loads(cli("token", "list", "--json", "--db", db.location).stdout)
    assert [(t["name"], t["role"], t["status"]) for t in as_json] == [("alice", "agent", "live")]
    assert "token_hash" not in as_json[0]

    revoked = cli("token", "revoke", "alice", "--agent", "ops-erin", "--db", db.location)
    assert revoked.returncode == 0, revoked.stderr
    assert cli("token", "revoke", "alice", "--db", db.location).returncode == 3
    assert json.loads(cli("token", "list", "--json", "--db", db.location).stdout)[0]["status"] == "revoked"
    remade = cli("token", "create", "alice", "--role", "viewer", "--db", db.location)
    assert remade.returncode == 0 and remade.stdout.strip() != token, "a revoked name may get a new token"

    history = db.sql("SELECT name, type, actor FROM token_events ORDER BY id")[0]
    assert history == [("alice", "created", "cli"), ("alice", "revoked", "ops-erin"), ("alice", "created", "cli")]
    shown = cli("token", "history", "--db", db.location)
    assert shown.returncode == 0 and "ops-erin" in shown.stdout and "revoked" in shown.stdout
    bad = cli("token", "create", "bob", "--role", "agent", "--expires", "soon", "--db", db.location)
    assert bad.returncode == 3 and "not a duration" in bad.stderr


# ---------------------------------------------------------------- 401s


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_no_bad_expired_or_revoked_token_gets_401(db, tmp_path, mode):
    tokens = await make_tokens(db.location, alice="agent", watcher="viewer")
    async with Registry(make_store(db.location), agent="operator") as reg:
        _, short_lived = await Tokens(reg).create("brief", "agent", expires_in=1.0)
    await seed(db.location, 2)
    with http_server(db.location) as base:
        for token in (None, "mcpt_not-a-token", "x" * 300, "bad token with spaces"):
            r = await post_init(base, token)
            assert r.status_code == 401, (token, r.status_code, r.text)
            challenge = r.headers["www-authenticate"]
            assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
            assert "/.well-known/oauth-protected-resource/mcp" in challenge
        async with httpx2.AsyncClient() as http:
            meta = (await http.get(f"{base}/.well-known/oauth-protected-resource/mcp")).json()
        assert meta["resource"].endswith("/mcp") and meta["bearer_methods_supported"] == ["header"]

        await anyio.sleep(1.2)  # past the short-lived token's expiry
        assert (await post_init(base, short_lived)).status_code == 401

        async with client(base, tokens["alice"], mode) as alice:
            got = await alice.call("claim")
            assert (await alice.call("get_task", task_id=got["task"]["id"]))["task"]["assignee"] == "alice"
            revoke = await anyio.to_thread.run_sync(lambda: cli("token", "revoke", "alice", "--db", db.location))
            assert revoke.returncode == 0, revoke.stderr
            refused_after = None
            began = time.monotonic()
            with anyio.fail_after(10):
                while refused_after is None:
                    if (await post_init(base, tokens["alice"])).status_code == 401:
                        refused_after = time.monotonic() - began
                    else:
                        await anyio.sleep(0.1)
            # the open client is refused too: every request is checked
            with pytest.raises(Exception):
                await alice.client.call_tool("list_available", {})
        assert (await post_init(base, tokens["watcher"])).status_code == 200, "other tokens still work"
    print(f"revocation took effect after {refused_after:.2f}s")


# ---------------------------------------------------------------- roles


async def test_every_role_against_every_tool(db):
    """The whole role x tool matrix: allowed calls are never refused for their role, others are
    refused naming the least role that may; tools/list holds exactly the allowed tools."""
    tokens = await make_tokens(db.location, **{f"{r}-1": r for r in ROLES}, worker="agent")
    ids = await seed(db.location, 30)
    with http_server(db.location) as base:
        async with client(base, tokens["worker"]) as worker:
            held = await worker.call("claim", task_id=ids[0])  # a real lease for the lease tools
        for role in ROLES:
            async with client(base, tokens[f"{role}-1"]) as caller:
                listed = sorted(t.name for t in (await caller.client.list_tools()).tools)
                assert listed == sorted(t for t in LEAST_ROLE if may(role, t)), role
                tid = ids[1 + ROLES.index(role)]
                args: dict[str, dict[str, Any]] = {
                    "list_available": {}, "get_task": {"task_id": tid}, "find_tasks": {},
                    "claim": {"task_id": tid},
                    **{t: {"task_id": ids[0], "lease": held["lease"]} for t in ("start", "resume", "release")},
                    "checkpoint": {"task_id": ids[0], "lease": held["lease"], "note": "n"},
                    "complete": {"task_id": ids[0], "lease": held["lease"]},
                    "fail": {"task_id": ids[0], "lease": held["lease"], "error": "e"},
                    "pause": {"task_id": ids[0], "lease": held["lease"], "reason": "r"},
                    "create_tasks": {"tasks": [{"title": f"made by {role}"}]},
                    "update_task": {"task_id": ids[20], "priority": 7}, "schedule": {"task_ids": [ids[21]]},
                    "cancel": {"task_id": ids[22 + ROLES.index(role)], "reason": "r"},
                    "retry": {"task_id": ids[26]}, "review": {"task_id": ids[27], "approve": True},
                }
                assert set(args) == set(LEAST_ROLE)
                for tool, arguments in args.items():
                    result = await caller.client.call_tool(tool, arguments)
                    error = (result.structured_content or {}).get("error") if result.is_error else None
                    if may(role, tool):
                        assert error is None or error["code"] != "role_required", (role, tool, error)
                    else:
                        assert error is not None and error["code"] == "role_required", (role, tool, result)
                        assert error["role_needed"] == LEAST_ROLE[tool]
                        assert f"needs the {LEAST_ROLE[tool]} role" in result.content[0].text
    async with Registry(make_store(db.location), agent="checker") as reg:
        made = {t.title for t in (await reg.find(text="made by", limit=10)).items}
        assert made == {"made by agent", "made by planner", "made by admin"}
        assert (await reg.get(ids[20])).priority == 7
        cancelled = [(await reg.get(ids[22 + i])).state.value for i in range(4)]
        assert cancelled == ["PENDING", "PENDING", "CANCELLED", "CANCELLED"]
        assert await reg.verify() == []


async def test_identity_comes_from_the_token_only(db):
    """A forged X-MCP-Tasks-Agent header is ignored; stored answers are scoped to the token, so a
    reconnecting client gets its answer back and another token never sees it."""
    tokens = await make_tokens(db.location, alice="agent", bob="agent")
    ids = await seed(db.location, 3)
    with http_server(db.location) as base:
        async with client(base, tokens["alice"], headers={"X-MCP-Tasks-Agent": "bob"}) as alice:
            first = await alice.call("claim", request_id="r-1")
            await alice.call("start", task_id=first["task"]["id"], lease=first["lease"])
            assert (await alice.call("get_task", task_id=first["task"]["id"]))["task"]["assignee"] == "alice"
        async with client(base, tokens["alice"], mode="legacy") as alice_again:  # a new session, same token
            again = await alice_again.call("claim", request_id="r-1")
        assert (again["task"]["id"], again["lease"]) == (first["task"]["id"], first["lease"])
        async with client(base, tokens["bob"], headers={"X-MCP-Tasks-Agent": "alice"}) as bob:
            theirs = await bob.call("claim", request_id="r-1")
            assert theirs["task"]["id"] != first["task"]["id"]
            assert (await bob.call("get_task", task_id=theirs["task"]["id"]))["task"]["assignee"] == "bob"
            refusal = await bob.refused("complete", task_id=first["task"]["id"], lease=theirs["lease"])
            assert "not the current lease" in refusal
    async with Registry(make_store(db.location), agent="checker") as reg:
        actors = {e.actor for tid in ids for e in await reg.events(tid) if e.type != "created"}
        assert actors == {"alice", "bob"}


# ---------------------------------------------------------------- binding, TLS, limits


def test_binding_every_address_needs_tokens(db, tmp_path):
    port = free_port()
    refused = cli("serve", "--http", "--host", "0.0.0.0", "--port", str(port), "--db", db.location)
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "refusing to listen on 0.0.0.0" in refused.stderr
    assert "mcp-tasks token create" in refused.stderr
    made = cli("token", "create", "alice", "--role", "agent", "--db", db.location)
    token = made.stdout.strip().splitlines()[-1]
    argv = [*MCP_TASKS, "serve", "--http", "--host", "0.0.0.0", "--port", str(port), "--db", db.location]
    with http_process(argv, f"http://127.0.0.1:{port}"):
        r = anyio.run(post_init, f"http://127.0.0.1:{port}", token)
        assert r.status_code == 200
        assert anyio.run(post_init, f"http://127.0.0.1:{port}", None).status_code == 401


async def test_tls_serves_https_with_tokens(db, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    tokens = await make_tokens(db.location, alice="agent")
    await seed(db.location, 1)
    port = free_port()
    argv = [*MCP_TASKS, "serve", "--http", "--port", str(port), "--db", db.location, "--tls-cert", str(cert),
            "--tls-key", str(key)]
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(argv, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        base = f"https://127.0.0.1:{port}"
        async with httpx2.AsyncClient(verify=ssl.create_default_context(cafile=str(cert)), headers={"Authorization": f"Bearer {tokens['alice']}"},
                                      timeout=30) as http:
            with anyio.fail_after(30):
                while True:
                    try:
                        if (await http.get(f"{base}/healthz")).status_code == 200:
                            break
                    except httpx2.HTTPError:
                        await anyio.sleep(0.1)
            async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as c:
                got = await Agent(c).call("claim")
                assert (await Agent(c).call("get_task", task_id=got["task"]["id"]))["task"]["assignee"] == "alice"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
    half = cli("serve", "--http", "--db", db.location, "--tls-cert", str(cert))
    assert half.returncode == 2 and "go together" in half.stderr


async def test_rate_limit_is_reached_and_recovers(db):
    tokens = await make_tokens(db.location, alice="agent", bob="agent")
    with http_server(db.location, "--rate", "2", "--burst", "3") as base:
        statuses = [(await post_init(base, tokens["alice"])) for _ in range(6)]
        codes = [r.status_code for r in statuses]
        assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
        limited = next(r for r in statuses if r.status_code == 429)
        body = limited.json()
        assert body["error"] == "rate_limited" and "retry after" in body["error_description"]
        wait = int(limited.headers["retry-after"])
        assert 1 <= wait <= 2
        assert (await post_init(base, tokens["bob"])).status_code == 200, "each token has its own bucket"
        await anyio.sleep(wait)
        assert (await post_init(base, tokens["alice"])).status_code == 200, "recovered after Retry-After"


async def test_open_sessions_are_bounded_per_token(db):
    tokens = await make_tokens(db.location, alice="agent", bob="agent")
    with http_server(db.location, "--sessions-per-token", "2") as base:
        opened = [await post_init(base, tokens["alice"]) for _ in range(2)]
        assert [r.status_code for r in opened] == [200, 200]
        third = await post_init(base, tokens["alice"])
        assert third.status_code == 429 and "2 open MCP sessions" in third.json()["error_description"]
        assert (await post_init(base, tokens["bob"])).status_code == 200
        async with httpx2.AsyncClient(timeout=30) as http:
            closed = await http.delete(f"{base}/mcp", headers={
                "authorization": f"Bearer {tokens['alice']}", "mcp-session-id": opened[0].headers["mcp-session-id"],
                "mcp-protocol-version": "2025-11-25"})
        assert closed.status_code < 300
        assert (await post_init(base, tokens["alice"])).status_code == 200, "a closed session frees its place"


async def test_metrics_need_a_token_when_tokens_are_on(db):
    tokens = await make_tokens(db.location, watcher="viewer")
    with http_server(db.location) as base:
        async with httpx2.AsyncClient(timeout=30) as http:
            bare = await http.get(f"{base}/metrics")
            assert bare.status_code == 401 and bare.headers["www-authenticate"].startswith("Bearer ")
            seen = await http.get(f"{base}/metrics", headers={"authorization": f"Bearer {tokens['watcher']}"})
            assert seen.status_code == 200 and "mcp_tasks_" in seen.text
            assert (await http.get(f"{base}/healthz")).status_code == 200, "health checks need no token"


# ---------------------------------------------------------------- roles without tokens


async def test_stdio_role_narrows_the_tools(db):
    from .server_helpers import stdio_params

    async with Client(stdio_params(db.location, "watcher", "--role", "viewer")) as c:
        names = sorted(t.name for t in (await c.list_tools()).tools)
        assert names == ["find_tasks", "get_task", "list_available"]
        refused = await Agent(c).refused("create_tasks", tasks=[{"title": "x"}])
        assert "needs the agent role" in refused


async def test_only_an_admin_may_force_release_and_the_holder_hears_it(db):
    from mcp_tasks.errors import RoleRequired
    from mcp_tasks.models import Caller
    from mcp_tasks.states import Role

    ids = await seed(db.location, 2, max_retries=2)
    async with Registry(make_store(db.location), agent="checker") as reg:
        holder = Caller("alice", "alice-client", Role.AGENT)
        assigned = await reg.claim(ids[0], actor=holder)
        active = await reg.claim(ids[1], actor=holder)
        assert assigned is not None and active is not None
        await reg.start(ids[1], active.lease, actor=holder)
        for role in (Role.AGENT, Role.PLANNER):
            with pytest.raises(RoleRequired) as refused:
                await reg.force_release(ids[0], "stuck", actor=Caller("pat", "pat", role))
            assert refused.value.data["role_needed"] == "admin"
        admin = Caller("ops", "ops", Role.ADMIN)
        assert (await reg.force_release(ids[0], "agent died", actor=admin)).state.value == "PENDING"
        back = await reg.force_release(ids[1], "agent died", actor=admin)
        assert back.state.value == "PENDING" and back.retry_count == 1
        from mcp_tasks.errors import LeaseError

        with pytest.raises(LeaseError, match="an admin took the task back"):
            await reg.complete(ids[1], active.lease, actor=holder)
        events = [e for e in await reg.events(ids[0]) if e.type == "force_released"]
        assert [(e.actor, e.data["holder"], e.data["reason"]) for e in events] == [("ops", "alice", "agent died")]
        assert await reg.verify() == []


# ---------------------------------------------------------------- load


async def test_thirty_two_agents_with_their_own_tokens_share_two_servers(db, tmp_path):
    """32 agents, each with its own agent token, work a plan through two HTTP servers with tokens
    on: zero double claims, every acknowledged change in the log, each change recorded under the
    name of the token that made it, verify clean. Size: MCP_TASKS_AUTH_LOAD_TASKS (default 300)."""
    import random

    from mcp_tasks.states import State

    from .fleet import all_events, check_history, make_plan
    from .multihost import Cluster, env_int, make_agents, work_until_done

    agents_n, tasks = 32, env_int("MCP_TASKS_AUTH_LOAD_TASKS", 120)
    deps = await make_plan(db.location, tasks, random.Random(5))
    tokens = await make_tokens(db.location, **{f"agent-{i}": "agent" for i in range(agents_n)})
    cluster = Cluster(db.location, tmp_path, 2, ("--lease-seconds", "60", "--reaper-interval", "0.5"))
    agents, journal, stats = make_agents(cluster, agents_n, 5, fail_rate=0.05, tokens=tokens)
    try:
        await cluster.start()
        await work_until_done(agents, 600, anyio.Event())
        logs = cluster.logs()
    finally:
        cluster.stop()
    assert "Traceback" not in logs, logs[-6000:]
    assert stats.refused == 0 and stats.reconnects == 0, stats
    events = await all_events(db.location)
    counts = check_history(events, deps, journal)
    assert counts["claims"] == sum(r["op"] == "claim" for r in journal)
    claimed = {(e.actor, e.task_id) for e in events if e.type == "claimed"}
    assert {actor for actor, _ in claimed} <= set(tokens), "every claim is recorded under a token's name"
    journaled = {(r["agent"], r["task"]) for r in journal if r["op"] == "claim"}
    assert journaled <= claimed, "each agent's claims were recorded under its own token's name"
    async with Registry(make_store(db.location), agent="checker") as reg:
        assert (await reg.counts())[State.DONE] == tasks
        assert await reg.verify() == []
    print(f"\n{tasks} tasks, 32 agents with tokens, 2 servers: {counts}; {stats}")
