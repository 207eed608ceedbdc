"""The web board over HTTP, on every store: every route, unknown ids, bad filters, actions with
their events, cross-site refusals, and sign-in with tokens.

The board is the server's own ASGI app (the one `serve --http` and `web` run), driven in-process
with its lifespan entered, over a real database. Live updates across processes and the browser
are tested in test_board_live.py and test_board_browser.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest

from mcp_tasks import Registry, State
from mcp_tasks.board.people import COOKIE, local_name
from mcp_tasks.models import Caller
from mcp_tasks.server import create_server
from mcp_tasks.server.app import state_of
from mcp_tasks.server.http import build_http_app
from mcp_tasks.stores import make_store
from mcp_tasks.tokens import CACHE_SECONDS, Tokens

from .helpers import drive_to

HOST = "http://127.0.0.1:8766"


@asynccontextmanager
async def board(location: str, *, tokens: bool = False, role: str = "admin") -> AsyncIterator[tuple[httpx2.AsyncClient, Registry]]:
    """The HTTP app over `location` with its lifespan entered; a client and the server's registry."""
    from mcp_tasks.states import Role

    mcp = create_server(location, agent="server", public_url=HOST if tokens else None, role=Role(role))
    app = build_http_app(mcp, "127.0.0.1")
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url=HOST, follow_redirects=False) as client:
            yield client, state_of(mcp).registry


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page should carry the form token"
    return found.group(1)


async def post(client: httpx2.AsyncClient, path: str, csrf: str, **form: Any) -> httpx2.Response:
    return await client.post(path, data={"csrf": csrf, **form}, headers={"origin": HOST})


async def events_of(reg: Registry, tid: str) -> list[Any]:
    return await reg.events(tid)


async def test_every_page_renders_what_the_registry_holds(db) -> None:
    async with board(db.location) as (client, reg):
        dead, _ = await drive_to(reg, State.FAILED, title="flaky deploy")
        held, _ = await drive_to(reg, State.ACTIVE, title="long job")
        review, _ = await drive_to(reg, State.REVIEW, title="docs to check")
        created = await reg.create_tasks([
            {"key": "up", "title": "schema", "tags": ["db"], "type": "design"},
            {"key": "down", "title": "migrations <script>x</script>", "depends_on": ["up"], "type": "code"},
        ])
        up, down = created.by_key["up"], created.by_key["down"]

        page = await client.get("/")
        assert page.status_code == 200
        html = page.text
        for expected in ("Ready queue", "Held work", "Review queue", "Dead letters", "Blocked by failed work",
                         "Recent events", dead, held, review, up, "flaky deploy", "long job"):
            assert expected in html, expected
        assert "content-security-policy" in page.headers and "server-timing" in page.headers
        assert "Held work <small>1 task, 1 agent</small>" in html

        tasks = await client.get("/tasks", params={"type": "code"})
        assert tasks.status_code == 200 and down in tasks.text and up not in tasks.text
        assert re.search(r">1 task <small>", tasks.text)  # one of a kind: no plural
        assert up in (await client.get("/tasks", params={"tag": "db", "q": "schem"})).text
        assert dead in (await client.get("/tasks", params={"state": "failed"})).text
        assert held in (await client.get("/tasks", params={"agent": "server"})).text

        one = await client.get(f"/tasks/{down}")
        assert one.status_code == 200
        assert "Timeline" in one.text and "<svg" in one.text and f'data-id="{up}"' in one.text
        assert "Not ready" in one.text and "Waiting on" in one.text
        assert "<script>x</script>" not in one.text and "&lt;script&gt;x&lt;/script&gt;" in one.text

        agents = await client.get("/agents")
        assert agents.status_code == 200 and "server" in agents.text
        agent = await client.get("/agents/server")
        assert agent.status_code == 200 and held in agent.text

        log = await client.get("/events", params={"task": dead})
        assert log.status_code == 200 and "failed" in log.text and held not in log.text
        by_type = await client.get("/events", params={"type": "claimed", "agent": "server"})
        assert by_type.status_code == 200 and "claimed" in by_type.text and ">created<" not in by_type.text

        charts = await client.get("/charts", params={"hours": "6"})
        assert charts.status_code == 200 and charts.text.count("<svg") == 4
        assert (await client.get("/static/board.css")).status_code == 200
        assert (await client.get("/static/board.js")).status_code == 200
        assert (await client.get("/login")).status_code == 303  # no tokens: nobody signs in


