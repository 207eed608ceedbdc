"""One whole lifecycle through real MCP clients, reused over every transport and protocol era."""

from __future__ import annotations

import json

import anyio

from .server_helpers import Agent


async def claim_when_ready(agent: Agent, task_id: str, seconds: float = 15) -> dict:
    """Claim `task_id`, waiting out a retry backoff."""
    with anyio.fail_after(seconds):
        while True:
            result = await agent.client.call_tool("claim", {"task_id": task_id})
            if not result.is_error:
                return result.structured_content  # type: ignore[return-value]
            assert "retry backoff" in result.content[0].text, result.content[0].text
            await anyio.sleep(0.1)


async def run_lifecycle(planner: Agent, a: Agent, b: Agent, reviewer: Agent) -> None:
    """Plan with dependencies, work, review, fail and retry, refusals; assert what users rely on."""
    created = await planner.call("create_tasks", tasks=[
        {"key": "design", "title": "Design the API", "priority": 8},
        {"key": "build", "title": "Build it", "depends_on": ["design"], "requires_review": True, "type": "code"},
        {"key": "test", "title": "Test it", "depends_on": ["build"], "type": "code", "max_retries": 2},
        {"key": "docs", "title": "Document it", "depends_on": ["design"], "type": "docs", "priority": 2},
    ], request_id="plan-1")
    ids = created["by_key"]
    assert list(ids) == ["design", "build", "test", "docs"]
    again = await planner.call("create_tasks", tasks=[{"key": "design", "title": "Design the API", "priority": 8},
        {"key": "build", "title": "Build it", "depends_on": ["design"], "requires_review": True, "type": "code"},
        {"key": "test", "title": "Test it", "depends_on": ["build"], "type": "code", "max_retries": 2},
        {"key": "docs", "title": "Document it", "depends_on": ["design"], "type": "docs", "priority": 2},
    ], request_id="plan-1")
    assert again == created, "a repeated request_id returns the first answer and creates nothing"

    available = await a.call("list_available")
    assert [t["id"] for t in available["tasks"]] == [ids["design"]]

    # design: claim, start, checkpoint, complete
    claim = await a.call("claim", capabilities=["general"], request_id="a-1")
    lease, task = claim["lease"], claim["task"]
    assert task["id"] == ids["design"] and task["state"] == "ASSIGNED" and claim["lease_expires_at"]
    leases = [lease]
    assert (await a.call("start", task_id=task["id"], lease=lease))["state"] == "ACTIVE"
    cp = await a.call("checkpoint", task_id=task["id"], lease=lease, data={"sections": 2}, note="half", progress=50)
    assert cp["state"] == "ACTIVE" and cp["lease_expires_at"]
    done = await a.call("complete", task_id=task["id"], lease=lease, result={"doc": "api.md"},
                        artifacts=["api.md"], usage={"tokens": 1000, "api_calls": 2, "cost": 0.01})
    assert done["state"] == "DONE"

    ready = [t["id"] for t in (await b.call("list_available"))["tasks"]]
    assert ready == [ids["build"], ids["docs"]], "both dependents of design are ready, in priority order"

    # build: needs review; the assignee cannot review their own work
    claim = await a.call("claim", task_id=ids["build"])
    leases.append(claim["lease"])
    await a.call("start", task_id=ids["build"], lease=claim["lease"])
    in_review = await a.call("complete", task_id=ids["build"], lease=claim["lease"], result="v1")
    assert in_review["state"] == "REVIEW" and "review" in in_review["next"]
    own = await a.refused("review", task_id=ids["build"], approve=True)
    assert "cannot review it" in own and "REVIEW" in own
    sent_back = await reviewer.call("review", task_id=ids["build"], approve=False, comment="add error handling")
    assert sent_back["state"] == "ACTIVE"
    assert (await a.call("complete", task_id=ids["build"], lease=claim["lease"], result="v2"))["state"] == "REVIEW"
    assert (await reviewer.call("review", task_id=ids["build"], approve=True, comment="good"))["state"] == "DONE"

    # test: fails once (retryable), is retried after a backoff, then succeeds; the checkpoint survives
    claim = await b.call("claim", task_id=ids["test"])
    leases.append(claim["lease"])
    await b.call("start", task_id=ids["test"], lease=claim["lease"])
    await b.call("checkpoint", task_id=ids["test"], lease=claim["lease"], data={"passed": 7})
    failed = await b.call("fail", task_id=ids["test"], lease=claim["lease"], error="flaky runner", retryable=True)
    assert failed["state"] == "PENDING" and "retry 1/2" in failed["next"]
    stale = await b.refused("complete", task_id=ids["test"], lease=claim["lease"])
    assert f"Task {ids['test']} is PENDING" in stale and "allowed now: cancel, claim" in stale
    claim = await claim_when_ready(b, ids["test"])
    leases.append(claim["lease"])
    assert claim["task"]["checkpoint_data"] == {"passed": 7} and claim["task"]["errors"] == ["flaky runner"]
    await b.call("start", task_id=ids["test"], lease=claim["lease"])
    assert (await b.call("complete", task_id=ids["test"], lease=claim["lease"]))["state"] == "DONE"

    # docs: capability filter
    assert (await a.call("claim", capabilities=["ops"]))["message"].startswith("No ready task matches")
    claim = await a.call("claim", capabilities=["docs"])
    leases.append(claim["lease"])
    assert claim["task"]["id"] == ids["docs"]
    await a.call("start", task_id=ids["docs"], lease=claim["lease"])

    # refusals say what is wrong, the current state, and what is allowed now
    foreign = await b.refused("complete", task_id=ids["docs"], lease=leases[2])
    assert "not the current lease" in foreign and "ACTIVE" in foreign and "allowed now:" in foreign
    not_now = await planner.refused("retry", task_id=ids["docs"])
    assert "Task" in not_now and "is ACTIVE; allowed now: cancel, checkpoint, complete, fail, pause, update_task" in not_now
    finished = await a.refused("start", task_id=ids["design"], lease=leases[0])
    assert "is DONE; nothing more can be done with it" in finished
    unknown = await a.refused("get_task", task_id="t-0000000000")
    assert "no task has id t-0000000000" in unknown
    bad = await planner.refused("create_tasks", tasks=[{"title": "x", "priority": 11}])
    assert "priority" in bad and "less than or equal to 10" in bad
    extra = await planner.refused("create_tasks", tasks=[{"title": "x", "colour": "red"}])
    assert "colour" in extra
    assert (await a.call("complete", task_id=ids["docs"], lease=claim["lease"]))["state"] == "DONE"

    found = await planner.call("find_tasks", state="DONE")
    assert sorted(t["id"] for t in found["tasks"]) == sorted(ids.values())
    detail = await planner.call("get_task", task_id=ids["test"], events=20)
    types = [e["type"] for e in detail["events"]]
    assert types.count("claimed") == 2 and "failed" in types and "retried" in types
    assert detail["task"]["cycle_time"] > 0 and detail["task"]["retry_count"] == 1

    # lease tokens appear only in claim results: nothing else shows them
    seen = json.dumps([found, detail, await planner.call("get_task", task_id=ids["build"], events=50),
                       await planner.read("tasks://board"), await planner.read("events://recent"),
                       await planner.read(f"task://{ids['test']}/events")])
    for token in leases:
        assert token not in seen
