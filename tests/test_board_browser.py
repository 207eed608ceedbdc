"""The web board in a real browser: Debian's Chromium driven by Playwright, against a real
`mcp-tasks serve --http` process on every store, changed by other processes (the CLI, an agent
process) while the page is open.

Screenshots of every page are saved under test-artifacts/board/ (MCP_TASKS_ARTIFACTS to move
them). No page may log a JavaScript error. Without Chromium these tests fail in CI (.ci/run
installs it) and are skipped elsewhere with a note.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_tasks import Registry, State
from mcp_tasks.stores import make_store

from .databases import BROWSER_MISSING, SKIPPED
from .helpers import drive_to
from .server_helpers import MCP_TASKS, ROOT, free_port, http_process
from .test_auth import make_tokens

ARTIFACTS = Path(os.environ.get("MCP_TASKS_ARTIFACTS", ROOT / "test-artifacts")) / "board"
LIVE_WITHIN_MS = 1000  # a change made by another process shows on an open page within this


def chromium() -> str:
    """Debian's chromium executable; never a downloaded browser."""
    found = shutil.which("chromium")
    if found is None:
        reason = BROWSER_MISSING
        if os.environ.get("CI"):
            pytest.fail(reason)
        if reason not in SKIPPED:
            SKIPPED.append(reason)
        pytest.skip(reason)
    return found


@pytest.fixture
def site(db, tmp_path) -> Iterator[dict[str, Any]]:
    """A registry with a viewer's and a planner's token, served by `serve --http` (tokens on)."""
    import anyio

    tokens = anyio.run(lambda: make_tokens(db.location, watcher="viewer", lead="planner"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [*MCP_TASKS, "serve", "--http", "--port", str(port), "--db", db.location, "--reaper-interval", "0.5"]
    with http_process(argv, base, tmp_path / "server.log"):
        yield {"base": base, "db": db, "tokens": tokens}


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    path = chromium()
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            await b.close()


class Page:
    """A browser page signed in as one token's person, recording every console error."""

    def __init__(self, page: Any, base: str, kind: str) -> None:
        self.page, self.base, self.kind = page, base, kind
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    async def sign_in(self, token: str) -> None:
        await self.page.goto(self.base + "/")
        assert "/login" in self.page.url, "tokens are on: the board asks who you are"
        await self.page.fill("input[name=token]", token)
        await self.page.click("button:has-text('Sign in')")
        await self.page.wait_for_url(self.base + "/")

    async def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / f"{self.kind}-{name}.png"), full_page=True)

    def assert_no_errors(self) -> None:
        assert self.errors == [], f"the page logged errors: {self.errors}"


async def open_page(browser: Any, site: dict[str, Any], token: str) -> Page:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = Page(await context.new_page(), site["base"], site["db"].kind)
    await page.sign_in(token)
    return page