async def test_pages_page_through_long_lists(db) -> None:
    async with board(db.location) as (client, reg):
        ids = (await reg.create_tasks([{"title": f"bulk {i}"} for i in range(60)])).ids
        first = await client.get("/tasks")
        assert ">60 tasks" in first.text
        older = re.search(r'href="(/tasks\?cursor=[^"]+)" rel="next"', first.text)
        assert older, "a long list should link to its next page"
        second = await client.get(older.group(1).replace("&amp;", "&"))
        shown = set(re.findall(r"t-[0-9a-z]{10}", first.text)) | set(re.findall(r"t-[0-9a-z]{10}", second.text))
        assert set(ids) <= shown
        log = await client.get("/events", params={"limit": "5"})
        before = re.search(r'href="(/events\?[^"]*before=\d+)" rel="next"', log.text)
        assert before and (await client.get(before.group(1).replace("&amp;", "&"))).status_code == 200


async def test_unknown_ids_get_a_404_page_and_bad_filters_a_400(db) -> None:
    async with board(db.location) as (client, _):
        for path in ("/tasks/t-0000000000", "/tasks/not-an-id", "/agents/nobody-here"):
            page = await client.get(path)
            assert page.status_code == 404, path
            assert 'role="alert"' in page.text and "Traceback" not in page.text
        for path, params, says in [
            ("/tasks", {"state": "DOING"}, "is not a state"),
            ("/tasks", {"cursor": "garbage"}, "cursor"),
            ("/tasks", {"type": "x" * 500}, "type"),
            ("/events", {"before": "soon"}, "event number"),
            ("/events", {"task": "nope"}, "task"),
            ("/events", {"agent": "a\x01b"}, "control characters"),
            ("/charts", {"hours": "9999"}, "hours"),
            ("/charts", {"hours": "many"}, "hours"),
        ]:
            page = await client.get(path, params=params)
            assert page.status_code == 400, (path, params)
            assert "bad" in page.text and says in page.text, (path, params, page.text[-600:])


async def test_actions_change_the_task_and_name_the_person(db) -> None:
    me = local_name()
    async with board(db.location) as (client, reg):
        dead, _ = await drive_to(reg, State.FAILED)
        held, _ = await drive_to(reg, State.ACTIVE)
        review, _ = await drive_to(reg, State.REVIEW)
        other, _ = await drive_to(reg, State.PENDING)
        csrf = csrf_of((await client.get("/")).text)

        done = await post(client, f"/tasks/{dead}/retry", csrf, next="/")
        assert done.status_code == 303 and done.headers["location"].startswith("/?notice=")
        assert (await reg.get(dead)).state is State.PENDING
        assert (await events_of(reg, dead))[-1].actor == me

        assert (await post(client, f"/tasks/{held}/release", csrf, reason="stuck")).status_code == 303
        assert (await reg.get(held)).state is not State.ACTIVE
        forced = [e for e in await events_of(reg, held) if e.type == "force_released"]
        assert forced and forced[0].actor == me and forced[0].data.get("reason") == "stuck"

        assert (await post(client, f"/tasks/{review}/review", csrf, decision="changes", comment="tests?")).status_code == 303
        assert (await reg.get(review)).state is State.ACTIVE
        approved, _ = await drive_to(reg, State.REVIEW)
        assert (await post(client, f"/tasks/{approved}/review", csrf, decision="approve")).status_code == 303
        reviewed = [e for e in await events_of(reg, approved) if e.type == "approved"]
        assert (await reg.get(approved)).state is State.DONE and reviewed and reviewed[-1].actor == me

        task = await reg.get(other)
        edited = await post(client, f"/tasks/{other}/edit", csrf, priority="9", tags="a, b", version=str(task.version))
        assert edited.status_code == 303
        after = await reg.get(other)
        assert after.priority == 9 and after.tags == ["a", "b"]
        stale = await post(client, f"/tasks/{other}/edit", csrf, priority="2", version=str(task.version))
        assert stale.status_code == 409 and (await reg.get(other)).priority == 9

        assert (await post(client, f"/tasks/{other}/cancel", csrf, reason="not needed")).status_code == 303
        assert (await reg.get(other)).state is State.CANCELLED
        refused = await post(client, f"/tasks/{other}/retry", csrf)
        assert refused.status_code == 409 and 'role="alert"' in refused.text

        made = await post(client, "/tasks", csrf, title="from the board", priority="7", tags="ui", type="docs")
        assert made.status_code == 303
        new_id = re.search(r"t-[0-9a-z]{10}", made.headers["location"]).group(0)  # type: ignore[union-attr]
        new = await reg.get(new_id)
        assert (new.title, new.priority, new.tags, new.type, new.created_by) == ("from the board", 7, ["ui"], "docs", me)
        bad = await post(client, "/tasks", csrf, title="", priority="11")
        assert bad.status_code == 400


