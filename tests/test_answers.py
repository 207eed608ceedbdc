"""Answers people and agents rely on, each checked against the queue as it really is: why a claim
(with start or without) found nothing (every branch), the true ready count past one page, `stats`
on an empty database, `list --type` without `--ready`. On every store."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mcp import Client

from mcp_tasks import Registry
from mcp_tasks.server import create_server
from mcp_tasks.stores import make_store

from .helpers import FakeClock
from .server_helpers import ROOT, Agent


def cli(*args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "mcp_tasks", *args], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert "Traceback" not in out.stderr, out.stderr
    return out


async def empty_claim(db: str, clock: FakeClock, **filters: list[str]) -> str:
    """Why claim found nothing; claim with start=true answers the same."""
    async with Client(create_server(db, agent="asker", clock=clock)) as client:
        answer = await Agent(client).call("claim", **filters)
        assert await Agent(client).call("claim", start=True, **filters) == answer
    assert "task" not in answer and "lease" not in answer, answer
    return answer["message"]


async def build(db: str, clock: FakeClock, specs: list[dict], then: str | None = None) -> list[str]:
    """Tasks from `specs`; `then` moves the first one: claim, start, review (complete into REVIEW),
    fail (retryable, into a backoff), dead (fail for good), cancel."""
    async with Registry(make_store(db), agent="planner", clock=clock) as reg:
        ids = (await reg.create_tasks(specs)).ids
        if then is None:
            return ids
        if then == "cancel":
            await reg.cancel(ids[0], "not needed")
            return ids
        claim = await reg.claim(ids[0], actor="worker")
        assert claim is not None
        if then == "claim":
            return ids
        await reg.start(ids[0], claim.lease, actor="worker")
        if then == "review":
            await reg.complete(ids[0], claim.lease, actor="worker")
        elif then in ("fail", "dead"):
            await reg.fail(ids[0], claim.lease, "broken", retryable=then == "fail", actor="worker")
        return ids


def plain(title: str, **kw) -> dict:
    return {"title": title, **kw}


async def test_nothing_at_all(db):
    clock = FakeClock()
    assert await empty_claim(db.location, clock) == "No ready task: no open work at all."


async def test_ready_work_of_another_type_is_named_not_called_blocked(db):
    location, clock = db.location, FakeClock()
    await build(location, clock, [plain("write docs", type="docs"), plain("more docs", type="docs"), plain("code", type="code")])
    async with Registry(make_store(location), agent="x", clock=clock) as reg:
        await reg.claim(capabilities=["code"], actor="coder")  # the only code task is taken
    message = await empty_claim(location, clock, capabilities=["code"])
    assert message == ("No ready task matches your filters: 2 ready tasks need other capabilities or tags "
                       "(by type: docs 2); 1 in progress.")
    assert "blocked" not in message


async def test_tags_filter_alone_is_a_filter_too(db):
    location, clock = db.location, FakeClock()
    await build(location, clock, [plain("untagged")])
    message = await empty_claim(location, clock, tags=["gpu"])
    assert message == ("No ready task matches your filters: 1 ready task needs other capabilities or tags "
                       "(by type: general 1).")


async def test_without_filters_it_never_mentions_filters(db):
    location, clock = db.location, FakeClock()
    await build(location, clock, [plain("first"), plain("second")], then="claim")
    async with Registry(make_store(location), agent="x", clock=clock) as reg:
        await reg.claim(actor="other")
    message = await empty_claim(location, clock)
    assert message == "No ready task: 2 in progress."


async def test_a_retry_backoff_says_when(db):
    location, clock = db.location, FakeClock()
    await build(location, clock, [plain("flaky")], then="fail")
    message = await empty_claim(location, clock)
    assert message.startswith("No ready task: a retried task becomes ready in ") and message.endswith("s.")


async def test_dependencies_in_progress(db):
    location, clock = db.location, FakeClock()
    async with Registry(make_store(location), agent="planner", clock=clock) as reg:
        ids = (await reg.create_tasks([{"key": "a", "title": "a"}, {"key": "b", "title": "b", "depends_on": ["a"]},
                                       {"key": "c", "title": "c", "depends_on": ["a"]}])).ids
        await reg.claim(ids[0], actor="worker")
    assert await empty_claim(location, clock) == "No ready task: 2 waiting for dependencies still in progress; 1 in progress."


async def test_review_and_backlog(db):
    location, clock = db.location, FakeClock()
    await build(location, clock, [plain("reviewed", requires_review=True)], then="review")
    async with Registry(make_store(location), agent="planner", clock=clock) as reg:
        await reg.create_tasks([{"title": "later"}], ready=False)
    assert await empty_claim(location, clock) == "No ready task: 1 in REVIEW waiting for a reviewer; 1 in BACKLOG until scheduled."


@pytest.mark.parametrize("how", ["dead", "cancel"])
async def test_blocked_by_failed_work_only_when_something_failed(db, how):
    location, clock = db.location, FakeClock()
    async with Registry(make_store(location), agent="planner", clock=clock) as reg:
        ids = (await reg.create_tasks([{"key": "a", "title": "a", "max_retries": 0},
                                       {"key": "b", "title": "b", "depends_on": ["a"]}])).ids
        if how == "cancel":
            await reg.cancel(ids[0], "dropped")
        else:
            claim = await reg.claim(ids[0], actor="worker")
            assert claim is not None
            await reg.start(ids[0], claim.lease, actor="worker")
            await reg.fail(ids[0], claim.lease, "broken", retryable=False, actor="worker")
    message = await empty_claim(location, clock)
    assert message == ("No ready task: 1 blocked by failed or cancelled work "
                       "(a planner must retry, cancel or rewire it).")


async def test_the_ready_count_is_true_past_one_page(db):
    location, clock = db.location, FakeClock()
    async with Registry(make_store(location), agent="planner", clock=clock) as reg:
        await reg.create_tasks([{"title": f"t{i}"} for i in range(250)])
    async with Client(create_server(location, agent="viewer", clock=clock)) as client:
        assert (await Agent(client).read("tasks://board"))["ready"] == 250
    stats = cli("stats", "--db", location)
    assert "ready now: 250" in stats.stdout
    assert json.loads(cli("stats", "--json", "--db", location).stdout)["board"]["ready"] == 250


async def test_stats_on_an_empty_database(db):
    location = db.location
    assert cli("init", "--db", location).returncode == 0
    out = cli("stats", "--db", location)
    assert out.returncode == 0 and out.stdout.splitlines()[0] == "queue: empty"


async def test_list_by_type_without_ready(db):
    location, clock = db.location, FakeClock()
    ids = await build(location, clock, [plain("c1", type="code"), plain("d1", type="docs"), plain("c2", type="code")],
                      then="claim")
    out = cli("list", "--type", "code", "--db", location)
    *rows, total = out.stdout.splitlines()[2:]
    assert {line.split()[0] for line in rows} == {ids[0], ids[2]}  # the claimed one too: without --ready, every state
    assert total == "2 of 2 tasks"
    both = cli("list", "--type", "code", "--type", "docs", "--db", location)
    assert both.stdout.splitlines()[-1] == "3 of 3 tasks"


async def test_refusals_carry_code_and_data_beside_the_message(db):
    from .server_helpers import stdio_params

    location, clock = db.location, FakeClock()
    (tid,) = await build(location, clock, [plain("not yet claimed")])
    async with Client(stdio_params(location, "worker")) as client:
        result = await client.call_tool("start", {"task_id": tid, "lease": "not-a-lease-of-mine"})
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    error = result.structured_content["error"]  # type: ignore[index]
    assert text == f"Error executing tool start: {error['message']}"
    assert {k: error[k] for k in ("code", "task_id", "state", "allowed")} == {
        "code": "lease", "task_id": tid, "state": "PENDING", "allowed": ["cancel", "claim", "update_task"]}


async def test_ready_work_that_cannot_be_read_is_not_called_claimable(db):
    location, clock = db.location, FakeClock()
    (tid,) = await build(location, clock, [plain("damaged")])
    if db.kind == "sqlite":
        db.sql(("UPDATE tasks SET tags = 'not json' WHERE id = ?", (tid,)))
    else:  # jsonb holds only JSON: damage it as its type allows
        db.sql(("UPDATE tasks SET tags = '[1]' WHERE id = %s", (tid,)))
    message = await empty_claim(location, clock)
    assert message == "No ready task: 1 ready task cannot be read (damaged rows: `mcp-tasks verify` names them)."


def test_work_made_ready_after_the_claim_looked_says_claim_again():
    """The one branch only a race reaches (a task becomes ready between the claim and the look at
    the queue), checked on the message builder itself."""
    from mcp_tasks import State
    from mcp_tasks.reports import ClaimOutlook
    from mcp_tasks.server.views import nothing_to_claim

    outlook = ClaimOutlook(now=0.0, counts={s: 0 for s in State} | {State.PENDING: 2}, ready_elsewhere={"code": 2},
                           ready_readable=True, backoff=0, next_backoff_end=None, waiting=0, blocked=0)
    answer = nothing_to_claim(outlook, 0.0, filtered=False)
    assert answer.message == "No ready task: 2 tasks became ready just now; claim again." and answer.retry_after_s == 0
