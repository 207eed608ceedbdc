"""Bad input to the registry: a clear error naming the argument and the bound; nothing changes."""

from __future__ import annotations

import pytest

from mcp_tasks import limits
from mcp_tasks.errors import InvalidInput

from .helpers import drive_to
from mcp_tasks import State

BAD_SPECS = [
    ({"title": ""}, "title must not be empty"),
    ({"title": "x" * (limits.MAX_TITLE + 1)}, f"at most {limits.MAX_TITLE}"),
    ({"title": "nul\x00byte"}, "NUL"),
    ({"title": "lone \ud800 surrogate"}, "surrogate"),
    ({"title": "t", "priority": 0}, "priority is 0; allowed: 1 to 10"),
    ({"title": "t", "priority": "high"}, "priority"),
    ({"title": "t", "type": "has space"}, "not a valid name"),
    ({"title": "t", "tags": ["ok", "bad tag"]}, "not a valid name"),
    ({"title": "t", "tags": [f"t{i}" for i in range(limits.MAX_TAGS + 1)]}, f"at most {limits.MAX_TAGS}"),
    ({"title": "t", "max_retries": -1}, "max_retries is -1"),
    ({"title": "t", "color": "red"}, "unknown fields ['color']"),
    ({"description": "no title"}, "title"),
    ({"title": "t", "depends_on": "t-0000000000"}, "depends_on"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
async def test_bad_task_specs_are_refused_clearly(registry, spec, message):
    with pytest.raises(InvalidInput) as info:
        await registry.create_tasks([{"title": "fine"}, spec])
    assert message in info.value.message
    assert sum((await registry.counts()).values()) == 0


async def test_batch_bounds(registry):
    with pytest.raises(InvalidInput, match="non-empty"):
        await registry.create_tasks([])
    with pytest.raises(InvalidInput, match=f"at most {limits.MAX_BATCH}"):
        await registry.create_tasks([{"title": "t"}] * (limits.MAX_BATCH + 1))
    with pytest.raises(InvalidInput, match="used twice"):
        await registry.create_tasks([{"key": "a", "title": "a"}, {"key": "a", "title": "b"}])


async def test_checkpoint_and_result_bounds(registry):
    tid, lease = await drive_to(registry, State.ACTIVE)
    before = await registry.get(tid)
    deep: object = "leaf"
    for _ in range(limits.MAX_JSON_DEPTH + 1):
        deep = [deep]
    for kwargs, message in [
        ({"data": {"blob": "x" * limits.MAX_JSON_BYTES}}, "bytes as JSON"),
        ({"data": deep}, "nested more than"),
        ({"data": {"bad": float("nan")}}, "not plain JSON"),
        ({"data": {"k": "\x00"}}, "NUL"),
        ({"progress": 101}, "progress is 101"),
        ({"note": "n" * (limits.MAX_TEXT + 1)}, "note is"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            await registry.checkpoint(tid, lease, **kwargs)
    with pytest.raises(InvalidInput, match="artifacts"):
        await registry.complete(tid, lease, artifacts="not-a-list")
    with pytest.raises(InvalidInput, match="usage"):
        await registry.complete(tid, lease, usage={"tokens": -5})
    after = await registry.get(tid)
    assert after.version == before.version


async def test_odd_but_valid_text_round_trips(registry):
    title = "Ünïcödé ✓ 🚀 'quotes' \"double\" ; DROP TABLE tasks; --"
    tid = (await registry.create_tasks([{"title": title, "description": "line1\nline2\ttab"}])).ids[0]
    task = await registry.get(tid)
    assert task.title == title and task.description == "line1\nline2\ttab"
    found = await registry.find(text="drop table")
    assert [t.id for t in found.items] == [tid]


async def test_find_filters_and_bounds(registry):
    await drive_to(registry, State.ACTIVE, title="alpha")
    await drive_to(registry, State.DONE, title="beta")
    assert [t.title for t in (await registry.find(state="active")).items] == ["alpha"]
    assert [t.title for t in (await registry.find(assignee="agent-a", state=State.DONE)).items] == ["beta"]
    with pytest.raises(InvalidInput, match="is not a state"):
        await registry.find(state="RUNNING")
    with pytest.raises(InvalidInput, match="limit"):
        await registry.find(limit=0)