async def test_batch_actions_do_each_task_and_report_the_refused(db) -> None:
    async with board(db.location) as (client, reg):
        dead = [(await drive_to(reg, State.FAILED))[0] for _ in range(3)]
        done, _ = await drive_to(reg, State.DONE)
        csrf = csrf_of((await client.get("/")).text)
        reply = await client.post("/batch", headers={"origin": HOST},
                                  data={"csrf": csrf, "action": "retry", "ids": [*dead, done], "next": "/tasks"})
        assert reply.status_code == 303
        assert "3+done" in reply.headers["location"] and "1+refused" in reply.headers["location"]
        assert [(await reg.get(t)).state for t in dead] == [State.PENDING] * 3
        prio = await client.post("/batch", headers={"origin": HOST},
                                 data={"csrf": csrf, "action": "priority", "priority": "2", "ids": dead})
        assert prio.status_code == 303 and {(await reg.get(t)).priority for t in dead} == {2}
        tag = await client.post("/batch", headers={"origin": HOST},
                                data={"csrf": csrf, "action": "tag", "tag": "triage", "ids": dead[:2]})
        assert tag.status_code == 303 and (await reg.get(dead[0])).tags == ["triage"]
        nothing = await client.post("/batch", headers={"origin": HOST}, data={"csrf": csrf, "action": "retry"})
        assert nothing.status_code == 400 and "select at least one" in nothing.text


async def test_cross_site_and_forged_posts_change_nothing(db) -> None:
    async with board(db.location) as (client, reg):
        dead, _ = await drive_to(reg, State.FAILED)
        csrf = csrf_of((await client.get("/")).text)
        attempts = [
            ({"origin": "http://evil.example"}, {"csrf": csrf}),  # another site's page (DNS-rebinding rule)
            ({"origin": HOST, "sec-fetch-site": "cross-site"}, {"csrf": csrf}),
            ({"origin": HOST}, {}),  # no form token
            ({"origin": HOST}, {"csrf": "0" * 32}),  # a wrong one
        ]
        for headers, form in attempts:
            reply = await client.post(f"/tasks/{dead}/retry", headers=headers, data=form)
            assert reply.status_code in (403, 421), (headers, form, reply.status_code)
        assert (await reg.get(dead)).state is State.FAILED
        assert [e.type for e in await events_of(reg, dead)][-1] == "failed"


async def test_a_viewer_only_board_shows_no_actions_and_refuses_them(db) -> None:
    async with board(db.location, role="viewer") as (client, reg):
        dead, _ = await drive_to(reg, State.FAILED)
        page = (await client.get("/")).text
        assert dead in page and "Retry" not in page and "New task" not in page
        task_page = (await client.get(f"/tasks/{dead}")).text
        assert "Actions" not in task_page and "Retry now" not in task_page
        reply = await post(client, f"/tasks/{dead}/retry", csrf_of(page))
        assert reply.status_code == 403 and "planner" in reply.text
        assert (await reg.get(dead)).state is State.FAILED


async def test_sign_in_with_a_token_and_the_role_decides(db) -> None:
    async with board(db.location, tokens=True) as (client, reg):
        tokens = Tokens(reg)
        _, viewer = await tokens.create("watcher", "viewer", actor=Caller("ops", "cli"))
        _, planner = await tokens.create("lead", "planner", actor=Caller("ops", "cli"))
        dead, _ = await drive_to(reg, State.FAILED)

        away = await client.get("/tasks?state=FAILED")
        assert away.status_code == 303 and away.headers["location"].startswith("/login?next=")
        assert (await client.get("/live")).status_code == 401
        assert "Sign in" in (await client.get("/login")).text

        wrong = await client.post("/login", data={"token": "mcpt_" + "x" * 43}, headers={"origin": HOST})
        assert wrong.status_code == 401 and "not valid" in wrong.text and COOKIE not in wrong.headers.get("set-cookie", "")

        signed = await client.post("/login", data={"token": viewer, "next": f"/tasks/{dead}"}, headers={"origin": HOST})
        assert signed.status_code == 303 and signed.headers["location"] == f"/tasks/{dead}"
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        client.cookies.set(COOKIE, viewer)
        page = await client.get(f"/tasks/{dead}")
        assert page.status_code == 200 and "watcher" in page.text and "Retry now" not in page.text
        forged = await post(client, f"/tasks/{dead}/retry", csrf_of(page.text))
        assert forged.status_code == 403 and "planner" in forged.text
        assert (await reg.get(dead)).state is State.FAILED

        out = await post(client, "/logout", csrf_of(page.text))
        assert out.status_code == 303 and COOKIE in out.headers.get("set-cookie", "")
        client.cookies.clear()

        client.cookies.set(COOKIE, planner)
        page = await client.get(f"/tasks/{dead}")
        assert "Retry now" in page.text
        done = await post(client, f"/tasks/{dead}/retry", csrf_of(page.text))
        assert done.status_code == 303 and (await reg.get(dead)).state is State.PENDING
        assert (await events_of(reg, dead))[-1].actor == "lead"
        viewer_form = await post(client, f"/tasks/{dead}/cancel", "f" * 32, reason="x")
        assert viewer_form.status_code == 403  # a form token that is not this person's

        await tokens.revoke("lead", actor=Caller("ops", "cli"))
        await anyio.sleep(CACHE_SECONDS + 0.1)  # a verification is remembered this long
        assert (await client.get("/")).status_code == 303