def cli(db: str, *args: str) -> str:
    done = subprocess.run([*MCP_TASKS, *args, "--db", db], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


CLAIM = """
import asyncio, sys
from mcp_tasks import Registry
from mcp_tasks.stores import make_store
async def main():
    async with Registry(make_store(sys.argv[1]), agent="far-away-agent") as reg:
        claim = await reg.claim(sys.argv[2])
        await reg.start(sys.argv[2], claim.lease)
asyncio.run(main())
"""


async def test_the_board_follows_the_cli_and_other_processes_live(site, browser) -> None:
    page = await open_page(browser, site, site["tokens"]["lead"])
    p, db = page.page, site["db"].location

    tid = cli(db, "add", "Ship the release notes", "--type", "docs")  # another process, before the page loads
    await p.reload()
    assert await p.locator(f"#ready a[href='/tasks/{tid}']").count() == 1
    await page.shot("board")

    # Another process claims it while the page is open: it moves from the queue to held work.
    done = subprocess.run([sys.executable, "-c", CLAIM, db, tid], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    claimed_at = time.monotonic()
    await p.locator(f"#held a[href='/tasks/{tid}']").wait_for(timeout=LIVE_WITHIN_MS + 500)
    shown_after = time.monotonic() - claimed_at
    assert shown_after * 1000 <= LIVE_WITHIN_MS, f"the claim showed after {shown_after:.2f} s"
    assert await p.locator("#held").get_by_text("far-away-agent").count() >= 1
    assert await p.locator(f"#ready a[href='/tasks/{tid}']").count() == 0
    assert "/login" not in p.url  # no reload, no sign-in again

    added = cli(db, "add", "Appears without a reload")
    await p.locator(f"#recent a[href='/tasks/{added}']").first.wait_for(timeout=LIVE_WITHIN_MS + 500)
    await page.shot("board-live")
    page.assert_no_errors()


async def test_every_page_renders_in_the_browser_with_the_task_timeline_and_graph(site, browser) -> None:
    db = site["db"].location
    async with Registry(make_store(db), agent="builder-1") as reg:
        made = await reg.create_tasks([
            {"key": "a", "title": "Design the schema", "type": "design"},
            {"key": "b", "title": "Write the migrations", "depends_on": ["a"], "type": "code"},
            {"key": "c", "title": "Integration tests", "depends_on": ["b"], "type": "test"},
        ])
        a, b = made.by_key["a"], made.by_key["b"]
        claim = await reg.claim(a)
        await reg.start(a, claim.lease)
        await reg.checkpoint(a, claim.lease, {"tables": 4}, note="tables drafted", progress=50)
        await reg.complete(a, claim.lease, {"summary": "done"})
        await drive_to(reg, State.FAILED, title="Deploy to staging")
    page = await open_page(browser, site, site["tokens"]["lead"])
    p = page.page

    await p.goto(f"{site['base']}/tasks/{b}")
    timeline = p.locator("ol.timeline li")
    assert await timeline.count() >= 2  # created, then dependency_done
    graph = p.locator("#task-graph svg")
    assert await graph.count() == 1
    assert await graph.locator(f"[data-id='{a}']").count() == 1  # its dependency
    assert await graph.locator(f"[data-id='{made.by_key['c']}']").count() == 1  # what needs it
    await page.shot("task")

    await p.goto(f"{site['base']}/tasks/{a}")
    assert await p.locator("ol.timeline li").count() >= 5
    assert "tables drafted" in await p.locator("#task-work").inner_text()
    await page.shot("task-done")

    for path, name, expect in [("/tasks", "tasks", "Write the migrations"), ("/agents", "agents", "builder-1"),
                               ("/agents/builder-1", "agent", "Design the schema"), ("/events", "events", "checkpoint"),
                               ("/charts", "charts", "Tasks finished per hour")]:
        await p.goto(site["base"] + path)
        assert expect in await p.locator("main").inner_text(), path
        await page.shot(name)
    page.assert_no_errors()


async def test_a_planner_retries_a_dead_letter_from_the_page(site, browser) -> None:
    async with Registry(make_store(site["db"].location), agent="builder-2") as reg:
        dead, _ = await drive_to(reg, State.FAILED, title="Flaky deploy")
    page = await open_page(browser, site, site["tokens"]["lead"])
    p = page.page
    await p.goto(f"{site['base']}/tasks/{dead}")
    assert await p.locator("#task-head .state").inner_text() == "FAILED"
    await p.click("button:has-text('Retry now')")
    await p.wait_for_selector(".notice")
    assert await p.locator("#task-head .state").inner_text() == "PENDING"
    async with Registry(make_store(site["db"].location)) as reg:
        assert (await reg.get(dead)).state is State.PENDING
        last = (await reg.events(dead))[-1]
        assert (last.type, last.actor) == ("retried", "lead")
    await page.shot("retried")
    page.assert_no_errors()


async def test_a_viewer_sees_no_actions_and_a_forged_post_is_refused(site, browser) -> None:
    async with Registry(make_store(site["db"].location), agent="builder-3") as reg:
        dead, _ = await drive_to(reg, State.FAILED, title="Nobody may retry this")
    page = await open_page(browser, site, site["tokens"]["watcher"])
    p = page.page
    assert await p.locator("#dead").get_by_text("Nobody may retry this").count() == 1
    assert await p.locator("main button").count() == 0
    await p.goto(f"{site['base']}/tasks/{dead}")
    assert await p.locator("main button").count() == 0 and await p.locator("#actions").count() == 0
    await page.shot("viewer")
    csrf = await p.evaluate("() => (document.querySelector('input[name=csrf]') || {}).value || ''")
    forged = await p.request.post(f"{site['base']}/tasks/{dead}/retry", form={"csrf": csrf},
                                  headers={"origin": site["base"]})
    assert forged.status == 403
    assert "planner" in await forged.text()
    async with Registry(make_store(site["db"].location)) as reg:
        assert (await reg.get(dead)).state is State.FAILED
    page.assert_no_errors()
