"""MCP prompts loaded from prompts/*.md.

Each file starts with front matter between `---` lines:

    name: work-loop
    title: Work loop
    description: One line for prompt pickers
    arguments:
      - name: capabilities
        description: Task types you can do
        required: false

The body is the prompt text; `{{argument}}` is replaced by the argument's value (empty when
omitted), and `{{task}}` by the JSON of the task named by a `task_id` argument.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp.server.mcpserver.prompts.base import Prompt, PromptArgument, UserMessage

from .. import limits
from ..errors import TaskError
from ..packaged import data_folder
from . import views as V

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


@dataclass
class PromptFile:
    """A parsed prompt file."""

    name: str
    title: str
    description: str
    body: str
    arguments: list[dict[str, Any]] = field(default_factory=list)


def _scalar(text: str) -> Any:
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def parse(text: str, source: str = "<prompt>") -> PromptFile:
    """Parse one prompt file (front matter subset: scalars and an `arguments` list of mappings)."""
    if not text.startswith("---\n"):
        raise ValueError(f"{source}: must start with front matter between --- lines")
    head, sep, body = text[4:].partition("\n---\n")
    if not sep:
        raise ValueError(f"{source}: front matter is not closed by a --- line")
    meta: dict[str, Any] = {}
    args: list[dict[str, Any]] = []
    in_args = False
    for raw in head.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if not raw.startswith(" "):
            key, _, value = raw.partition(":")
            in_args = key.strip() == "arguments"
            if not in_args:
                meta[key.strip()] = _scalar(value)
            continue
        if not in_args:
            raise ValueError(f"{source}: unexpected indented line {raw!r}")
        item = raw.strip()
        if item.startswith("- "):
            args.append({})
            item = item[2:]
        if not args:
            raise ValueError(f"{source}: argument fields must follow a '- name:' line")
        key, _, value = item.partition(":")
        args[-1][key.strip()] = _scalar(value)
    for key in ("name", "description"):
        if not meta.get(key):
            raise ValueError(f"{source}: front matter needs {key}")
    for a in args:
        if "name" not in a:
            raise ValueError(f"{source}: every argument needs a name")
    return PromptFile(name=meta["name"], title=meta.get("title", meta["name"]), description=meta["description"],
                      body=body.strip() + "\n", arguments=args)


def load_files(folder: Path | None = None) -> list[PromptFile]:
    """Every prompt file in prompts/, sorted by name."""
    folder = folder or data_folder("prompts", "work-loop.md")
    return sorted((parse(p.read_text(encoding="utf-8"), p.name) for p in folder.glob("*.md")), key=lambda f: f.name)


def build_prompts(app: Any, files: list[PromptFile] | None = None) -> list[Prompt]:
    """MCP prompts for the files; rendering reads the registry for `{{task}}`."""
    out = []
    for pf in files if files is not None else load_files():
        out.append(Prompt(
            name=pf.name, title=pf.title, description=pf.description, fn=_renderer(app, pf), context_kwarg=None,
            arguments=[PromptArgument(name=a["name"], description=a.get("description"),
                                      required=bool(a.get("required", False))) for a in pf.arguments],
        ))
    return out


def _argument(name: str, value: Any) -> str:
    """A prompt argument as text: bounded, without NUL or unpaired surrogates (they cannot be sent)."""
    text = str(value)
    if len(text) > limits.MAX_TEXT:
        text = text[: limits.MAX_TEXT] + f" ... ({len(text) - limits.MAX_TEXT} more characters cut)"
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _renderer(app: Any, pf: PromptFile) -> Any:
    known = {a["name"] for a in pf.arguments}
    defaults = {a["name"]: str(a["default"]) for a in pf.arguments if "default" in a}  # what an omitted one reads as

    async def render(**kwargs: Any) -> list[UserMessage]:
        given = {k: _argument(k, v) for k, v in kwargs.items() if k in known and v is not None and str(v).strip()}
        values = {**defaults, **given}
        if "{{task}}" in pf.body.replace(" ", "") and values.get("task_id"):
            try:
                task, ready, _ = await app.registry.get_with_context(values["task_id"])
                values["task"] = json.dumps(V.dump(V.detail(task, ready)), ensure_ascii=False, indent=1)
            except TaskError as exc:
                values["task"] = f"(could not read the task: {exc.message})"
        text = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), pf.body)
        return [UserMessage(text)]

    return render