@pytest.mark.parametrize("path", ["/", "/tasks", "/agents", "/events", "/charts"])
async def test_pages_need_no_javascript(db, path: str) -> None:
    """Every page is complete HTML as served: its content is in the markup, not fetched by a script."""
    async with board(db.location) as (client, reg):
        tid, _ = await drive_to(reg, State.ACTIVE, title="visible without scripts")
        html = (await client.get(path)).text
        assert html.startswith("<!doctype html>") and "</html>" in html
        if path in ("/", "/tasks", "/events"):
            assert tid in html


async def read_event(lines: Any, within: float) -> dict[str, str]:
    """The next server-sent event (its fields), waiting at most `within` seconds."""
    event: dict[str, str] = {}
    with anyio.fail_after(within):
        async for line in lines:
            if not line:
                if "event" in event:
                    return event
                continue
            if line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            event[key] = value.strip()
    raise AssertionError("the stream ended")


async def test_the_live_stream_tells_of_other_processes_changes_and_resumes(db, tmp_path) -> None:
    import subprocess

    from .server_helpers import MCP_TASKS, ROOT, http_server

    async with Registry(make_store(db.location)) as reg:
        await reg.create_tasks([{"title": "before the page"}])
        start = await reg.last_seq()
    with http_server(db.location, log=tmp_path / "server.log") as base:
        async with httpx2.AsyncClient(base_url=base, timeout=10) as client:
            async with client.stream("GET", "/live") as live:
                assert live.headers["content-type"].startswith("text/event-stream")
                lines = live.aiter_lines()
                hello = await read_event(lines, 5)
                assert (hello["event"], hello["id"]) == ("hello", str(start))
                added = subprocess.run([*MCP_TASKS, "add", "from another process", "--db", db.location],
                                       env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, timeout=60)
                assert added.returncode == 0, added.stderr
                change = await read_event(lines, 1.0)  # the follower polls other processes' writes
                assert change["event"] == "change" and int(change["id"]) > start
            # A browser that reconnects says what it saw last, and hears at once that it missed something.
            async with client.stream("GET", "/live", headers={"last-event-id": str(start)}) as resumed:
                missed = await read_event(resumed.aiter_lines(), 2)
                assert missed["event"] == "change" and int(missed["id"]) == int(change["id"])


async def test_a_task_many_others_need_shows_a_bounded_graph(db) -> None:
    from mcp_tasks.overview import GRAPH_WIDTH

    async with board(db.location) as (client, reg):
        gate = (await reg.create_tasks([{"title": "everyone waits for me"}])).ids[0]
        needy = (await reg.create_tasks([{"title": f"needs the gate {i}", "depends_on": [gate]} for i in range(40)])).ids
        page = await client.get(f"/tasks/{gate}")
        assert page.status_code == 200
        shown = [i for i in needy if f'data-id="{i}"' in page.text]
        assert len(shown) == GRAPH_WIDTH
        assert f"+{40 - GRAPH_WIDTH} more" in page.text and f"and {40 - GRAPH_WIDTH} more" in page.text
        one = await client.get(f"/tasks/{needy[0]}")
        assert f'data-id="{gate}"' in one.text and "Waiting on" in one.text


def test_mcp_tasks_web_serves_the_board_alone(db, tmp_path) -> None:
    import urllib.error
    import urllib.request

    from .server_helpers import MCP_TASKS, free_port, http_process

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with http_process([*MCP_TASKS, "web", "--db", db.location, "--port", str(port)], base, tmp_path / "web.log"):
        with urllib.request.urlopen(f"{base}/") as page:
            assert page.status == 200 and "Ready queue" in page.read().decode()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(urllib.request.Request(f"{base}/mcp", method="POST", data=b"{}"))
        missing.value.close()
        assert missing.value.code in (404, 405)  # no MCP endpoint: agents use stdio
    log = (tmp_path / "web.log").read_text()
    assert "the board is at" in log and "Traceback" not in log
