"""README matches the code: the transition table, and every tool, resource and prompt is documented."""

from __future__ import annotations

import re
from pathlib import Path

from mcp_tasks.states import render_markdown

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _section(name: str) -> str:
    m = re.search(rf"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", README, re.S)
    assert m, f"README lacks the {name} markers"
    return m.group(1)


def test_readme_transition_table_is_rendered_from_the_code():
    assert _section("transitions") == render_markdown(), (
        "README's transition table is stale; paste the output of "
        "`python -c 'from mcp_tasks.states import render_markdown; print(render_markdown())'`"
    )


def test_readme_limits_table_is_rendered_from_the_code():
    from mcp_tasks import limits

    assert _section("limits") == limits.render_markdown(), "README's limits table is stale"


def test_readme_documents_every_tool_resource_and_prompt():
    from mcp_tasks.server.prompts import load_files
    from mcp_tasks.server.tools import build_tools

    for tool in build_tools(app=None):
        assert f"`{tool.name}(" in README, tool.name
    for uri in ("task://{task_id}", "task://{task_id}/events", "tasks://available", "tasks://board",
                "events://recent", "agent://{agent}/tasks", "metrics://summary"):
        assert f"`{uri}`" in README, uri
    for prompt in load_files():
        assert f"`{prompt.name}`" in README, prompt.name


def test_readme_has_exactly_two_setup_commands_near_the_top():
    top = README.split("## Use it")[0]
    commands = re.findall(r"```\n(.*?)\n```", top, re.S)
    assert len(commands) == 2
    assert commands[0].endswith("mcp-tasks demo")
    assert commands[1].endswith("python -m pytest")
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert commands[1] in ci


def test_readme_roles_table_is_rendered_from_the_code():
    from mcp_tasks.states import render_roles_markdown

    assert _section("roles") == render_roles_markdown(), (
        "README's roles table is stale; paste the output of "
        "`python -c 'from mcp_tasks.states import render_roles_markdown; print(render_roles_markdown())'`"
    )
